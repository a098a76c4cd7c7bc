"""The intervals and tests of the scoring path on simulated Gaussians with a known answer.

Each check repeats a seeded experiment at least 200 times: FAD-inf must recover the true Frechet
distance where plain FAD is biased; every 95% interval (FAD, FAD-inf, KAD, the difference of two
systems) must cover its true value in at least 90% of the repetitions; the paired test must keep its
false-positive rate near 5% on two samples of one distribution. The true values:

* FAD's interval describes the spread of FAD over evaluation sets of the same size n: its target is
  E[FAD_n], estimated by 4000 Monte Carlo draws;
* FAD-inf targets the Frechet distance between the two Gaussians, known in closed form;
* KAD's jackknife interval targets E[KAD] over evaluation draws against the fixed reference sample,
  known in closed form for a Gaussian kernel (``simulated.expected_kad``);
* the FAD difference of two systems targets E[FAD_n(A)] - E[FAD_n(B)], the KAD difference the
  difference of the two closed forms.
"""

from __future__ import annotations

import numpy as np
import pytest

from musicdiff.evaluation.comparison import TIED, compare
from musicdiff.evaluation.scoring import Reference, ScoreSettings, score
from musicdiff.evaluation.metrics.fad import fad_score, frechet_distance, gaussian_stats
from musicdiff.evaluation.metrics.fad_inf import fad_inf, subset_sizes
from musicdiff.evaluation.metrics.kad import kad_score, median_bandwidth

from simulated import Gaussian, embedded, expected_kad, true_fd, world

REPS = 200


def _expected_fad(ref_stats, evl: Gaussian, n: int, rng, draws: int = 4000) -> float:
    """E[FAD_n] of ``n`` draws from ``evl`` against the reference statistics ``ref_stats`` (Monte Carlo)."""
    return float(np.mean([frechet_distance(ref_stats, gaussian_stats(evl.draw(n, rng)))[0] for _ in range(draws)]))


def test_fad_bootstrap_interval_covers_the_expected_fad_at_its_n():
    ref, evl = world(16, seed=0)
    rng = np.random.default_rng(1)
    n = 128
    target = _expected_fad(ref.stats, evl, n, rng)
    assert target > true_fd(ref, evl) * 1.03  # plain FAD at this n is biased upwards
    hits = 0
    for r in range(REPS):
        result = fad_score(ref.stats, [row[None] for row in evl.draw(n, rng)], n_bootstrap=200, seed=r)
        hits += result.ci_low <= target <= result.ci_high
    assert hits / REPS >= 0.90, hits / REPS


def test_fad_inf_recovers_the_true_distance_where_plain_fad_is_biased_and_its_interval_covers_it():
    ref, evl = world(16, seed=0)
    truth = true_fd(ref, evl)
    rng = np.random.default_rng(2)
    pool = 1024
    plain, inf, hits = [], [], 0
    for r in range(REPS):
        clips = [row[None] for row in evl.draw(pool, rng)]
        full = fad_score(ref.stats, clips, n_bootstrap=100, seed=r)
        fit = fad_inf(ref.stats, clips, sizes=subset_sizes(pool), repeats=4, seed=r, pool_sd=full.bootstrap_sd,
                      min_subset_clips=16)
        assert fit.sizes[-1] <= pool // 2 and fit.sizes[-1] / fit.sizes[0] >= 7.9  # pool > largest subset; x8
        plain.append(full.fad - truth)
        inf.append(fit.fad_inf - truth)
        hits += fit.ci_low <= truth <= fit.ci_high
    se_plain, se_inf = np.std(plain) / np.sqrt(REPS), np.std(inf) / np.sqrt(REPS)
    assert np.mean(plain) > 4 * se_plain  # plain FAD of 1024 clips is biased
    assert abs(np.mean(inf)) < 3 * se_inf  # FAD-inf is not, within its own Monte Carlo error
    assert abs(np.mean(inf)) < abs(np.mean(plain)) / 3
    assert hits / REPS >= 0.90, hits / REPS


def test_fad_inf_is_marked_unreliable_when_its_subsets_are_smaller_than_the_dimension():
    # 200-d, a pool of 400 clips: the smallest subset (25 clips) is far below 200 frames, FAD bends away
    # from a + b/n and the linear fit overshoots; the result must say so.
    ref, evl = world(200, seed=3)
    clips = [row[None] for row in evl.draw(400, np.random.default_rng(4))]
    fit = fad_inf(ref.stats, clips, repeats=3, seed=0, min_subset_clips=200)
    assert not fit.reliable and "smallest subset" in fit.reason
    with pytest.raises(ValueError, match="too small"):
        subset_sizes(20)


