"""Frechet audio distance (FAD) between two sets of embeddings, in float64.

FAD (Kilgour et al. 2019, "Frechet Audio Distance: A Reference-Free Metric for Evaluating Music
Enhancement Algorithms", eq. 1) is the Frechet distance between Gaussians fitted to the embeddings
of a reference set and of an evaluation set (Dowson & Landau 1982):

    FAD = ||mu_r - mu_e||^2 + tr(S_r) + tr(S_e) - 2 tr((S_r^1/2 S_e S_r^1/2)^1/2)

The trace of the matrix square root is computed as the sum of the square roots of the eigenvalues
of the symmetric matrix ``S_r^1/2 S_e S_r^1/2`` (clipped at zero), which equals
``tr(sqrtm(S_r S_e))`` (the form scipy, fadtk and pytorch-fid use) but is never complex. The
covariances are unbiased (ddof = 1), as in every published toolkit. The two terms are reported
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

    ``sqrt_cov`` (the symmetric square root of ``cov``) is computed once per object and reused by
    every :func:`frechet_distance` against it, so a reference set is factored once for all its
    bootstrap resamples, FAD-inf subsets and evaluation sets.
    """

    mu: np.ndarray
    cov: np.ndarray
    n: int

    @cached_property
    def sqrt_cov(self) -> np.ndarray:
        """``cov^1/2`` (dim, dim), from the eigendecomposition with negative eigenvalues clipped to 0."""
        return _sqrt_psd(self.cov)


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


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(ref: GaussianStats, evl: GaussianStats) -> tuple[float, float, float]:
    """Frechet distance between two Gaussians: returns ``(fad, mean_term, trace_term)`` (float64).

    Raises ``ValueError`` when the dimensions differ.
    """
    if ref.mu.shape != evl.mu.shape:
        raise ValueError(f"dimension mismatch: {ref.mu.shape} vs {evl.mu.shape}")
    diff = ref.mu - evl.mu
    mean_term = float(diff @ diff)
    root = ref.sqrt_cov
    middle = root @ evl.cov @ root
    eig = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    trace_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    trace_term = float(np.trace(ref.cov) + np.trace(evl.cov) - 2.0 * trace_sqrt)
    return mean_term + trace_term, mean_term, trace_term


def bootstrap_fads(ref: GaussianStats, eval_clips: list[np.ndarray], n_bootstrap: int,
                   rng: np.random.Generator) -> np.ndarray:
    """FAD of ``n_bootstrap`` resamples of the evaluation clips (whole clips drawn with replacement,
    as many as there are) against ``ref``; returns (n_bootstrap,) float64. ``rng`` is consumed, so
    two sets resampled from two generators are independent resamples."""
    scores = np.empty(n_bootstrap)
    stacked = np.stack(eval_clips) if len({len(c) for c in eval_clips}) == 1 else None  # equal clips: one gather
    for b in range(n_bootstrap):
        pick = rng.integers(0, len(eval_clips), len(eval_clips))
        frames = stacked[pick].reshape(-1, stacked.shape[-1]) if stacked is not None else \
            np.concatenate([eval_clips[i] for i in pick], axis=0)
        scores[b] = frechet_distance(ref, gaussian_stats(frames))[0]
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
