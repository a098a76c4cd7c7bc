"""Kernel audio distance (KAD) and FAD-inf: two corrections of plain FAD's finite-sample bias.

KAD (Chung et al. 2025, "KAD: No More FAD! An Effective and Efficient Evaluation Metric for Audio
Generation", eq. 3-4) is the unbiased estimator of the squared maximum mean discrepancy (Gretton et
al. 2012, "A Kernel Two-Sample Test", eq. 3) with a Gaussian kernel
``k(x, y) = exp(-||x - y||^2 / (2 sigma^2))``:

    MMD_u^2 = 1/(m(m-1)) sum_{i != j} k(r_i, r_j) + 1/(n(n-1)) sum_{i != j} k(e_i, e_j)
              - 2/(mn) sum_{i, j} k(r_i, e_j)

reported times ``KAD_SCALE`` (100, kadtk's convention). The bandwidth ``sigma`` is the median
pairwise distance between **reference** frames, computed once and frozen (kadtk takes it from the
pooled sets, so the same reference would get a different kernel for every model it is compared
with). The estimator is unbiased, so it can be slightly negative for two samples of one
distribution; it is reported as is.

FAD-inf (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and Where to Find
Them", §3, brought to audio by Gui et al. 2024, "Adapting Frechet Audio Distance for Generative
Music Evaluation"): FAD grows roughly linearly in ``1/n`` with the number ``n`` of evaluation samples,
so FAD is measured on subsets of increasing size and a least-squares line ``FAD = a + b / n`` is
fitted; ``a`` (n -> infinity) is FAD-inf. fadtk draws each subset's *frames* with replacement, which
duplicates frames and re-introduces the small-sample bias it means to remove; here each subset is a
seeded draw of whole evaluation *clips without replacement*.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from musicdiff.metrics.fad import GaussianStats, frechet_distance, gaussian_stats

KAD_SCALE = 100.0


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def _frames(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} embeddings must be (frames >= 2, dim), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} embeddings contain NaN or inf")
    return x


def median_bandwidth(reference: np.ndarray, max_frames: int = 4000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance between reference frames (frames, dim), on at most
    ``max_frames`` frames drawn without replacement (seeded). Raises ``ValueError`` when every
    distance is zero (all frames identical) or the input is not (frames >= 2, dim)."""
    x = _frames(reference, "reference")
    if len(x) > max_frames:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_frames, replace=False))]
    d = _squared_distances(x, x)[np.triu_indices(len(x), k=1)]
    sigma = float(np.sqrt(np.median(d)))
    if not sigma > 0.0:
        raise ValueError("median pairwise distance of the reference frames is 0; cannot set a kernel bandwidth")
    return sigma


