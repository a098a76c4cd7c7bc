"""How FAD and KAD depend on the number of evaluation clips (the reference study's "Number of FAD
samples" experiment).

FAD is biased upwards at finite n, roughly as ``FAD_inf + b / n`` (Chong & Forsyth 2020, "Effectively
Unbiased FID and Inception Score and where to find them", CVPR 2020); the unbiased MMD^2 behind KAD is
not (Gretton et al. 2012, eq. 3), so its mean stays flat while its spread shrinks. For each subset
size ``n`` below the set's size, ``repeats`` subsets of ``n`` whole clips are drawn **without
replacement** (seeded) and the mean and the central ``ci`` interval of the scores over subsets are
reported (the spread of FAD among evaluation sets of that size). At the full size there is one
subset; its interval is the clip bootstrap of :func:`musicdiff.evaluation.metrics.fad.fad_score` for FAD and
the jackknife of :func:`musicdiff.evaluation.metrics.kad.kad_score` for KAD.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from musicdiff.evaluation.metrics.fad import GaussianStats, fad_score, frechet_distance, gaussian_stats
from musicdiff.evaluation.metrics.kad import kad_score, kernel_distance, median_bandwidth


@dataclass(frozen=True)
class SizePoint:
    """FAD and KAD at ``n`` evaluation clips: mean over ``subsets`` subsets and the interval."""

    n: int
    subsets: int
    fad: float
    fad_low: float
    fad_high: float
    kad: float
    kad_low: float
    kad_high: float

    def to_dict(self) -> dict:
        return asdict(self)


def scores_vs_n(reference: np.ndarray, eval_clips: list[np.ndarray], sizes: list[int], repeats: int = 20,
                seed: int = 0, ci: float = 0.95, n_bootstrap: int = 200) -> list[SizePoint]:
    """FAD and KAD of subsets of ``eval_clips`` (each (frames_i, dim)) against ``reference`` frames
    (frames, dim) at each size in ``sizes`` (number of clips). KAD's bandwidth is frozen from the
    reference (``median_bandwidth``).

    Raises ``ValueError`` for a size below 2 or above the number of clips, or ``repeats < 2``.
    """
    total = len(eval_clips)
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] < 2 or sizes[-1] > total:
        raise ValueError(f"subset sizes {sizes} must lie in 2..{total} (the number of evaluation clips)")
    if repeats < 2:
        raise ValueError(f"repeats must be at least 2, got {repeats}")
    ref_frames = np.asarray(reference, dtype=np.float64)
    ref = gaussian_stats(ref_frames)
    bandwidth = median_bandwidth(ref_frames)
    alpha = (1.0 - ci) / 2.0
    rng = np.random.default_rng(seed)
    points = []
    for n in sizes:
        if n == total:
            fad = fad_score(ref, eval_clips, n_bootstrap=n_bootstrap, seed=seed, ci=ci)
            kad = kad_score(ref_frames, eval_clips, bandwidth=bandwidth, ci=ci)
            points.append(SizePoint(n, 1, fad.fad, fad.ci_low, fad.ci_high, kad.kad, kad.ci_low, kad.ci_high))
            continue
        fads, kads = [], []
        for _ in range(repeats):
            frames = np.concatenate([eval_clips[i] for i in rng.choice(total, n, replace=False)])
            fads.append(_fad(ref, frames))
            kads.append(kernel_distance(ref_frames, frames, bandwidth))
        (fl, fh), (kl, kh) = np.quantile(fads, [alpha, 1 - alpha]), np.quantile(kads, [alpha, 1 - alpha])
        points.append(SizePoint(n, repeats, float(np.mean(fads)), float(fl), float(fh),
                                float(np.mean(kads)), float(kl), float(kh)))
    return points


def _fad(ref: GaussianStats, frames: np.ndarray) -> float:
    return frechet_distance(ref, gaussian_stats(frames))[0]
