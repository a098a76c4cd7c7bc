"""The intervals of precision, recall, density and coverage on simulated Gaussians, against a Monte
Carlo target.

An interval describes the spread of a metric over evaluation sets of the same size n from the same
generator, scored against one fixed reference sample, so its target is E[metric at this n] given that
reference: the mean over 2000 fresh evaluation draws. Each check repeats a seeded experiment 400
times and asks the 95% interval to cover the target in at least 92% of them, in a setting where the
metrics are away from their bounds (coverage ~0.63, the setting where the bootstrap failed) and in
one of matched distributions (all four near the top). :data:`MIN_CLIPS_TO_READ` is re-derived by its
rule, and the density/coverage comparison of two systems is checked for its false-positive rate and
the coverage of its difference interval.
"""

from __future__ import annotations

import numpy as np
import pytest

from musicdiff.evaluation.comparison import TIED
from musicdiff.evaluation.metrics.prdc import (METRICS, MIN_CLIPS_TO_READ, Neighbourhoods, PrdcReference,
                                               prdc_score)
from musicdiff.evaluation.prdc_comparison import compare_prdc

REPS, DRAWS, DIM = 400, 2000, 8


class Generator:
    """N(shift / sqrt(dim) * 1, scale^2 I) in ``DIM`` dimensions."""

    def __init__(self, shift: float, scale: float):
        self.mu, self.scale = np.full(DIM, shift / np.sqrt(DIM)), scale

    def draw(self, n: int, rng) -> np.ndarray:
        return self.mu + self.scale * rng.normal(size=(n, DIM))


def expected(reference: PrdcReference, gen: Generator, n: int, rng, draws: int = DRAWS) -> np.ndarray:
    """E[(precision, recall, density, coverage)] of n draws from ``gen`` against the fixed reference."""
    return np.mean([Neighbourhoods(reference, gen.draw(n, rng)).values() for _ in range(draws)], axis=0)


@pytest.mark.parametrize("shift, scale, seed", [(1.0, 1.3, 1), (0.0, 1.0, 2)])
def test_intervals_cover_the_expected_metric_at_this_n(shift, scale, seed):
    rng = np.random.default_rng(seed)
    reference = PrdcReference(rng.normal(size=(200, DIM)))
    gen, n = Generator(shift, scale), 120
    target = expected(reference, gen, n, rng)
    hits = np.zeros(len(METRICS))
    for _ in range(REPS):
        result = prdc_score(reference, gen.draw(n, rng))
        hits += [result.interval(m)[0] <= t <= result.interval(m)[1] for m, t in zip(METRICS, target)]
    rates = dict(zip(METRICS, hits / REPS))
    assert all(rate >= 0.92 for rate in rates.values()), (target, rates)


def mean_half_widths(n: int, reps: int = 200) -> dict[str, float]:
    """Mean half-widths of the 95% intervals for two samples of one 8-d Gaussian of n clips each, k = 5."""
    rng = np.random.default_rng(n)
    widths = []
    for _ in range(reps):
        result = prdc_score(rng.normal(size=(n, DIM)), rng.normal(size=(n, DIM)))
        widths.append([(result.interval(m)[1] - result.interval(m)[0]) / 2 for m in METRICS])
    return dict(zip(METRICS, np.mean(widths, axis=0)))


def test_min_clips_to_read_follows_its_rule():
    # The rule (module docstring): the smallest n on the grid 30, 60, 90, 120, 150, 200 at which the
    # widest mean half-width of precision, recall and coverage is at most 0.1. The grid points below
    # MIN_CLIPS_TO_READ must fail it, MIN_CLIPS_TO_READ must meet it.
    grid = [30, 60, 90, 120, 150, 200]
    assert MIN_CLIPS_TO_READ in grid
    for n in grid[grid.index(MIN_CLIPS_TO_READ) - 1: grid.index(MIN_CLIPS_TO_READ) + 1]:
        widths = mean_half_widths(n)
        widest = max(widths[m] for m in ("precision", "recall", "coverage"))
        assert (widest <= 0.1) == (n >= MIN_CLIPS_TO_READ), (n, widths)


def test_comparison_of_one_distribution_with_itself_rarely_finds_a_difference():
    rng = np.random.default_rng(3)
    reference = PrdcReference(rng.normal(size=(200, DIM)))
    gen = Generator(1.0, 1.3)
    reps, fp = 300, np.zeros(2)
    for r in range(reps):
        c = compare_prdc(gen.draw(120, rng), gen.draw(120, rng), reference, (f"a{r}", f"b{r}"))
        fp += [c.density_verdict != TIED, c.coverage_verdict != TIED]
    assert (fp / reps <= 0.08).all(), fp / reps  # conservative intervals: at most the nominal 5% (+ noise)


def test_comparison_interval_covers_the_expected_difference_and_finds_a_clear_one():
    rng = np.random.default_rng(4)
    reference = PrdcReference(rng.normal(size=(200, DIM)))
    gen_a, gen_b, n = Generator(1.0, 1.3), Generator(1.5, 1.3), 120
    target = expected(reference, gen_a, n, rng) - expected(reference, gen_b, n, rng)
    target = {"density": target[2], "coverage": target[3]}
    reps, hits, better = 300, np.zeros(2), np.zeros(2)
    for r in range(reps):
        c = compare_prdc(gen_a.draw(n, rng), gen_b.draw(150, rng), reference, (f"a{r}", f"b{r}"))
        assert c.n_matched == n  # the larger set cut to the smaller one's size
        hits += [c.density_low <= target["density"] <= c.density_high,
                 c.coverage_low <= target["coverage"] <= c.coverage_high]
        better += [c.density_verdict == "better", c.coverage_verdict == "better"]
    assert target["density"] > 0 and target["coverage"] > 0
    assert (hits / reps >= 0.92).all(), (target, hits / reps)
    assert (better / reps > 0.1).all(), better / reps  # a small difference (power ~15% here) ...
    far = compare_prdc(gen_a.draw(n, rng), Generator(3.0, 1.3).draw(n, rng), reference, ("near", "far"))
    assert far.density_verdict == far.coverage_verdict == "better"  # ... and a clear one
    assert compare_prdc(Generator(3.0, 1.3).draw(n, rng), gen_a.draw(n, rng), reference,
                        ("far", "near")).coverage_verdict == "worse"
