"""Is system A better than system B? Differences of FAD and KAD with intervals, and rankings.

Overlapping marginal intervals are not a test. For two evaluation sets scored against the same
reference set with the same embedding (:func:`compare`):

* **FAD difference** ``FAD(A) - FAD(B)`` at a matched number of clips (FAD's bias depends on n, so
  the larger set is cut to the smaller one's size by a seeded draw without replacement), with a 95%
  bootstrap interval that resamples *both* evaluation sets, each from its own random stream (the
  sets are independent samples); the percentile interval of the differences is re-centred on the
  observed difference, as for FAD itself (Efron & Tibshirani 1993, ch. 10);
* **KAD difference** on all clips of both sets, with a normal interval from the two jackknife
  standard errors, ``sqrt(se_A^2 + se_B^2)`` (independent sets);
* a **verdict** per metric: ``better`` when the interval lies below 0 (A's distance is smaller),
  ``worse`` when above, ``not distinguishable`` when it holds 0. The FAD verdict is given only when
  both sets are adequately sampled at the matched size; otherwise KAD's is the verdict to read.

:func:`rank` orders systems against one reference: adequately sampled systems by FAD, then the
under-sampled ones by KAD, and compares each with its neighbour. The false-positive rate of the
test (two samples of one distribution) and the coverage of the intervals are checked on simulated
Gaussians in ``tests/test_simulations.py``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from musicdiff.evaluation.scoring import Reference, ScoreSettings, score
from musicdiff.evaluation.sets import EmbeddedSet
from musicdiff.evaluation.metrics.fad import bootstrap_fads, frechet_distance, gaussian_stats

BETTER, WORSE, TIED = "better", "worse", "not distinguishable"


def verdict(low: float, high: float) -> str:
    """``better`` if the interval of ``distance(A) - distance(B)`` lies below 0, ``worse`` above, else
    ``not distinguishable`` (NaN bounds: not distinguishable)."""
    if high < 0:
        return BETTER
    if low > 0:
        return WORSE
    return TIED


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` on one reference set and embedding (see the module docstring)."""

    a: str
    b: str
    reference: str
    embedding: str
    n_matched: int
    fad_a: float
    fad_b: float
    fad_diff: float
    fad_low: float
    fad_high: float
    fad_adequate: bool
    kad_diff: float
    kad_low: float
    kad_high: float

    @property
    def fad_verdict(self) -> str:
        return verdict(self.fad_low, self.fad_high) if self.fad_adequate else ""

    @property
    def kad_verdict(self) -> str:
        return verdict(self.kad_low, self.kad_high)

    @property
    def verdict(self) -> str:
        """FAD's verdict when both sets are adequately sampled, else KAD's."""
        return self.fad_verdict or self.kad_verdict

    def to_dict(self) -> dict:
        return {**asdict(self), "fad_verdict": self.fad_verdict, "kad_verdict": self.kad_verdict,
                "verdict": self.verdict}


