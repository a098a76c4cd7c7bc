"""Kernel audio distance (KAD): an unbiased distance between embedding sets, valid at small n.

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

FAD-inf, the other correction of plain FAD's finite-sample bias, is in ``musicdiff.evaluation.metrics.fad_inf``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from musicdiff.evaluation.metrics.fad import as_frames

KAD_SCALE = 100.0


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def _frames(x: np.ndarray, name: str) -> np.ndarray:
    return as_frames(x, f"{name} embeddings", min_frames=2)


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
    """KAD, its jackknife CI over evaluation clips (and the standard error ``se`` behind it), the frozen
    bandwidth and the counts."""

    kad: float
    ci_low: float
    ci_high: float
    bandwidth: float
    n_ref: int
    n_eval: int
    n_eval_clips: int
    se: float = float("nan")

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
    low = high = se = float("nan")
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
    return KadResult(value, low, high, sigma, len(ref), len(frames), n_clips, se)
