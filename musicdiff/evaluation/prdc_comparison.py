"""Is system A better than system B on density and coverage? Differences with intervals and verdicts.

The conventions of :mod:`musicdiff.evaluation.comparison` (FAD and KAD), for the two fidelity and
diversity metrics that use only the reference's k-NN balls (:mod:`musicdiff.evaluation.metrics.prdc`):

* both evaluation sets are scored against the *same* prepared reference (same clips, same k, same radii);
* at a matched number of clips: coverage grows with n, so the larger set is cut to the smaller one's
  size by a seeded draw without replacement (one random stream per set name, as in ``comparison``);
* the **difference** ``metric(A) - metric(B)`` with a 95% normal interval from the two sets'
  jackknife standard errors, ``sqrt(se_A^2 + se_B^2)`` (the sets are independent samples; the
  reference is fixed, so its sampling is not in the interval);
* a **verdict** per metric, from A's side and with the strings of ``comparison``: ``better`` when the
  interval lies above 0 (higher density or coverage is better), ``worse`` below, ``not
  distinguishable`` when it holds 0.

What a verdict does not say: density above 1 is not "better than real" (it also rises when a model
crowds into the reference's dense regions); read it with coverage. The false-positive rate of the
verdict on two samples of one distribution and the coverage of the difference's interval are checked in
``tests/test_prdc_simulations.py``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from musicdiff.evaluation.comparison import verdict as distance_verdict
from musicdiff.evaluation.metrics.prdc import PrdcReference, PrdcResult, TooFewClipsError, checked_points, prdc_score


def verdict(low: float, high: float) -> str:
    """For a metric where higher is better: ``better`` if the interval of ``metric(A) - metric(B)`` lies
    above 0, ``worse`` below, else ``not distinguishable`` (the strings of ``comparison.verdict``)."""
    return distance_verdict(-high, -low)


@dataclass(frozen=True)
class PrdcComparison:
    """``a`` against ``b`` on one reference (``n_matched`` clips each, ``k`` neighbours): density and
    coverage of each, their differences ``a - b`` and the intervals of the differences."""

    a: str
    b: str
    n_matched: int
    k: int
    density_a: float
    density_b: float
    density_diff: float
    density_low: float
    density_high: float
    coverage_a: float
    coverage_b: float
    coverage_diff: float
    coverage_low: float
    coverage_high: float

    @property
    def density_verdict(self) -> str:
        return verdict(self.density_low, self.density_high)

    @property
    def coverage_verdict(self) -> str:
        return verdict(self.coverage_low, self.coverage_high)

    def to_dict(self) -> dict:
        return {**asdict(self), "density_verdict": self.density_verdict, "coverage_verdict": self.coverage_verdict}


def _stream(seed: int, name: str) -> np.random.Generator:
    """An independent random stream per set name (CRC-32 of the name), reproducible from ``seed``."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def matched(x: np.ndarray, n: int, name: str, seed: int) -> np.ndarray:
    """``n`` of the rows of ``x`` drawn without replacement (in their order), or all of them if that is n."""
    if len(x) == n:
        return x
    return x[np.sort(_stream(seed + 1, name).choice(len(x), size=n, replace=False))]


def compare_prdc(a: np.ndarray, b: np.ndarray, reference, names: tuple[str, str] = ("a", "b"), k: int | None = None,
                 seed: int = 0, ci: float = 0.95) -> PrdcComparison:
    """Density and coverage of evaluation clips ``a`` and ``b`` (each (n, dim), one vector per clip:
    ``prdc.clip_means``) against ``reference`` ((m, dim) or a prepared ``PrdcReference``), at a matched
    number of clips, with the differences' intervals and verdicts (module docstring).

    Raises ``TooFewClipsError`` naming the set when the smaller set has fewer than k + 2 clips (the
    jackknife needs k + 1 after leaving one out) or the reference fewer than k + 1, ``ValueError``
    naming the set for NaN/inf, and for mismatched dimensions or two sets of one name.
    """
    from scipy.stats import norm

    if names[0] == names[1]:
        raise ValueError(f"the two sets need different names (their random streams), got {names[0]!r} twice")
    if not isinstance(reference, PrdcReference):
        reference = PrdcReference(reference, 5 if k is None else k)
    a, b = (checked_points(x, f"evaluation {name!r}", reference.k) for x, name in zip((a, b), names))
    n = min(len(a), len(b))
    if n < reference.k + 2:
        raise TooFewClipsError(f"{names[int(len(b) < len(a))]!r} has {n} clips; a comparison with k = {reference.k} "
                               f"needs at least {reference.k + 2} (k + 1 after leaving one out)")
    ra: PrdcResult = prdc_score(reference, matched(a, n, names[0], seed), k, ci)
    rb: PrdcResult = prdc_score(reference, matched(b, n, names[1], seed), k, ci)
    z = float(norm.ppf(0.5 + ci / 2.0))
    out = {}
    for metric in ("density", "coverage"):
        diff = getattr(ra, metric) - getattr(rb, metric)
        half = z * math.sqrt(getattr(ra, f"{metric}_se") ** 2 + getattr(rb, f"{metric}_se") ** 2)
        out.update({f"{metric}_a": getattr(ra, metric), f"{metric}_b": getattr(rb, metric), f"{metric}_diff": diff,
                    f"{metric}_low": diff - half, f"{metric}_high": diff + half})
    return PrdcComparison(names[0], names[1], n, reference.k, **out)
