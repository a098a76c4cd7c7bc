"""FAD numerics: closed forms, parity with fadtk's Frechet distance on real embeddings, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from musicdiff.evaluation.metrics.fad import GaussianStats, fad_score, frechet_distance, gaussian_stats


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
    from musicdiff.evaluation.embeddings.registry import LogMelStats

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
    from musicdiff.evaluation.metrics.fad import fad_score
    from musicdiff.evaluation.metrics.fad_inf import fad_inf

    ref = fma_pop_stats("vggish")
    rng = np.random.default_rng(0)
    clips = [rng.multivariate_normal(ref.mu, ref.cov, size=10) for _ in range(200)]
    small = fad_score(ref, clips[:50], n_bootstrap=0).fad
    large = fad_score(ref, clips, n_bootstrap=0).fad
    inf = fad_inf(ref, clips, repeats=3, seed=0)
    assert 0 < large < small
    assert abs(inf.fad_inf) < 0.5 * large and inf.ci_low <= 0.0 <= inf.ci_high and inf.r2 > 0.9


# --- the factored reference (issue 17): same numbers as before and as fadtk, resamples without recomputation ---

def _previous_frechet(ref: GaussianStats, evl: GaussianStats) -> float:
    """The implementation before the factored reference: the symmetric square root S of C_r from
    ``eigh``, then ``eigvalsh(S C_e S)`` with negative eigenvalues clipped to 0 (all others kept)."""
    values, vectors = np.linalg.eigh((ref.cov + ref.cov.T) / 2.0)
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = root @ evl.cov @ root
    eig = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    diff = ref.mu - evl.mu
    return float(diff @ diff + np.trace(ref.cov) + np.trace(evl.cov) - 2.0 * np.sqrt(np.clip(eig, 0.0, None)).sum())


def _previous_bootstrap(ref: GaussianStats, clips: list[np.ndarray], n_bootstrap: int, seed: int,
                        distance=_previous_frechet) -> np.ndarray:
    """The bootstrap before ``ProjectedClips``: stack the drawn clips' frames, recompute their statistics."""
    rng = np.random.default_rng(seed)
    return np.array([distance(ref, gaussian_stats(np.concatenate([clips[i] for i in rng.integers(0, len(clips),
                                                                                                  len(clips))])))
                     for _ in range(n_bootstrap)])


