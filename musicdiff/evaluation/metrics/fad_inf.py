"""FAD-inf: FAD extrapolated to infinitely many evaluation samples.

FAD is biased upwards at finite n, roughly as ``FAD(n) = FAD_inf + b / n`` (Chong & Forsyth 2020,
"Effectively Unbiased FID and Inception Score and Where to Find Them", CVPR, §3; brought to audio by
Gui et al. 2024, "Adapting Frechet Audio Distance for Generative Music Evaluation", ICASSP, §3.2).
FAD is measured on subsets of several sizes and the line ``a + b / n`` is fitted by least squares;
its intercept ``a`` is FAD-inf.

Done properly here, which the anchors do not (see ``shared/research/fad_anchors.md``):

* subsets are whole evaluation *clips* drawn **without replacement** (fadtk draws frames with
  replacement, which duplicates frames and brings back the bias it means to remove), seeded;
* they come from a pool clearly larger than the largest subset: by default the largest subset is
  half the pool (:func:`subset_sizes`), and the sizes span a factor of 8;
* the 1/n law is asymptotic. When a subset has fewer independent frames than the embedding has
  dimensions, its sample covariance is rank-deficient and FAD bends away from the line (simulated
  200-d Gaussians: with a pool of 400 clips the linear fit overshoots the true distance by ~14%, more
  than plain FAD's own bias; with 3200 it is within 1%). A fit is therefore **reliable** only when
  its smallest subset holds at least ``min_subset_clips`` clips (the caller passes the clips needed
  for as many independent frames as dimensions) and its R^2 reaches ``min_r2``; otherwise the result
  says why it is not, and tables mark it instead of printing it plainly.

The interval: FAD-inf = FAD(N) - b / N for the whole pool of N clips, and b / N varies little from
pool to pool, so the sampling spread of FAD-inf is that of FAD over the pool, which the clip bootstrap
of :func:`musicdiff.evaluation.metrics.fad.fad_score` measures (``pool_sd``). The reported interval is normal,
with the standard error ``sqrt(pool_sd^2 + se_fit^2)``: the bootstrap spread of the pool and the
least-squares standard error of the intercept (the scatter of the subset means). Its coverage of the
true distance is tested on simulated Gaussians (``tests/test_simulations.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from musicdiff.evaluation.metrics.fad import GaussianStats, ProjectedClips, gaussian_stats


@dataclass(frozen=True)
class FadInfResult:
    """FAD-inf with its interval, the fit (slope ``b``, R^2, the subset sizes in clips and the mean FAD
    at each), the pool size, and whether the fit is reliable (with the reason when it is not)."""

    fad_inf: float
    ci_low: float
    ci_high: float
    slope: float
    r2: float
    sizes: list[int]
    fad: list[float]
    pool: int
    repeats: int
    reliable: bool
    reason: str = ""
    se_fit: float = float("nan")
    pool_sd: float = float("nan")
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def subset_sizes(pool: int, span: float = 8.0, count: int = 6, max_fraction: float = 0.5) -> list[int]:
    """``count`` subset sizes (clips), geometrically spaced from ``n_max / span`` to
    ``n_max = floor(max_fraction * pool)``: the largest subset is at most half the pool by default.

    Raises ``ValueError`` when the pool is too small for at least 3 distinct sizes of 2 or more clips
    spanning ``span``.
    """
    if not (0 < max_fraction < 1) or span < 1 or count < 3:
        raise ValueError(f"need 0 < max_fraction < 1, span >= 1 and count >= 3; got {max_fraction}, {span}, {count}")
    n_max = int(math.floor(max_fraction * pool))
    n_min = int(math.ceil(n_max / span))
    sizes = sorted({int(round(v)) for v in np.geomspace(max(n_min, 2), max(n_max, 2), count)})
    if n_max < 2 * span or len(sizes) < 3:
        raise ValueError(f"a pool of {pool} clips is too small for FAD-inf subsets spanning a factor of {span:g} "
                         f"below {max_fraction:g} of the pool (need at least {int(math.ceil(2 * span / max_fraction))})")
    return sizes


def fad_inf(reference: np.ndarray | GaussianStats, eval_clips: list[np.ndarray], sizes: list[int] | None = None,
            repeats: int = 8, seed: int = 0, pool_sd: float | None = None, ci: float = 0.95, min_r2: float = 0.95,
            min_subset_clips: int = 2) -> FadInfResult:
    """FAD-inf of the evaluation clips (each (frames_i, dim)) against ``reference`` (frames, dim) or
    its statistics.

    ``sizes`` are subset sizes in clips (default :func:`subset_sizes` of the pool); for each, ``repeats``
    subsets are drawn without replacement (seeded) and their FAD averaged (through
    :class:`~musicdiff.evaluation.metrics.fad.ProjectedClips`: the reference factored once, the frames projected
    once); ``FAD = a + b / n`` is fitted by least squares. ``pool_sd`` is the bootstrap standard deviation of FAD over the whole pool (see the
    module docstring); without it the interval is the fit's alone. ``reliable`` requires R^2 >= ``min_r2``
    and a smallest subset of at least ``min_subset_clips`` clips.

    Raises ``ValueError`` for fewer than 3 distinct sizes, a size below 2 or not below the pool, or
    ``repeats < 1``.
    """
    from scipy.stats import norm, t

    ref = reference if isinstance(reference, GaussianStats) else gaussian_stats(reference)
    pool = len(eval_clips)
    sizes = subset_sizes(pool) if sizes is None else sorted({int(s) for s in sizes})
    if len(sizes) < 3:
        raise ValueError(f"FAD-inf needs at least 3 distinct subset sizes, got {sizes}")
    if sizes[0] < 2 or sizes[-1] >= pool:
        raise ValueError(f"subset sizes {sizes} must lie in 2..{pool - 1}: subsets are drawn without replacement "
                         f"from a pool of {pool} clips, which must be larger than the largest subset")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    rng = np.random.default_rng(seed)
    projected = ProjectedClips(ref, eval_clips)  # the reference's factor, the frames projected once
    means = []
    for n in sizes:
        scores = [projected.fad(np.bincount(rng.choice(pool, n, replace=False), minlength=pool))
                  for _ in range(repeats)]
        means.append(float(np.mean(scores)))
    x = 1.0 / np.asarray(sizes, dtype=np.float64)
    y = np.asarray(means)
    design = np.stack([np.ones_like(x), x], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ np.array([intercept, slope])
    spread = ((y - y.mean()) ** 2).sum()
    r2 = float(1.0 - (residual**2).sum() / spread) if spread > 0 else 0.0
    dof = len(x) - 2
    sigma2 = (residual**2).sum() / dof
    se_fit = float(np.sqrt(sigma2 * np.linalg.inv(design.T @ design)[0, 0]))
    if pool_sd is not None and np.isfinite(pool_sd):
        half = float(norm.ppf(0.5 + ci / 2.0)) * math.sqrt(pool_sd**2 + se_fit**2)
    else:
        half = float(t.ppf(0.5 + ci / 2.0, dof)) * se_fit
    reasons = []
    if sizes[0] < min_subset_clips:
        reasons.append(f"smallest subset {sizes[0]} clips < {min_subset_clips} needed for as many independent "
                       "frames as dimensions (pool too small for this embedding)")
    if r2 < min_r2:
        reasons.append(f"R^2 {r2:.3f} < {min_r2:g}: FAD does not follow a + b/n over these sizes")
    return FadInfResult(float(intercept), float(intercept) - half, float(intercept) + half, float(slope), r2,
                        list(sizes), means, pool, repeats, not reasons, "; ".join(reasons), se_fit,
                        float("nan") if pool_sd is None else float(pool_sd))
