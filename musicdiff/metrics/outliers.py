"""Per-clip outliers: each generated clip's score as a z-score against the reference set's own
leave-one-out scores.

Per-clip score (fadtk's per-song FAD, Gui et al. 2024, "Adapting Frechet Audio Distance for
Generative Music Evaluation", ICASSP 2024): the Frechet distance (Kilgour et al. 2019, eq. 1) between
the reference Gaussian and the Gaussian of the clip's own frames, with the clip's covariance taken
with ddof = 0 so that a clip of a single frame is defined (its covariance is zero and the score is
``||mu_clip - mu_ref||^2 + tr(S_ref)``).

Per-clip FAD has a large floor (a handful of frames is far from any Gaussian), so the raw score
means little on its own. Each reference clip is therefore scored the same way against the
reference set *without that clip* (leave-one-out), which gives the distribution of the score for
clips that do belong to the reference; a generated clip's z-score is
``(score - mean(loo)) / std(loo, ddof=1)``. A z-score of 3 is a clip farther from the reference
than almost every reference clip is from the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicdiff.metrics.fad import GaussianStats, frechet_distance, gaussian_stats


def clip_stats(frames: np.ndarray) -> GaussianStats:
    """Mean and maximum-likelihood covariance (ddof = 0) of one clip's frames (frames >= 1, dim).

    Raises ``ValueError`` for an empty or non-2-D array, or non-finite values."""
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"clip embeddings must be (frames >= 1, dim), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("clip embeddings contain NaN or inf")
    centred = x - x.mean(axis=0)
    return GaussianStats(mu=x.mean(axis=0), cov=centred.T @ centred / x.shape[0], n=x.shape[0])


def clip_scores(reference: np.ndarray | GaussianStats, clips: list[np.ndarray]) -> np.ndarray:
    """Per-clip Frechet distance of each clip (frames_i, dim) to the reference (frames, dim) or its
    statistics; returns (clips,) float64."""
    ref = reference if isinstance(reference, GaussianStats) else gaussian_stats(reference)
    return np.array([frechet_distance(ref, clip_stats(c))[0] for c in clips])


def leave_one_out_scores(reference_clips: list[np.ndarray]) -> np.ndarray:
    """Each reference clip's per-clip score against the reference set without it; (clips,).

    Raises ``ValueError`` for fewer than 3 reference clips (no spread to compare against)."""
    if len(reference_clips) < 3:
        raise ValueError(f"leave-one-out scores need at least 3 reference clips, got {len(reference_clips)}")
    scores = []
    for i, clip in enumerate(reference_clips):
        rest = np.concatenate([c for j, c in enumerate(reference_clips) if j != i])
        scores.append(frechet_distance(gaussian_stats(rest), clip_stats(clip))[0])
    return np.asarray(scores)


@dataclass(frozen=True)
class OutlierScores:
    """Per-clip scores of an evaluation set and their z-scores against the reference's leave-one-out
    scores (mean ``loo_mean``, standard deviation ``loo_std`` over ``n_ref_clips`` clips)."""

    scores: np.ndarray
    z: np.ndarray
    loo_mean: float
    loo_std: float
    n_ref_clips: int

    def top(self, k: int) -> list[int]:
        """Indices of the ``k`` clips with the highest z-score, highest first (ties: lower index)."""
        return [int(i) for i in np.argsort(-self.z, kind="stable")[:k]]


def outlier_scores(reference_clips: list[np.ndarray], clips: list[np.ndarray],
                   loo: np.ndarray | None = None) -> OutlierScores:
    """z-scores of ``clips`` (each (frames_i, dim)) against the leave-one-out scores of
    ``reference_clips``; pass ``loo`` (from :func:`leave_one_out_scores`) to reuse it across sets.

    Raises ``ValueError`` when the leave-one-out scores have no spread or there are no clips."""
    if not clips:
        raise ValueError("no clips to score")
    loo = leave_one_out_scores(reference_clips) if loo is None else np.asarray(loo)
    mean, std = float(loo.mean()), float(loo.std(ddof=1))
    if not std > 0:
        raise ValueError("the reference's leave-one-out scores have no spread; z-scores are undefined")
    scores = clip_scores(np.concatenate(reference_clips), clips)
    return OutlierScores(scores=scores, z=(scores - mean) / std, loo_mean=mean, loo_std=std,
                         n_ref_clips=len(reference_clips))
