"""Intervals for proportions: the Wilson score interval, also at an effective sample size.

The Wilson interval (Wilson 1927, "Probable inference, the law of succession, and statistical
inference", JASA 22, 209-212) of a proportion p observed on n trials is

    (p + z^2/(2n) +- z sqrt(p(1 - p)/n + z^2/(4n^2))) / (1 + z^2/n)

It stays inside [0, 1] and keeps its level near 0 and 1, where the normal (Wald) interval
``p +- z sqrt(p(1-p)/n)`` collapses (Brown, Cai & DasGupta 2001, "Interval Estimation for a Binomial
Proportion", Statist. Sci. 16(2)). For a proportion that is not a plain count of independent trials
(coverage of reference balls, recall), :func:`wilson_from_se` uses the effective sample size
``n_eff = p(1 - p) / se^2`` of a standard error found otherwise (Korn & Graubard 1998, "Confidence
intervals for proportions with small expected number of positive counts estimated from survey data",
Survey Methodology 24(2)).
"""

from __future__ import annotations

import math

from scipy.stats import norm


def wilson_interval(p: float, n: float, ci: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` of proportion ``p`` on ``n`` (> 0, not necessarily whole)
    trials at level ``ci``. Raises ``ValueError`` for p outside [0, 1] or n <= 0."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a proportion must lie in [0, 1], got {p}")
    if not n > 0:
        raise ValueError(f"the number of trials must be positive, got {n}")
    if math.isinf(n):
        return p, p
    z = float(norm.ppf(0.5 + ci / 2.0))
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_count(successes: int, n: int, ci: float = 0.95) -> tuple[float, float]:
    """Wilson interval of ``successes`` out of ``n`` trials; (NaN, NaN) for n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    return wilson_interval(successes / n, n, ci)


def wilson_from_se(p: float, se: float, n_fallback: float, ci: float = 0.95) -> tuple[float, float]:
    """Wilson interval of ``p`` at the effective sample size ``p(1 - p) / se^2``. Where that is undefined
    (``se`` = 0: p at 0 or 1, or every unit contributing alike) ``n_fallback`` trials are used; a NaN
    ``se`` gives (NaN, NaN)."""
    if math.isnan(se) or math.isnan(p):
        return float("nan"), float("nan")
    n_eff = p * (1.0 - p) / (se * se) if se > 0 and 0.0 < p < 1.0 else float(n_fallback)
    return wilson_interval(p, n_eff, ci)
