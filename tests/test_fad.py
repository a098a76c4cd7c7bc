"""FAD numerics: closed forms, parity with fadtk's Frechet distance on real embeddings, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from musicdiff.metrics.fad import GaussianStats, fad_score, frechet_distance, gaussian_stats


def test_fad_of_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 16))
    fad, mean_term, trace_term = frechet_distance(gaussian_stats(x), gaussian_stats(x))
    assert abs(fad) < 1e-9 and mean_term == 0.0


def test_diagonal_gaussians_match_the_analytic_distance():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    got = frechet_distance(GaussianStats(mu1, np.diag(var1), 10), GaussianStats(mu2, np.diag(var2), 10))
    assert got[0] == pytest.approx(expected, rel=1e-12)
    assert got[1] == pytest.approx(5.0) and got[2] == pytest.approx(expected - 5.0)


def test_frechet_distance_matches_fadtk_on_real_embeddings(fadtk_clips):
    from fadtk.fad import calc_frechet_distance

    from musicdiff.data.audio import load_audio
    from musicdiff.metrics.embeddings import LogMelStats

    embedding = LogMelStats()
    clips = [embedding.embed(load_audio(p, embedding.sample_rate)) for p in fadtk_clips]
    a, b = np.concatenate(clips[::2]), np.concatenate(clips[1::2])
    assert a.shape[0] > a.shape[1] and b.shape[0] > b.shape[1]  # full-rank covariances
    sa, sb = gaussian_stats(a), gaussian_stats(b)
    ours = frechet_distance(sa, sb)[0]
    theirs = float(calc_frechet_distance(sa.mu, sa.cov, sb.mu, sb.cov))
    assert ours > 0.0
    assert abs(ours - theirs) / abs(theirs) <= 1e-6


def test_frechet_distance_matches_fadtk_on_shipped_fma_pop_statistics():
    import fadtk
    from pathlib import Path

    from fadtk.fad import calc_frechet_distance

    stats = np.load(Path(fadtk.__file__).parent / "stats" / "fma_pop.npz")
    mu, cov = stats["vggish.mu"].astype(np.float64), stats["vggish.cov"].astype(np.float64)
    rng = np.random.default_rng(1)
    sample = rng.multivariate_normal(mu + 0.3, cov * 1.5, size=2000)
    s = gaussian_stats(sample)
    ours = frechet_distance(GaussianStats(mu, cov, 0), s)[0]
    theirs = float(calc_frechet_distance(mu, cov, s.mu, s.cov))
    assert abs(ours - theirs) / theirs <= 1e-6


def test_fad_score_reports_n_parts_and_a_ci_that_contains_the_estimate():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(400, 8))
    clips = [rng.normal(loc=0.5, size=(5, 8)) for _ in range(40)]
    result = fad_score(ref, clips, n_bootstrap=100, seed=0)
    assert result.n_eval == 200 and result.n_eval_clips == 40 and result.n_ref == 400
    assert result.fad == pytest.approx(result.mean_term + result.trace_term)
    assert result.ci_low <= result.fad <= result.ci_high
    assert result.mean_term == pytest.approx(8 * 0.25, rel=0.3)


def test_bootstrap_ci_is_recentred_on_the_estimate_when_resampling_biases_fad():
    # 32 one-frame clips drawn from FMA-Pop's VGGish Gaussian (fadtk's shipped statistics, 128-d):
    # clips drawn twice inflate every resampled FAD, so the plain percentile interval lies wholly above
    # the estimate; the reported interval is re-centred on it.
    from musicdiff.data.reference_stats import fma_pop_stats

    reference = fma_pop_stats("vggish")
    draws = np.random.default_rng(1).multivariate_normal(reference.mu + 0.2, reference.cov, size=32)
    result = fad_score(reference, [d[None] for d in draws], n_bootstrap=200, seed=0)
    assert result.bootstrap_bias > 0.1 * result.fad
    assert result.ci_low + result.bootstrap_bias > result.fad  # the plain percentile interval misses it
    assert result.ci_low < result.fad < result.ci_high


def test_too_few_frames_for_a_covariance_is_an_error():
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="no evaluation clips"):
        fad_score(np.zeros((3, 4)), [])


def test_fad_stage_uses_shipped_statistics_only_for_the_embeddings_they_cover():
    from pipelines.evaluation import reference_statistics

    params = {"reference_stats": {"fma-pop": "fadtk/fma_pop"}}
    stats = reference_statistics(params, "clap-laion-music")
    assert list(stats) == ["fma-pop"] and stats["fma-pop"].mu.shape == (512,) and stats["fma-pop"].n == 0
    assert reference_statistics(params, "musicnn") == {}
    with pytest.raises(KeyError, match="fadtk/fma_pop"):
        reference_statistics({"reference_stats": {"x": "nowhere/else"}}, "vggish")


def test_fad_and_fad_inf_against_shipped_statistics_recover_a_known_distance():
    # Evaluation clips drawn from FMA-Pop's own VGGish Gaussian: FAD against the shipped statistics
    # must fall towards 0 as clips are added, and FAD-inf (1/n extrapolation from subsets of at most half
    # the 200 clips) must sit near 0, its interval holding the true 0.
    from musicdiff.data.reference_stats import fma_pop_stats
    from musicdiff.metrics.fad import fad_score
    from musicdiff.metrics.fad_inf import fad_inf

    ref = fma_pop_stats("vggish")
    rng = np.random.default_rng(0)
    clips = [rng.multivariate_normal(ref.mu, ref.cov, size=10) for _ in range(200)]
    small = fad_score(ref, clips[:50], n_bootstrap=0).fad
    large = fad_score(ref, clips, n_bootstrap=0).fad
    inf = fad_inf(ref, clips, repeats=3, seed=0)
    assert 0 < large < small
    assert abs(inf.fad_inf) < 0.5 * large and inf.ci_low <= 0.0 <= inf.ci_high and inf.r2 > 0.9