def test_kad_jackknife_interval_covers_the_expected_kad_against_a_fixed_reference():
    ref, evl = world(16, seed=0)
    rng = np.random.default_rng(5)
    reference = ref.draw(600, rng)
    bandwidth = median_bandwidth(reference)
    target = expected_kad(reference, evl, bandwidth)
    hits = 0
    for _ in range(REPS):
        result = kad_score(reference, [row[None] for row in evl.draw(150, rng)], bandwidth=bandwidth)
        hits += result.ci_low <= target <= result.ci_high
    assert target > 0 and hits / REPS >= 0.90, hits / REPS


def _reference(ref: Gaussian, rng, m: int = 600) -> Reference:
    return Reference.from_set(embedded(ref.draw(m, rng), "reference"))


def test_difference_of_two_systems_interval_covers_the_true_difference():
    ref, evl_a = world(16, seed=0, shift=0.5)
    _, evl_b = world(16, seed=0, shift=0.7)
    rng = np.random.default_rng(6)
    reference = _reference(ref, rng)
    n = 128
    target_fad = _expected_fad(reference.stats, evl_a, n, rng) - _expected_fad(reference.stats, evl_b, n, rng)
    h = reference.bandwidth
    target_kad = expected_kad(reference.frames, evl_a, h) - expected_kad(reference.frames, evl_b, h)
    settings = ScoreSettings(n_bootstrap=200)
    fad_hits = kad_hits = 0
    for r in range(REPS):
        a = embedded(evl_a.draw(n, rng), f"a{r}")
        b = embedded(evl_b.draw(n, rng), f"b{r}")
        c = compare(a, b, reference, settings)
        fad_hits += c.fad_low <= target_fad <= c.fad_high
        kad_hits += c.kad_low <= target_kad <= c.kad_high
    assert fad_hits / REPS >= 0.90 and kad_hits / REPS >= 0.90, (fad_hits / REPS, kad_hits / REPS)


def test_paired_test_false_positive_rate_is_near_five_percent_for_one_distribution():
    ref, evl = world(16, seed=0)
    rng = np.random.default_rng(7)
    reference = _reference(ref, rng)
    settings = ScoreSettings(n_bootstrap=200)
    fad_fp = kad_fp = 0
    reps = 300
    for r in range(reps):
        c = compare(embedded(evl.draw(128, rng), f"a{r}"), embedded(evl.draw(128, rng), f"b{r}"), reference, settings)
        assert c.fad_adequate  # 128 one-frame clips > 2 x 16 dimensions
        fad_fp += c.fad_verdict != TIED
        kad_fp += c.kad_verdict != TIED
    assert 0.01 <= fad_fp / reps <= 0.10, fad_fp / reps
    assert 0.01 <= kad_fp / reps <= 0.10, kad_fp / reps


def test_a_clearly_worse_system_is_found_worse_and_adequacy_follows_the_dimension():
    ref, good = world(16, seed=0, shift=0.2)
    _, bad = world(16, seed=0, shift=1.5)
    rng = np.random.default_rng(8)
    reference = _reference(ref, rng)
    c = compare(embedded(bad.draw(200, rng), "bad"), embedded(good.draw(200, rng), "good"), reference)
    assert c.fad_verdict == c.kad_verdict == c.verdict == "worse"
    few = score(embedded(good.draw(31, rng), "few"), reference)  # 31 frames < 2 x 16
    assert not few.adequate and "undersampled" in few.flags()[0]
    enough = score(embedded(good.draw(32, rng), "enough"), reference)
    assert enough.adequate and not enough.flags()


def test_per_clip_scores_do_not_depend_on_how_many_frames_a_clip_has():
    # Reference clips of 3 frames and evaluation clips of 1 frame, all drawn from one Gaussian: every
    # evaluation clip belongs to the reference, so the z-scores must centre on 0. The per-clip FAD with
    # a ddof-0 clip covariance (fadtk's per-song FAD) puts them far above instead.
    from musicdiff.evaluation.perclip import outlier_scores
    from musicdiff.evaluation.metrics.fad import GaussianStats

    ref, _ = world(16, seed=0)
    rng = np.random.default_rng(9)
    reference = [ref.draw(3, rng) for _ in range(300)]
    single = [ref.draw(1, rng) for _ in range(300)]
    triple = [ref.draw(3, rng) for _ in range(300)]
    z_single, z_triple = outlier_scores(reference, single).z, outlier_scores(reference, triple).z
    assert abs(np.mean(z_single)) < 0.15 and abs(np.mean(z_triple)) < 0.15
    stats = gaussian_stats(np.concatenate(reference))

    def fadtk_style(clip):
        centred = clip - clip.mean(axis=0)
        return frechet_distance(stats, GaussianStats(clip.mean(axis=0), centred.T @ centred / len(clip), len(clip)))[0]

    loo = np.array([fadtk_style(c) for c in reference])
    old_single = (np.array([fadtk_style(c) for c in single]) - loo.mean()) / loo.std(ddof=1)
    assert np.mean(old_single) > 1.0  # the frame-count dependence this score removes