def _stream(seed: int, name: str) -> np.random.Generator:
    """An independent random stream per set name (CRC-32 of the name), reproducible from ``seed``."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _matched(x: EmbeddedSet, n: int, seed: int) -> list[np.ndarray]:
    clips = [np.asarray(c, dtype=np.float64) for c in x.clips]
    if len(clips) == n:
        return clips
    pick = np.sort(_stream(seed + 1, x.name).choice(len(clips), size=n, replace=False))
    return [clips[i] for i in pick]


def compare(a: EmbeddedSet, b: EmbeddedSet, reference: Reference, settings: ScoreSettings = ScoreSettings(),
            kad_a=None, kad_b=None) -> Comparison:
    """``a`` against ``b`` on ``reference``: FAD and KAD differences with their intervals.

    ``kad_a``/``kad_b`` are the sets' ``KadResult`` against this reference when already computed.
    Raises ``ProtocolMismatchError`` when either set was made differently from the reference, and
    ``ValueError`` for sets of fewer than 3 clips.
    """
    from scipy.stats import norm

    if not reference.has_clips:
        raise ValueError(f"reference {reference.name!r} is shipped statistics: comparisons need its clips (KAD)")
    for x in (a, b):
        x.check_comparable(reference.embedded)
        if len(x.clips) < 3:
            raise ValueError(f"{x.name!r}: {len(x.clips)} clips; a comparison needs at least 3")
    n = min(len(a.clips), len(b.clips))
    ca, cb = _matched(a, n, settings.seed), _matched(b, n, settings.seed)
    ref = reference.stats
    fad_a = frechet_distance(ref, gaussian_stats(np.concatenate(ca)))[0]
    fad_b = frechet_distance(ref, gaussian_stats(np.concatenate(cb)))[0]
    diff = fad_a - fad_b
    boot = (bootstrap_fads(ref, ca, settings.n_bootstrap, _stream(settings.seed, a.name))
            - bootstrap_fads(ref, cb, settings.n_bootstrap, _stream(settings.seed, b.name)))
    alpha = (1.0 - settings.ci) / 2.0
    bias = float(boot.mean()) - diff
    low, high = (float(v) - bias for v in np.quantile(boot, [alpha, 1.0 - alpha]))
    per_clip = min(a.independent_per_clip, b.independent_per_clip)
    adequate = n * per_clip >= settings.adequacy * ref.mu.shape[0]
    if kad_a is None or kad_b is None:
        kad_a = score(a, reference, ScoreSettings(n_bootstrap=0, ci=settings.ci), fad_inf_=False).kad
        kad_b = score(b, reference, ScoreSettings(n_bootstrap=0, ci=settings.ci), fad_inf_=False).kad
    kad_diff = kad_a.kad - kad_b.kad
    half = float(norm.ppf(0.5 + settings.ci / 2.0)) * math.sqrt(kad_a.se**2 + kad_b.se**2)
    return Comparison(a.name, b.name, reference.name, a.embedding, n, fad_a, fad_b, diff, low, high, adequate,
                      kad_diff, kad_diff - half, kad_diff + half)


@dataclass(frozen=True)
class RankedSystem:
    """One system's place against one reference set: its rank, FAD (its interval is left to the FAD
    table: NaN here), KAD with its interval, n, whether it is adequately sampled, and the comparison
    with the system ranked just above it (if any)."""

    rank: int
    system: str
    fad: float
    fad_low: float
    fad_high: float
    kad: float
    kad_low: float
    kad_high: float
    n_clips: int
    adequate: bool
    versus_above: Comparison | None


def rank(systems: dict[str, EmbeddedSet], reference: Reference,
         settings: ScoreSettings = ScoreSettings()) -> list[RankedSystem]:
    """Rank ``systems`` against ``reference``: adequately sampled ones by FAD (ascending), then the
    under-sampled ones by KAD; each compared with its neighbour above (within its group). Systems of
    fewer than 3 clips are left out."""
    marginal = ScoreSettings(**{**settings.to_dict(), "n_bootstrap": 0})  # points only: FAD's CI is the FAD table's
    scores = {name: score(s, reference, marginal, fad_inf_=False) for name, s in systems.items() if len(s.clips) >= 3}
    adequate = sorted((n for n, s in scores.items() if s.adequate), key=lambda n: scores[n].fad.fad)
    rest = sorted((n for n, s in scores.items() if not s.adequate), key=lambda n: scores[n].kad.kad)
    out = []
    for group in (adequate, rest):
        for i, name in enumerate(group):
            s = scores[name]
            above = None
            if i > 0:
                prev = group[i - 1]
                above = compare(systems[name], systems[prev], reference, settings, s.kad, scores[prev].kad)
            out.append(RankedSystem(len(out) + 1, name, s.fad.fad, s.fad.ci_low, s.fad.ci_high, s.kad.kad,
                                    s.kad.ci_low, s.kad.ci_high, s.n_clips, s.adequate, above))
    return out
