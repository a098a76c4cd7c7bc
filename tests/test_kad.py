"""KAD (and FAD-inf's subset draws) on real embeddings (log-mel statistics of the clips fadtk ships):
closed forms, the null test (two halves of one set), graded added noise, and the frozen bandwidth.
FAD-inf's bias and interval are tested on simulated Gaussians (test_simulations.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from musicdiff.evaluation.metrics.fad import fad_score
from musicdiff.evaluation.metrics.fad_inf import fad_inf
from musicdiff.evaluation.metrics.kad import kad_score, kernel_distance, median_bandwidth


@pytest.fixture(scope="module")
def audio(fadtk_clips):
    from musicdiff.data.audio import load_audio

    return [load_audio(p, 16000) for p in fadtk_clips]


@pytest.fixture(scope="module")
def embed():
    from musicdiff.evaluation.embeddings.registry import LogMelStats

    return LogMelStats().embed


@pytest.fixture(scope="module")
def halves(audio, embed):
    clips = [embed(a) for a in audio]
    return np.concatenate(clips[::2]), clips[1::2]


def test_kad_is_zero_in_expectation_for_one_distribution_and_matches_the_closed_form():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
    assert abs(kernel_distance(x, y, 2.0)) < 0.5  # unbiased: scatter around 0
    # Two points per side, 1-d: every kernel term by hand.
    r, e, s = np.array([[0.0], [1.0]]), np.array([[3.0], [5.0]]), 1.5
    k = lambda a, b: np.exp(-((a - b) ** 2) / (2 * s**2))  # noqa: E731
    by_hand = k(0, 1) + k(3, 5) - 2 * np.mean([k(0, 3), k(0, 5), k(1, 3), k(1, 5)])
    assert kernel_distance(r, e, s) == pytest.approx(100 * by_hand, rel=1e-12)


def test_bandwidth_is_frozen_from_the_reference(halves):
    ref, clips = halves
    sigma = median_bandwidth(ref)
    far = [c + 50.0 for c in clips]
    assert kad_score(ref, clips).bandwidth == kad_score(ref, far).bandwidth == sigma
    with pytest.raises(ValueError, match="bandwidth"):
        median_bandwidth(np.ones((10, 3)))


def test_null_two_halves_of_one_set_give_kad_near_zero_within_its_ci(halves):
    ref, clips = halves
    kad = kad_score(ref, clips)
    assert kad.ci_low <= 0.0 <= kad.ci_high


def test_jackknife_interval_equals_the_brute_force_one(halves):
    ref, clips = halves
    result = kad_score(ref, clips)
    assert result.kad == pytest.approx(kernel_distance(ref, np.concatenate(clips), result.bandwidth), rel=1e-12)
    leave_out = np.array([kernel_distance(ref, np.concatenate(clips[:c] + clips[c + 1:]), result.bandwidth)
                          for c in range(len(clips))])
    n = len(clips)
    se = np.sqrt((n - 1) / n * ((leave_out - leave_out.mean()) ** 2).sum())
    assert result.ci_high - result.kad == pytest.approx(norm.ppf(0.975) * se, rel=1e-9)


def test_kad_fad_and_fad_inf_rise_monotonically_with_added_noise(audio, embed, halves):
    ref, _ = halves
    rng = np.random.default_rng(0)
    kad, fad = [], []
    for snr_db in (30, 20, 10, 0):
        noisy = []
        for x in audio[1::2]:
            noise = rng.normal(size=x.shape).astype(np.float32) * np.sqrt(np.mean(x**2) / 10 ** (snr_db / 10))
            noisy.append(embed(np.clip(x + noise, -1.0, 1.0)))
        kad.append(kad_score(ref, noisy).kad)
        fad.append(fad_score(ref, noisy, n_bootstrap=0).fad)
    for series in (kad, fad):
        assert all(a < b for a, b in zip(series, series[1:])), series
    assert kad_score(ref, [embed(a) for a in audio[1::2]]).ci_high < kad[0]  # 30 dB SNR already separates


def test_fad_inf_draws_clips_without_replacement_and_checks_sizes(halves):
    ref, clips = halves
    result = fad_inf(ref, clips, sizes=[3, 6, 10], repeats=2, seed=3)
    assert result.sizes == [3, 6, 10] and len(result.fad) == 3 and result.pool == len(clips) == 11
    again = fad_inf(ref, clips, sizes=[3, 6, 10], repeats=2, seed=3)  # seeded
    assert (again.fad, again.fad_inf) == (result.fad, result.fad_inf)
    with pytest.raises(ValueError, match="larger than the largest subset"):
        fad_inf(ref, clips, sizes=[3, 6, 11])  # a subset as large as the pool is the pool itself
    with pytest.raises(ValueError, match="3 distinct"):
        fad_inf(ref, clips, sizes=[5, 5, 6])
