"""The scoring path on real music (the clips fadtk ships: MusicGen, MusicLM and Mubert generations), cut
by the evaluation protocol: two disjoint halves of one set score near zero by KAD and below every other
set by FAD; flags; degradations do what they say."""

from __future__ import annotations

import numpy as np
import pytest

from musicdiff.evaluation.comparison import compare, rank
from musicdiff.evaluation.degradations import degrade, rank_correlation, strength
from musicdiff.evaluation.protocol import EvaluationProtocol
from musicdiff.evaluation.scoring import Reference, ScoreSettings, score
from musicdiff.evaluation.engine import embed_files
from musicdiff.evaluation.embeddings.registry import LogMelStats

PROTOCOL = EvaluationProtocol(0.73, 22050)


@pytest.fixture(scope="module")
def sets(fadtk_clips, tmp_path_factory):
    """logmel-stats embedding sets of fadtk's clips by generator; MusicGen's clips split into two disjoint
    halves (alternate 0.73 s clips of its 11 files)."""
    cache = tmp_path_factory.mktemp("cache")
    groups = {"mg": [], "mlm": [], "mubert": []}
    for clip in fadtk_clips:
        groups[clip.name.split("-")[0]].append(clip)
    embedding = LogMelStats()
    made = {name: embed_files(embedding, groups[key], PROTOCOL, name, cache_dir=cache, progress=False)
            for name, key in (("musicgen", "mg"), ("musiclm", "mlm"), ("mubert", "mubert"))}
    musicgen = made.pop("musicgen")
    made["musicgen-a"] = musicgen.subset(range(0, len(musicgen.clips), 2), "musicgen-a")
    made["musicgen-b"] = musicgen.subset(range(1, len(musicgen.clips), 2), "musicgen-b")
    return made


def test_two_disjoint_halves_score_near_zero_by_kad_and_below_every_other_set_by_fad(sets):
    settings = ScoreSettings(n_bootstrap=100)
    scores = {name: score(sets["musicgen-a"], Reference.from_set(sets[name]), settings)
              for name in ("musicgen-b", "musiclm", "mubert")}
    own = scores["musicgen-b"]
    assert own.kad.ci_low <= 0.5 and own.kad.kad < 0.1 * min(scores[n].kad.kad for n in ("musiclm", "mubert"))
    assert own.fad.fad < min(scores[n].fad.fad for n in ("musiclm", "mubert"))
    assert own.fad.ci_high < min(scores[n].fad.ci_low for n in ("musiclm", "mubert"))
    # 11 ten-second files give 71 one-frame clips per half: fewer than 2 x 128 dimensions, so FAD is flagged
    assert own.n_independent == len(sets["musicgen-a"].clips) and not own.adequate
    assert "undersampled" in own.flags()[0] and own.fad_inf is not None


def test_the_paired_test_tells_a_different_generator_apart(sets):
    reference = Reference.from_set(sets["musicgen-b"])
    c = compare(sets["mubert"], sets["musicgen-a"], reference, ScoreSettings(n_bootstrap=100))
    assert c.kad_verdict == "worse" and c.n_matched == min(len(sets["mubert"].clips), len(sets["musicgen-a"].clips))
    ranking = rank({k: v for k, v in sets.items() if k != "musicgen-b"}, reference, ScoreSettings(n_bootstrap=50))
    assert ranking[0].system == "musicgen-a" and ranking[0].versus_above is None
    assert all(r.versus_above is not None for r in ranking[1:])


def test_degradations_do_what_they_say(fadtk_clips):
    from musicdiff.data.audio import load_audio

    rate = 22050
    audio = PROTOCOL.clips(load_audio(fadtk_clips[0], rate))[:4]
    noisy = degrade(audio, rate, "white_noise", 10.0, seed=0)
    snr = 10 * np.log10(np.mean(audio.astype(float) ** 2) / np.mean((noisy - audio).astype(float) ** 2))
    assert snr == pytest.approx(10.0, abs=0.3)
    low = degrade(audio, rate, "lowpass", 1000.0)
    spectrum = np.abs(np.fft.rfft(low, axis=-1))
    freqs = np.fft.rfftfreq(audio.shape[-1], 1 / rate)
    assert spectrum[:, freqs > 1000].max() < 1e-3 * spectrum.max()
    decoded = degrade(audio, rate, "griffin_lim", 16)
    assert decoded.shape == audio.shape and 0 < np.abs(decoded - audio).mean()
    assert strength("white_noise", 0) > strength("white_noise", 30) and strength("lowpass", 500) > strength("lowpass", 4000)
    assert rank_correlation([1, 2, 3, 4], [0.1, 0.5, 0.7, 2.0]) == 1.0
    with pytest.raises(KeyError, match="white_noise"):
        degrade(audio, rate, "reverb", 1.0)