def _draw(stats: GaussianStats, n: int, rng: np.random.Generator) -> np.ndarray:
    values, vectors = np.linalg.eigh(stats.cov)
    return stats.mu + (rng.normal(size=(n, len(stats.mu))) * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


@pytest.mark.parametrize("ref_name,eval_name", [("vggish", "encodec-emb"), ("clap-laion-audio", "clap-laion-music"),
                                                ("MERT-v1-95M-4", "MERT-v1-95M-8")])
def test_factored_frechet_matches_the_previous_implementation_and_fadtk(ref_name, eval_name):
    # FMA-Pop statistics fadtk ships at d = 128, 512 and 768; the reference full-rank (as shipped) and
    # rank-deficient (the covariance of d/2 frames drawn from it).
    from fadtk.fad import calc_frechet_distance

    from musicdiff.data.reference_stats import fma_pop_stats

    full, evl = fma_pop_stats(ref_name), fma_pop_stats(eval_name)
    dim = full.mu.shape[0]
    deficient = gaussian_stats(_draw(full, dim // 2, np.random.default_rng(0)))
    assert full.factor.shape == (dim, dim) and deficient.factor.shape == (dim, dim // 2 - 1)
    for ref in (full, deficient):
        ours = frechet_distance(ref, evl)[0]
        assert abs(ours - _previous_frechet(ref, evl)) / ours <= 1e-6
        theirs = float(calc_frechet_distance(ref.mu, ref.cov, evl.mu, evl.cov))
        assert abs(ours - theirs) / theirs <= 1e-6


def test_trace_term_drops_rounding_noise_and_matches_extended_precision():
    # A rank-deficient evaluation covariance (15 frames in 24 dimensions): the old path added the square
    # roots of eigenvalues that are rounding noise (~1e-8 relative); the factored path counts them as 0 and
    # agrees with 40-digit arithmetic.
    import mpmath as mp

    from musicdiff.evaluation.metrics.fad import ProjectedClips

    rng = np.random.default_rng(3)
    dim = 24
    a = rng.normal(size=(dim, dim))
    ref = GaussianStats(rng.normal(size=dim), a @ a.T / dim + 0.1 * np.eye(dim), 0)
    frames = rng.normal(size=(15, dim)) * 0.5 + 0.2
    evl = gaussian_stats(frames)
    with mp.workdps(40):
        values, vectors = mp.eigsy(mp.matrix(ref.cov.tolist()))
        root = vectors * mp.diag([mp.sqrt(max(v, 0)) for v in values]) * vectors.T
        centred = mp.matrix((frames - frames.mean(axis=0)).tolist())  # exact: the float64 mean is the one used
        z = centred * root / mp.sqrt(len(frames) - 1)
        trace_sqrt = mp.fsum(mp.sqrt(max(v, 0)) for v in mp.eigsy(z * z.T, eigvals_only=True))
        diff = ref.mu - evl.mu
        exact = float(mp.mpf(float(diff @ diff)) + mp.fsum(np.diag(ref.cov)) + mp.fsum(np.diag(evl.cov)) - 2 * trace_sqrt)
    assert frechet_distance(ref, evl)[0] == pytest.approx(exact, rel=1e-12)
    assert ProjectedClips(ref, [f[None] for f in frames]).fad(np.ones(15)) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("frames_per_clip", [1, 4])
def test_bootstrap_equals_the_per_resample_recomputation(frames_per_clip):
    # 64 clips against FMA-Pop's VGGish statistics (128-d): one frame per clip gives rank-deficient
    # resamples (fewer frames than dimensions), four frames full-rank ones.
    from musicdiff.data.reference_stats import fma_pop_stats
    from musicdiff.evaluation.metrics.fad import bootstrap_fads

    ref = fma_pop_stats("vggish")
    rng = np.random.default_rng(4)
    clips = list(_draw(GaussianStats(ref.mu + 0.3, ref.cov * 1.2, 0), 64 * frames_per_clip, rng)
                 .reshape(64, frames_per_clip, -1))
    ours = bootstrap_fads(ref, clips, 40, np.random.default_rng(9))
    direct = _previous_bootstrap(ref, clips, 40, 9, distance=lambda r, e: frechet_distance(r, e)[0])
    previous = _previous_bootstrap(ref, clips, 40, 9)
    assert np.max(np.abs(ours - direct) / direct) <= 1e-9  # same resamples, same FAD as stacking their frames
    # against the previous implementation: 1e-9 where no resample is singular; with singular ones it added
    # the square roots of rounding noise (see the test above), ~1e-8 relative
    assert np.max(np.abs(ours - previous) / previous) <= (1e-9 if frames_per_clip == 4 else 1e-6)
    unequal = clips[:-1] + [np.concatenate([clips[-1], clips[0]])]  # clips of unequal length
    assert np.allclose(bootstrap_fads(ref, unequal, 5, np.random.default_rng(1)),
                       _previous_bootstrap(ref, unequal, 5, 1, distance=lambda r, e: frechet_distance(r, e)[0]),
                       rtol=1e-9, atol=0)


def test_fad_inf_subsets_equal_the_recomputed_fad():
    from musicdiff.evaluation.metrics.fad_inf import fad_inf

    rng = np.random.default_rng(5)
    ref = gaussian_stats(rng.normal(size=(300, 16)))
    clips = [rng.normal(loc=0.3, size=(3, 16)) for _ in range(80)]
    got = fad_inf(ref, clips, sizes=[5, 10, 20, 40], repeats=3, seed=2)
    draw = np.random.default_rng(2)
    expected = [np.mean([frechet_distance(ref, gaussian_stats(np.concatenate(
        [clips[i] for i in draw.choice(80, n, replace=False)])))[0] for _ in range(3)]) for n in [5, 10, 20, 40]]
    assert np.allclose(got.fad, expected, rtol=1e-9, atol=0)


def test_a_reference_is_factored_once_for_every_set_resample_and_subset(monkeypatch):
    from musicdiff.evaluation.scoring import Reference, ScoreSettings, score

    from simulated import embedded

    rng = np.random.default_rng(6)
    calls = []
    eigh = np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda *a, **k: calls.append(1) or eigh(*a, **k))
    reference = Reference.from_set(embedded(rng.normal(size=(200, 8)), "ref"))
    settings = ScoreSettings(n_bootstrap=20, fad_inf_repeats=2)
    for name in ("a", "b"):
        result = score(embedded(rng.normal(loc=0.2, size=(120, 8)), name), reference, settings, kad=False)
        assert result.fad_inf is not None and np.isfinite(result.fad.ci_low)
    assert len(calls) == 1  # the reference's factor; resamples and subsets use eigvalsh only