def _checked(reference: np.ndarray, evaluation: np.ndarray, bandwidth: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Validated float64 frames of both sets and the kernel's ``gamma = 1 / (2 bandwidth^2)``."""
    r, e = _frames(reference, "reference"), _frames(evaluation, "evaluation")
    if r.shape[1] != e.shape[1]:
        raise ValueError(f"dimension mismatch: {r.shape[1]} vs {e.shape[1]}")
    if not bandwidth > 0.0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    return r, e, 1.0 / (2.0 * bandwidth**2)


def _reference_term(r: np.ndarray, gamma: float) -> float:
    """Mean kernel value over distinct pairs of reference frames."""
    k_rr = np.exp(-gamma * _squared_distances(r, r))
    return float((k_rr.sum() - np.trace(k_rr)) / (len(r) * (len(r) - 1)))


def kernel_distance(reference: np.ndarray, evaluation: np.ndarray, bandwidth: float) -> float:
    """KAD: ``KAD_SCALE`` x the unbiased MMD^2 between reference (m, dim) and evaluation (n, dim)
    frames under a Gaussian kernel of width ``bandwidth`` (Gretton et al. 2012, eq. 3).

    Raises ``ValueError`` for fewer than 2 frames on either side, non-finite values, mismatched
    dimensions or a non-positive bandwidth.
    """
    r, e, gamma = _checked(reference, evaluation, bandwidth)
    n = len(e)
    k_ee = np.exp(-gamma * _squared_distances(e, e))
    k_re = np.exp(-gamma * _squared_distances(r, e))
    mmd = _reference_term(r, gamma) + (k_ee.sum() - np.trace(k_ee)) / (n * (n - 1)) - 2.0 * k_re.mean()
    return KAD_SCALE * float(mmd)


@dataclass(frozen=True)
class KadResult:
    """KAD, its jackknife CI over evaluation clips, the frozen bandwidth and the counts."""

    kad: float
    ci_low: float
    ci_high: float
    bandwidth: float
    n_ref: int
    n_eval: int
    n_eval_clips: int

    def to_dict(self) -> dict:
        return asdict(self)


def kad_score(reference: np.ndarray, eval_clips: list[np.ndarray], bandwidth: float | None = None,
              ci: float = 0.95) -> KadResult:
    """KAD of evaluation clips (each (frames_i, dim)) against reference frames (m, dim), with the
    bandwidth frozen from the reference (``median_bandwidth``) unless given.

    The CI is a normal interval from the delete-one-clip jackknife standard error (Efron & Stein
    1981): a clip-level percentile bootstrap would resample clips *with* replacement, and the
    duplicated frames (kernel value 1 with themselves) bias the unbiased MMD^2 upwards, so the
    bootstrap interval can miss the estimate itself. With fewer than 3 clips there is no interval (NaN).

    Raises ``ValueError`` for no clips, fewer than 2 frames on either side, non-finite values or
    mismatched dimensions.
    """
    from scipy.stats import norm

    if not eval_clips:
        raise ValueError("no evaluation clips")
    ref = _frames(reference, "reference")
    sigma = median_bandwidth(ref) if bandwidth is None else float(bandwidth)
    ref, frames, gamma = _checked(ref, np.concatenate(eval_clips), sigma)
    # Kernel sums per clip, computed once: the estimate and every leave-one-clip-out value follow.
    n_clips, m = len(eval_clips), len(ref)
    rr = _reference_term(ref, gamma)
    clip_of = np.repeat(np.arange(n_clips), [len(c) for c in eval_clips])
    k_ee = np.exp(-gamma * _squared_distances(frames, frames))
    np.fill_diagonal(k_ee, 0.0)
    block = np.zeros((n_clips, n_clips))  # sums of k(e_a, e_b) over the frames of clip pairs
    np.add.at(block, (clip_of[:, None], clip_of[None, :]), k_ee)
    re = np.bincount(clip_of, weights=np.exp(-gamma * _squared_distances(ref, frames)).sum(0), minlength=n_clips)
    sizes = np.bincount(clip_of, minlength=n_clips).astype(np.float64)
    total_ee, total_re, total_n = block.sum(), re.sum(), sizes.sum()
    value = KAD_SCALE * float(rr + total_ee / (total_n * (total_n - 1)) - 2.0 * total_re / (m * total_n))
    low = high = float("nan")
    if n_clips > 2:
        leave_out = []
        for c in range(n_clips):  # KAD without clip c, from the block sums
            n = total_n - sizes[c]
            ee = (total_ee - 2.0 * block[c].sum() + block[c, c]) / (n * (n - 1))
            leave_out.append(KAD_SCALE * float(rr + ee - 2.0 * (total_re - re[c]) / (m * n)))
        leave_out = np.asarray(leave_out)
        se = float(np.sqrt((n_clips - 1) / n_clips * ((leave_out - leave_out.mean()) ** 2).sum()))
        half = float(norm.ppf(0.5 + ci / 2.0)) * se
        low, high = value - half, value + half
    return KadResult(value, low, high, sigma, len(ref), len(frames), n_clips)


@dataclass(frozen=True)
class FadInfResult:
    """FAD-inf (intercept of FAD against 1/n) with its 95% CI from the fit's standard error, the
    slope, R^2 of the fit and the points used."""

    fad_inf: float
    ci_low: float
    ci_high: float
    slope: float
    r2: float
    n_clips: list[int]
    fad: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def fad_inf(reference: np.ndarray | GaussianStats, eval_clips: list[np.ndarray], sizes: list[int] | None = None,
            repeats: int = 3, seed: int = 0) -> FadInfResult:
    """FAD-inf of evaluation clips (each (frames_i, dim)) against a reference set.

    For each subset size ``n`` in ``sizes`` (default: 5 sizes evenly spaced from half the clips to
    all of them), ``repeats`` subsets of ``n`` whole clips are drawn **without replacement** (seeded;
    a single subset when ``n`` is all clips), FAD is averaged over them, and ``FAD = a + b / n`` is
    fitted by least squares: returns ``a`` (FAD-inf) with a 95% t interval from the fit's standard
    error (it reflects the scatter of the points, not the sampling of the evaluation set), ``b`` and
    the fit's R^2.

    Raises ``ValueError`` for fewer than 2 distinct sizes, a size above the number of clips, or a
    subset with fewer than 2 frames.
    """
    ref = reference if isinstance(reference, GaussianStats) else gaussian_stats(reference)
    total = len(eval_clips)
    if sizes is None:
        sizes = sorted({int(round(v)) for v in np.linspace(max(total / 2, 2), total, 5)})
    sizes = sorted(set(int(s) for s in sizes))
    if len(sizes) < 2:
        raise ValueError(f"FAD-inf needs at least 2 distinct subset sizes, got {sizes}")
    if sizes[-1] > total or sizes[0] < 1:
        raise ValueError(f"subset sizes {sizes} must lie in 1..{total} (the number of evaluation clips)")
    rng = np.random.default_rng(seed)
    means = []
    for n in sizes:
        draws = 1 if n == total else repeats
        scores = []
        for _ in range(draws):
            pick = rng.choice(total, n, replace=False)
            scores.append(frechet_distance(ref, gaussian_stats(np.concatenate([eval_clips[i] for i in pick])))[0])
        means.append(float(np.mean(scores)))
    x = 1.0 / np.asarray(sizes, dtype=np.float64)
    y = np.asarray(means)
    design = np.stack([np.ones_like(x), x], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ np.array([intercept, slope])
    spread = ((y - y.mean()) ** 2).sum()
    r2 = float(1.0 - (residual**2).sum() / spread) if spread > 0 else 1.0
    low = high = float("nan")
    dof = len(x) - 2
    if dof > 0:  # t interval of the intercept (ordinary least squares standard error)
        from scipy.stats import t

        sigma2 = (residual**2).sum() / dof
        se = float(np.sqrt(sigma2 * np.linalg.inv(design.T @ design)[0, 0]))
        half = float(t.ppf(0.975, dof)) * se
        low, high = float(intercept) - half, float(intercept) + half
    return FadInfResult(float(intercept), low, high, float(slope), r2, list(sizes), means)
