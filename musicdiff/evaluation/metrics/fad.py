"""Frechet audio distance (FAD) between two sets of embeddings, in float64.

FAD (Kilgour et al. 2019, "Frechet Audio Distance: A Reference-Free Metric for Evaluating Music
Enhancement Algorithms", eq. 1) is the Frechet distance between Gaussians fitted to the embeddings
of a reference set and of an evaluation set:

    FAD = ||mu_r - mu_e||^2 + tr(C_r) + tr(C_e) - 2 tr((C_r C_e)^1/2)

(Dowson & Landau 1982, "The Frechet distance between multivariate normal distributions", J.
Multivariate Anal. 12(3), 450-455; in the form of Heusel et al. 2017, "GANs Trained by a Two Time-Scale
Update Rule Converge to a Local Nash Equilibrium", arXiv:1706.08500, the equation defining FID, which
pytorch-fid and fadtk implement.)

The trace term is computed from a factor of the reference, never from ``sqrtm`` of a non-symmetric
product. With ``C_r = F F^T`` (``F = V_k L_k^1/2`` (dim, k) from one symmetric eigendecomposition
``C_r = V L V^T``, keeping the k eigenvalues above the rounding level), ``C_r C_e = F (F^T C_e)``
has the same non-zero eigenvalues as the symmetric PSD ``F^T C_e F`` (k, k) (AB and BA share them),
and ``C_r C_e`` is similar to the PSD ``C_r^1/2 C_e C_r^1/2``, so

    tr((C_r C_e)^1/2) = sum_i sqrt(lambda_i(F^T C_e F))

(eigenvalues only, ``eigvalsh``), which equals ``tr(sqrtm(C_r C_e))`` (scipy, fadtk, pytorch-fid)
but is never complex. Eigenvalues below ``size * eps * largest`` are rounding noise of a singular
matrix and count as 0: their square roots (~1e-8 of the largest) would otherwise add up. ``F`` is
cached on the :class:`GaussianStats`, so a reference is factored once for every bootstrap resample,
FAD-inf subset and evaluation set scored against it. Resamples go further
(:class:`ProjectedClips`): the evaluation frames are projected once on ``F`` (``Z = X F``), and a
resample's ``F^T C_e F`` is the weighted covariance of the rows of ``Z`` it holds (or, with fewer
rows m than k, the m x m Gram matrix with the same non-zero eigenvalues).

The covariances are unbiased (ddof = 1), as in every published toolkit. The two terms are reported
separately, with the number of embedding frames and clips, and a bootstrap confidence interval over
evaluation clips (FAD falls roughly as 1/n, so a score without its n means little).

The bootstrap resamples whole clips with replacement; duplicated clips shrink the effective sample
and, FAD being biased upwards at finite n, every resampled FAD sits higher than the estimate (with
32 one-frame clips in 200 dimensions the whole bootstrap distribution can lie above it). The
interval is therefore the percentile interval of the bootstrap distribution re-centred on the
estimate: its bootstrap bias estimate ``mean(FAD*) - FAD`` (Efron & Tibshirani 1993, "An
Introduction to the Bootstrap", ch. 10) is subtracted from both quantiles and reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class GaussianStats:
    """Mean (dim,) and covariance (dim, dim) of embeddings, float64, with the frame count.

    ``factor`` (``F`` with ``cov = F F^T``) and ``trace`` are computed once per object and reused by
    every :func:`frechet_distance` and :class:`ProjectedClips` against it, so a reference set is
    factored once for all its bootstrap resamples, FAD-inf subsets and evaluation sets.
    """

    mu: np.ndarray
    cov: np.ndarray
    n: int

    @cached_property
    def factor(self) -> np.ndarray:
        """``F`` (dim, k) with ``cov = F F^T``: ``V_k diag(sqrt(lambda_k))`` from one symmetric
        eigendecomposition of ``cov``, keeping the k eigenvalues above ``dim * eps * largest`` (the rest
        are rounding noise; k < dim for a covariance of fewer frames than dimensions)."""
        values, vectors = np.linalg.eigh((self.cov + self.cov.T) / 2.0)
        keep = values > _noise_floor(values)
        return vectors[:, keep] * np.sqrt(values[keep])

    @cached_property
    def trace(self) -> float:
        return float(np.trace(self.cov))


@dataclass(frozen=True)
class FadResult:
    """FAD and its parts: ``fad = mean_term + trace_term``; ``n_*`` count embedding frames."""

    fad: float
    mean_term: float
    trace_term: float
    n_ref: int
    n_eval: int
    n_eval_clips: int
    dim: int
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n_bootstrap: int = 0
    bootstrap_bias: float = float("nan")
    bootstrap_sd: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def as_frames(x: np.ndarray, what: str, min_frames: int = 1) -> np.ndarray:
    """``x`` as float64 (frames, dim) embedding frames. Raises ``ValueError`` naming ``what`` for a
    non-2-D array, fewer than ``min_frames`` frames, or NaN/inf values."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < min_frames:
        raise ValueError(f"{what} must be (frames >= {min_frames}, dim), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or inf")
    return x


