"""Precision, recall, density and coverage (``musicdiff.evaluation.metrics.prdc``): agreement with the
``prdc`` package (Naeem et al.'s code), the closed-form leave-one-out values, bad input, duplicates,
memory of the blocked k-NN, and known answers on Gaussian mixtures. The intervals' coverage is in
``tests/test_prdc_simulations.py``."""

from __future__ import annotations

import contextlib
import io
import tracemalloc

import numpy as np
import pytest

from musicdiff.evaluation.metrics.intervals import wilson_count, wilson_from_se, wilson_interval
from musicdiff.evaluation.metrics.prdc import (METRICS, MIN_CLIPS_TO_READ, Neighbourhoods, PrdcReference,
                                               TooFewClipsError, clip_means, prdc_score)

prdc = pytest.importorskip("prdc")


def reference_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the set sizes
        return prdc.compute_prdc(real, fake, k)


def values(result) -> np.ndarray:
    return np.array([getattr(result, m) for m in METRICS])


@pytest.mark.parametrize("m, n, dim, k, block", [(200, 150, 8, 5, 64), (300, 500, 16, 3, 100), (60, 50, 4, 10, 7),
                                                 (40, 12, 32, 1, 5), (120, 120, 2, 5, 1024)])
def test_agrees_with_the_prdc_package(m, n, dim, k, block):
    rng = np.random.default_rng(m + n + k)
    real = rng.normal(size=(m, dim)) + 3.0  # an offset: the expanded distances are centred first
    fake = 1.3 * rng.normal(size=(n, dim)) + 3.2
    expected = reference_prdc(real, fake, k)
    got = prdc_score(real, fake, k, block_rows=block)
    for name in METRICS:
        assert abs(expected[name] - getattr(got, name)) <= 1e-12, name
    assert (got.n_real, got.n_fake, got.k, got.dim) == (m, n, k, dim)


def test_agrees_with_the_prdc_package_on_ties_and_duplicates():
    # Integer points on a 3x3x3 grid: many exactly tied distances, many duplicates, zero radii. Both
    # sides compute these distances exactly, so every strict comparison must come out the same.
    rng = np.random.default_rng(1)
    real = rng.integers(0, 3, size=(150, 3)).astype(float)
    fake = rng.integers(0, 3, size=(90, 3)).astype(float)
    for k in (1, 3, 5):
        expected = reference_prdc(real, fake, k)
        got = prdc_score(real, fake, k, block_rows=16)
        assert all(abs(expected[name] - getattr(got, name)) <= 1e-12 for name in METRICS), (k, expected, got)
    assert got.zero_radius_real > 0 and got.zero_radius_fake > 0  # 27 grid points, 150 clips: >= 5 copies
    assert any("zero radius" in f for f in got.flags())


def test_a_zero_radius_ball_admits_not_even_an_exact_copy():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(40, 4))
    real[:6] = real[0]  # six copies: each has >= 5 neighbours at distance 0, radius 0
    fake = np.concatenate([real[:1], rng.normal(size=(30, 4)) + 20.0])  # one copy, the rest far away
    got = prdc_score(real, fake)
    assert got.zero_radius_real == 6
    assert got.precision == 0.0 and got.coverage == 0.0  # strict <: the copy is in no ball
    assert got.precision == reference_prdc(real, fake, 5)["precision"]


def test_leave_one_out_values_equal_recomputing_without_the_clip():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(60, 3))
    for n, k, scale in [(30, 5, 1.0), (8, 3, 2.0), (7, 5, 1.0), (25, 2, 0.5)]:
        fake = scale * rng.normal(size=(n, 3))
        fake[2] = fake[3]  # a duplicate pair among the evaluation clips
        ref = PrdcReference(real, k)
        loo = Neighbourhoods(ref, fake).leave_one_out()
        brute = np.array([Neighbourhoods(ref, np.delete(fake, j, axis=0)).values() for j in range(n)])
        assert np.max(np.abs(loo - brute)) < 1e-12, (n, k)


def test_recall_has_no_interval_when_leaving_one_out_leaves_too_few_clips():
    rng = np.random.default_rng(4)
    got = prdc_score(rng.normal(size=(20, 3)), rng.normal(size=(6, 3)), k=5)
    assert np.isnan(got.recall_se) and np.isnan(got.recall_low)
    assert not np.isnan(got.precision_low) and not got.readable and "few clips" in got.flags()[0]


