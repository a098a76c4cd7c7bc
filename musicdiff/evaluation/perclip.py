"""Per-clip outlier scores at equal footing: generated and reference clips scored the same way.

fadtk's per-song FAD (Gui et al. 2024, "Adapting Frechet Audio Distance for Generative Music
Evaluation", ICASSP, §3.3) fits a Gaussian to one clip's frames. That score depends on how many frames
the clip has: a one-frame clip has no covariance (its score is ``||mu - mu_ref||^2 + tr(S_ref)``),
a three-frame clip a rank-2 one, so a one-frame generated clip and a three-frame reference clip are
not on the same scale, and z-scores of the one against the other flag most of them.

Here a clip's score is the mean over its frames of each frame's squared distance to the reference
mean, ``s = mean_f ||x_f - mu_ref||^2``. For frames drawn from the reference distribution each term
has expectation ``tr(S_ref)`` whatever the number of frames, so the score's expectation does not
depend on the clip's length. Under the evaluation protocol (``musicdiff.evaluation.protocol``) every
clip on both sides has the same duration and the same frames anyway.

The scale comes from the reference set itself: each reference clip is scored against the mean of the
reference set *without that clip* (leave-one-out), and a clip's z-score is
``(s - mean(loo)) / std(loo, ddof=1)``. A z-score of 3 is a clip farther from the reference than
almost every reference clip is from the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicdiff.evaluation.metrics.fad import as_frames


def clip_scores(reference_mean: np.ndarray, clips: list[np.ndarray]) -> np.ndarray:
    """Each clip's (frames_i, dim) mean squared frame distance to ``reference_mean`` (dim,); (clips,)."""
    mu = np.asarray(reference_mean, dtype=np.float64)
    return np.array([float(((as_frames(c, "clip embeddings") - mu) ** 2).sum(axis=1).mean()) for c in clips])


def leave_one_out_scores(reference_clips: list[np.ndarray]) -> np.ndarray:
    """Each reference clip's score against the mean of the other reference clips' frames; (clips,).

    Raises ``ValueError`` for fewer than 3 reference clips (no spread to compare against)."""
    if len(reference_clips) < 3:
        raise ValueError(f"leave-one-out scores need at least 3 reference clips, got {len(reference_clips)}")
    clips = [as_frames(c, "reference embeddings") for c in reference_clips]
    sums = np.stack([c.sum(axis=0) for c in clips])
    counts = np.array([len(c) for c in clips], dtype=np.float64)
    total, n = sums.sum(axis=0), counts.sum()
    out = []
    for i, clip in enumerate(clips):
        mu = (total - sums[i]) / (n - counts[i])
        out.append(float(((clip - mu) ** 2).sum(axis=1).mean()))
    return np.asarray(out)


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
    mu = np.concatenate([np.asarray(c, dtype=np.float64) for c in reference_clips]).mean(axis=0)
    scores = clip_scores(mu, clips)
    return OutlierScores(scores=scores, z=(scores - mean) / std, loo_mean=mean, loo_std=std,
                         n_ref_clips=len(reference_clips))