def gaussian_stats(embeddings: np.ndarray) -> GaussianStats:
    """Mean and unbiased covariance of ``embeddings`` (frames, dim) in float64.

    Raises ``ValueError`` for fewer than two frames (no covariance), a non-2-D array or non-finite
    values.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (frames, dim), got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 embedding frames for a covariance, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    mu = x.mean(axis=0)
    centred = x - mu
    return GaussianStats(mu=mu, cov=centred.T @ centred / (x.shape[0] - 1), n=x.shape[0])


def _noise_floor(values: np.ndarray) -> float:
    """Eigenvalues of a symmetric PSD matrix at or below this are rounding noise (``size * eps *
    largest``, the rank tolerance of ``numpy.linalg.matrix_rank``)."""
    return float(max(values.max(initial=0.0), 0.0) * values.size * np.finfo(np.float64).eps)


def trace_sqrt_psd(matrix: np.ndarray) -> float:
    """``tr(matrix^1/2)`` of a symmetric PSD (k, k) matrix: the sum of the square roots of its
    eigenvalues (``eigvalsh``, no eigenvectors), those at or below the rounding level counted as 0."""
    if matrix.size == 0:
        return 0.0
    values = np.linalg.eigvalsh((matrix + matrix.T) / 2.0)
    return float(np.sqrt(values[values > _noise_floor(values)]).sum())


def frechet_distance(ref: GaussianStats, evl: GaussianStats) -> tuple[float, float, float]:
    """Frechet distance between two Gaussians (Dowson & Landau 1982; Heusel et al. 2017's FID equation):
    returns ``(fad, mean_term, trace_term)`` (float64), ``mean_term = ||mu_r - mu_e||^2`` and
    ``trace_term = tr(C_r) + tr(C_e) - 2 tr((C_r C_e)^1/2)``.

    ``ref`` and ``evl`` hold mu (dim,) and cov (dim, dim). The trace of the square root is
    ``sum sqrt(eigvalsh(F^T C_e F))`` with ``ref.factor`` ``F`` (dim, k), computed once per ``ref``
    (see the module docstring): the distance is not symmetric in cost, so pass the set scored
    against many times as ``ref``. Raises ``ValueError`` when the dimensions differ.
    """
    if ref.mu.shape != evl.mu.shape:
        raise ValueError(f"dimension mismatch: {ref.mu.shape} vs {evl.mu.shape}")
    diff = ref.mu - evl.mu
    mean_term = float(diff @ diff)
    f = ref.factor
    trace_sqrt = trace_sqrt_psd(f.T @ evl.cov @ f)
    trace_term = float(ref.trace + np.trace(evl.cov) - 2.0 * trace_sqrt)
    return mean_term + trace_term, mean_term, trace_term


class ProjectedClips:
    """Evaluation clips prepared for the FAD of many reweightings of whole clips (bootstrap resamples,
    FAD-inf subsets) against one reference: every frame is projected once on ``ref.factor``.

    ``clips`` are (frames_i, dim) arrays. With ``X`` the frames centred on their overall mean (n, dim)
    and ``Z = X F`` (n, k), a reweighting with clip counts ``c`` (clip i taken c_i times, N frames in
    all) has mean ``mu_e = centre + sum_j w_j x_j / N`` and ``F^T C_e F = sum_j w_j (z_j - z_bar)
    (z_j - z_bar)^T / (N - 1)`` over the frames of clips with c_i > 0 (``w_j`` = its clip's count):
    the same covariance as stacking the repeated frames, without forming ``C_e`` (dim, dim) or the
    product ``F^T C_e F`` (2 dim^2 k flops per resample). ``tr(C_e)`` and the means come from per-clip
    sums.
    """

    def __init__(self, ref: GaussianStats, clips: list[np.ndarray]):
        if not clips:
            raise ValueError("no evaluation clips")
        lengths = np.array([len(c) for c in clips])
        frames = np.concatenate(clips, axis=0).astype(np.float64, copy=False)
        if frames.ndim != 2 or frames.shape[1] != ref.mu.shape[0]:
            raise ValueError(f"dimension mismatch: reference {ref.mu.shape}, evaluation frames {frames.shape}")
        if not np.isfinite(frames).all():
            raise ValueError("embeddings contain NaN or inf")
        centre = frames.mean(axis=0)
        x = frames - centre
        self.ref, self.lengths = ref, lengths
        self.clip_of = np.repeat(np.arange(len(clips)), lengths)
        self.z = x @ ref.factor
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.clip_x = np.add.reduceat(x, starts, axis=0)  # (clips, dim) per-clip sums
        self.clip_z = np.add.reduceat(self.z, starts, axis=0)
        self.clip_sq = np.add.reduceat(np.einsum("ij,ij->i", x, x), starts)
        self.offset = ref.mu - centre

    def fad(self, counts: np.ndarray) -> float:
        """FAD of the clips taken ``counts[i]`` times each (counts (clips,), non-negative integers; at
        least 2 frames in all) against the reference."""
        counts = np.asarray(counts, dtype=np.float64)
        total = float(counts @ self.lengths)
        if total < 2:
            raise ValueError(f"need at least 2 embedding frames for a covariance, got {total:g}")
        mean_x = counts @ self.clip_x / total
        diff = self.offset - mean_x
        trace_e = float(counts @ self.clip_sq - total * (mean_x @ mean_x)) / (total - 1)
        weights = counts[self.clip_of]
        rows = np.flatnonzero(weights)
        z = (self.z[rows] - counts @ self.clip_z / total) * np.sqrt(weights[rows] / (total - 1))[:, None]
        gram = z @ z.T if z.shape[0] < z.shape[1] else z.T @ z  # same non-zero eigenvalues
        return float(diff @ diff) + self.ref.trace + trace_e - 2.0 * trace_sqrt_psd(gram)


def bootstrap_fads(ref: GaussianStats, eval_clips: list[np.ndarray], n_bootstrap: int,
                   rng: np.random.Generator) -> np.ndarray:
    """FAD of ``n_bootstrap`` resamples of the evaluation clips (whole clips drawn with replacement,
    as many as there are) against ``ref``; returns (n_bootstrap,) float64. ``rng`` is consumed, so
    two sets resampled from two generators are independent resamples. ``eval_clips`` are (frames_i,
    dim); each resample is scored through :class:`ProjectedClips` (the reference's cached factor, the
    frames projected once), the same FAD as stacking the drawn clips' frames."""
    scores = np.empty(n_bootstrap)
    projected = ProjectedClips(ref, eval_clips)
    n = len(eval_clips)
    for b in range(n_bootstrap):
        scores[b] = projected.fad(np.bincount(rng.integers(0, n, n), minlength=n))
    return scores


def fad_score(
    ref_embeddings: np.ndarray | GaussianStats,
    eval_clips: list[np.ndarray],
    n_bootstrap: int = 200,
    seed: int = 0,
    ci: float = 0.95,
) -> FadResult:
    """FAD of evaluation clips against a reference set, with a bootstrap CI over clips.

    ``ref_embeddings`` is (frames, dim) or precomputed ``GaussianStats``; ``eval_clips`` is a list
    of per-clip embeddings, each (frames_i, dim). The CI resamples whole evaluation clips with
    replacement ``n_bootstrap`` times (seeded) and takes the percentile interval re-centred on the
    estimate (the bootstrap bias ``mean(FAD*) - FAD`` subtracted; see the module docstring); it
    shows the sampling spread of the evaluation set, not the bias of FAD at finite n (FAD-inf).

    Raises ``ValueError`` for an empty evaluation list or too few frames for a covariance.
    """
    if not eval_clips:
        raise ValueError("no evaluation clips")
    ref = ref_embeddings if isinstance(ref_embeddings, GaussianStats) else gaussian_stats(ref_embeddings)
    frames = np.concatenate(eval_clips, axis=0)
    fad, mean_term, trace_term = frechet_distance(ref, gaussian_stats(frames))
    low = high = bias = sd = float("nan")
    if n_bootstrap > 0 and len(eval_clips) > 1:
        scores = bootstrap_fads(ref, eval_clips, n_bootstrap, np.random.default_rng(seed))
        alpha = (1.0 - ci) / 2.0
        bias = float(np.mean(scores)) - fad
        sd = float(np.std(scores, ddof=1))
        low, high = (float(v) - bias for v in np.quantile(scores, [alpha, 1.0 - alpha]))
    return FadResult(
        fad=fad, mean_term=mean_term, trace_term=trace_term, n_ref=ref.n, n_eval=frames.shape[0],
        n_eval_clips=len(eval_clips), dim=frames.shape[1], ci_low=low, ci_high=high,
        n_bootstrap=n_bootstrap if len(eval_clips) > 1 else 0, bootstrap_bias=bias, bootstrap_sd=sd,
    )