def test_bad_input_names_the_set():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
    with pytest.raises(TooFewClipsError, match=r"evaluation set has 5 clips; k = 5 .* at least 6"):
        prdc_score(real, fake[:5])
    with pytest.raises(TooFewClipsError, match="reference set has 3 clips"):
        prdc_score(real[:3], fake, k=3)
    assert issubclass(TooFewClipsError, ValueError)
    bad = fake.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="evaluation embeddings contain NaN or inf"):
        prdc_score(real, bad)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="reference embeddings contain NaN or inf"):
        prdc_score(bad, fake)
    with pytest.raises(ValueError, match="dimension mismatch"):
        prdc_score(real, fake[:, :3])
    with pytest.raises(ValueError, match="must be .clips, dim."):
        prdc_score(real, fake[0])
    with pytest.raises(ValueError, match="positive integer"):
        prdc_score(real, fake, k=0)
    with pytest.raises(ValueError, match="prepared with k = 5"):
        prdc_score(PrdcReference(real), fake, k=3)


def test_clip_means_average_each_clip_over_its_frames():
    clips = [np.array([[0.0, 2.0], [2.0, 4.0]]), np.array([[1.0, 1.0]])]
    assert np.array_equal(clip_means(clips), [[1.0, 3.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="no clips"):
        clip_means([])
    with pytest.raises(ValueError, match="clip 1 must be"):
        clip_means([clips[0], np.zeros((0, 2))])
    with pytest.raises(ValueError, match="different dimensions"):
        clip_means([clips[0], np.zeros((1, 3))])


def test_a_prepared_reference_gives_the_same_result():
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(80, 5)), rng.normal(size=(70, 5))
    assert prdc_score(PrdcReference(real, 4), fake) == prdc_score(real, fake, k=4)


def test_blocks_bound_the_memory():
    # 3000 x 3000 clips in blocks of 128 rows: a block is 128 x 3000 x 8 bytes = 3 MB, the full distance
    # matrix would be 72 MB. The peak of numpy's traced allocations stays near a few blocks.
    rng = np.random.default_rng(7)
    real, fake = rng.normal(size=(3000, 16)), rng.normal(size=(3000, 16))
    tracemalloc.start()
    try:
        prdc_score(real, fake, block_rows=128)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    block = 128 * 3000 * 8
    assert peak < 12 * block, peak / block  # far below the 24 blocks of one full matrix


def test_wilson_intervals():
    low, high = wilson_count(0, 20)
    assert low == 0.0 and 0.15 < high < 0.17  # 0.161 (Brown, Cai & DasGupta 2001)
    low, high = wilson_interval(0.5, 100)
    assert abs(low - 0.4038) < 1e-3 and abs(high - 0.5962) < 1e-3
    assert wilson_from_se(0.5, 0.05, 10) == wilson_interval(0.5, 100)
    assert wilson_from_se(1.0, 0.0, 50) == wilson_interval(1.0, 50)
    assert np.isnan(wilson_count(0, 0)[0])


# ---- known answers on a Gaussian mixture: 8 unit-variance components 8 apart in 8 dimensions ----

DIM, COMPONENTS = 8, 8
MEANS = 8.0 * np.eye(COMPONENTS, DIM)


def mixture(n: int, rng, components=range(COMPONENTS), scale: float = 1.0) -> np.ndarray:
    which = rng.choice(np.asarray(components), n)
    return MEANS[which] + scale * rng.normal(size=(n, DIM))


def test_half_of_the_modes_gives_half_the_coverage_and_recall_at_full_precision():
    rng = np.random.default_rng(10)
    got = prdc_score(mixture(800, rng), mixture(400, rng, range(4)))
    assert got.precision > 0.9 and 0.85 < got.density < 1.2  # what it makes is real-looking
    assert 0.35 < got.recall < 0.55 and 0.4 < got.coverage < 0.55  # but only half of it
    assert got.coverage_high < 0.6 and got.recall_high < 0.6


def test_a_narrow_generator_raises_precision_and_lowers_recall():
    rng = np.random.default_rng(11)
    real = PrdcReference(mixture(800, rng))
    matched = prdc_score(real, mixture(400, rng))
    narrow = prdc_score(real, mixture(400, rng, scale=0.5))
    assert narrow.precision > matched.precision and narrow.precision_low > matched.precision_high
    assert narrow.recall < 0.5 * matched.recall and narrow.recall_high < matched.recall_low
    assert narrow.density > 2.0  # crowded into the dense centres of the reference's modes


def test_two_halves_of_one_distribution_score_near_the_top():
    rng = np.random.default_rng(12)
    pool = mixture(1600, rng)
    got = prdc_score(pool[:800], pool[800:])
    assert got.precision > 0.9 and got.recall > 0.9
    assert 0.9 < got.density < 1.1 and got.coverage > 0.95  # ~ 1 - e^-5
    assert got.density_low < 1.0 < got.density_high


def test_outliers_inflate_precision_and_recall_more_than_coverage_but_density_follows_precision():
    # Naeem et al. 2020 claim that precision and recall are inflated by outliers and that density and
    # coverage are robust to them. Found here (8-d Gaussians, 500 clips a side, the evaluation set shifted,
    # 25 outliers (5%) on a shell of radius 10-15; this seed and two other set-ups): outliers in the
    # reference raised precision by 0.07-0.13 and coverage by only 0.01-0.016, as claimed, but density rose
    # nearly as much as precision (+0.06-0.12: every evaluation clip inside an outlier's huge ball counts
    # once more), so density is *not* robust to outliers in the reference; recall fell (-0.04 to -0.05:
    # the outliers are reference clips that nobody recalls). Outliers in the evaluation set raised recall
    # (+0.04-0.12) while coverage moved by -0.01 to -0.024 (and precision and density fell by about the
    # outliers' share, rightly: they are bad samples). With 1 or 5 outliers every change was below 0.05.
    rng = np.random.default_rng(13)

    def shell(n):
        v = rng.normal(size=(n, DIM))
        return 10.0 * v / np.linalg.norm(v, axis=1, keepdims=True) * rng.uniform(1.0, 1.5, (n, 1))

    shift = 2.0 / np.sqrt(DIM)
    real, fake = rng.normal(size=(500, DIM)), rng.normal(size=(500, DIM)) + shift
    clean = values(prdc_score(real, fake, intervals_=False))
    real_out, fake_out = real.copy(), fake.copy()
    real_out[:25], fake_out[:25] = shell(25), shell(25) + shift
    in_real = values(prdc_score(real_out, fake, intervals_=False)) - clean
    in_fake = values(prdc_score(real, fake_out, intervals_=False)) - clean
    p, r, d, c = range(4)
    assert in_real[p] > 0.05 and in_real[p] > 4 * abs(in_real[c])
    assert in_real[d] > 0.05  # the finding above: density follows precision here
    assert in_real[r] < 0
    assert in_fake[r] > 0.03 and in_fake[r] > 2 * abs(in_fake[c])


def test_min_clips_to_read_is_a_documented_constant():
    import musicdiff.evaluation.metrics.prdc as module

    assert MIN_CLIPS_TO_READ == 120 and f"({MIN_CLIPS_TO_READ})" in module.__doc__
    rng = np.random.default_rng(14)
    few = prdc_score(rng.normal(size=(200, 4)), rng.normal(size=(MIN_CLIPS_TO_READ - 1, 4)))
    enough = prdc_score(rng.normal(size=(200, 4)), rng.normal(size=(MIN_CLIPS_TO_READ, 4)))
    assert not few.readable and few.flags() and enough.readable and not enough.flags()
    assert few.to_dict()["readable"] is False


def test_comparison_bad_input_and_report():
    from musicdiff.evaluation.prdc_comparison import compare_prdc

    rng = np.random.default_rng(15)
    reference, a, b = rng.normal(size=(60, 4)), rng.normal(size=(40, 4)), rng.normal(size=(30, 4)) + 3.0
    c = compare_prdc(a, b, reference, ("sys-a", "sys-b"))
    assert c.n_matched == 30 and c.coverage_verdict == c.density_verdict == "better"
    assert c.to_dict()["coverage_verdict"] == "better" and c.coverage_low > 0
    with pytest.raises(ValueError, match="different names"):
        compare_prdc(a, b, reference, ("x", "x"))
    with pytest.raises(TooFewClipsError, match="'small' has 6 clips; a comparison with k = 5 needs at least 7"):
        compare_prdc(a, b[:6], reference, ("big", "small"))
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="evaluation 'sys-a' embeddings contain NaN"):
        compare_prdc(bad, b, reference, ("sys-a", "sys-b"))
