"""Replication of the training set (``musicdiff.evaluation.replication`` and its spaces and planted-copy
calibration) on real music: the 23 ten-second clips fadtk ships, cut into 2.5 s clips at 16 kHz.

The files are dealt out, seeded, to a training set (8 files), held-out real clips (9 files: half of
them calibrate the threshold, the other half are the floor) and a stand-in "generated" set (6 files)
that holds no copy until copies are planted into it.
"""

from __future__ import annotations

import numpy as np
import pytest

from musicdiff.evaluation.replication import (ClipSet, ReplicationAudit, TooFewClipsForReplicationError, calibrate,
                                              source_of, split_by_source)
from musicdiff.evaluation.replication_calibration import (TRANSFORMS, gain, pitch_shift, planted_copy_calibration,
                                                          planted_count, time_offset, white_noise)
from musicdiff.evaluation.replication_spaces import EmbeddingSpace, MelSpace

SR, CLIP = 16000, 40000  # 2.5 s


@pytest.fixture(scope="module")
def sets(fadtk_clips):
    from musicdiff.data.audio import load_audio

    waves = {p.stem: load_audio(p, SR) for p in fadtk_clips}
    stems = sorted(waves)
    stems = [stems[i] for i in np.random.default_rng(0).permutation(len(stems))]

    def clip_set(name, chosen):
        names = [f"{s}#{i}" for s in chosen for i in range(4)]
        return ClipSet(name, names, [waves[s][i * CLIP:(i + 1) * CLIP] for s in chosen for i in range(4)])

    noise = ClipSet("white noise", [f"noise{i}#0" for i in range(12)],
                    [np.random.default_rng(i).normal(scale=0.1, size=CLIP).astype(np.float32) for i in range(12)])
    return {"training": clip_set("training", stems[:8]), "heldout": clip_set("held-out", stems[8:17]),
            "generated": clip_set("generated", stems[17:]), "noise": noise}


def spaces():
    from musicdiff.evaluation.embeddings.registry import LogMelStats

    return {"mel": MelSpace(sample_rate=SR), "embedding": EmbeddingSpace(LogMelStats().embed, SR)}


@pytest.fixture(scope="module")
def audits(sets):
    return {name: ReplicationAudit(space, sets["training"], sets["heldout"]) for name, space in spaces().items()}


def test_threshold_flags_calibration_clips_at_most_at_the_rate_and_the_floor_is_consistent(audits):
    for audit in audits.values():
        t = audit.threshold
        n_cal = len(audit.calibration.names)
        assert t.n == n_cal and t.rank == n_cal  # 18-20 clips < 1/rate: the threshold is their maximum
        assert np.count_nonzero(t.flags(audit.calibration_similarity)) <= 0.01 * n_cal
        assert abs(t.fresh_rate - 1 / (n_cal + 1)) < 1e-12
        # the floor clips are other files; they are flagged at a rate compatible with fresh_rate
        assert audit.floor.n == len(audit.heldout.names) - n_cal
        assert audit.floor.low <= t.fresh_rate, (audit.floor.n_flagged, audit.floor.n, t.fresh_rate)
        calibration_sources = {source_of(n) for n in audit.calibration.names}
        assert not calibration_sources & {source_of(n) for n in audit.floor_set.names}


def test_an_unrelated_set_is_not_flagged(audits, sets):
    for audit in audits.values():
        result = audit.evaluate(sets["noise"])
        assert result.n_flagged == 0 and result.fraction == 0.0 and result.high < 0.3
        assert len(result.closest) == 3 and result.closest[0][2] == result.training_similarity.max()


def test_planted_copies_are_detected(audits, sets):
    # Found here (6 clips planted = 25% of 24): the mel space flagged every planted clip under every
    # transform, including 20 dB SNR noise and the one-semitone shift; the log-mel-stats embedding space
    # flagged all exact, gain-shifted and offset copies but only half of the noisy and pitch-shifted ones.
    rows = planted_copy_calibration(list(audits.values()), sets["generated"], fractions=(0.0, 0.01, 0.25))
    by = {(r.space, r.transform, r.fraction): r for r in rows}
    for space in audits:
        none = by[space, "none", 0.0]
        assert none.n_planted == 0 and np.isnan(none.detection_rate)
        for transform in TRANSFORMS:
            assert by[space, transform, 0.01].n_planted == 1  # 1% of 24 clips rounds to 0: at least 1
            assert by[space, transform, 0.25].n_planted == 6
            assert by[space, transform, 0.25].n_other_flagged <= none.n_other_flagged  # a subset of the clips
    for transform in ("exact", "gain +6 dB", "gain -6 dB", "offset 0.25 s"):
        row = by["mel", transform, 0.25]
        assert row.detection_rate == 1.0 and row.n_source_found == 6, row
    assert by["embedding", "exact", 0.25].detection_rate == 1.0
    assert by["embedding", "exact", 0.25].n_source_found == 6
    exact = by["mel", "exact", 0.25]
    assert exact.fraction_flagged == (6 + exact.n_other_flagged) / 24 and exact.n_other == 18


def test_the_generated_set_and_its_report(audits, sets):
    result = audits["mel"].evaluate(sets["generated"])
    assert result.n == 24 and len(result.nearest_training) == 24 and result.heldout_similarity.shape == (24,)
    assert result.closest == sorted(result.closest, key=lambda c: -c[2])
    assert result.to_dict()["closest"][0][0] in sets["generated"].names
    assert 0.0 <= result.low <= result.fraction <= result.high <= 1.0


def test_mel_similarity_is_gain_invariant_and_offset_robust(sets):
    space = MelSpace(sample_rate=SR)
    x = sets["training"].clips[0]
    clips = [x, gain(x, -6.0), time_offset(x, SR, 0.25), time_offset(x, SR, -0.25), np.zeros(CLIP, np.float32),
             x[: CLIP // 2 + 4000]]
    sim, lag = space.similarity_and_lag(space.features(clips), space.features([x]))
    assert sim[0, 0] == pytest.approx(1.0, abs=1e-9) and lag[0, 0] == 0
    assert sim[1, 0] == pytest.approx(1.0, abs=1e-6)
    assert sim[2, 0] > 0.9 and lag[2, 0] == 16  # 0.25 s = 15.6 frames of 16 ms: query t ~ reference t + 16
    assert sim[3, 0] > 0.9 and lag[3, 0] == -16
    assert sim[4, 0] == 0.0  # silence has no pattern
    assert sim[5, 0] > 0.95  # its first 1.5 s, over the common frames (0.985: standardised on its own frames)


def test_transforms():
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    assert np.allclose(gain(tone, 6.0), tone * 10 ** 0.3, rtol=1e-6)
    noisy = white_noise(tone, 20.0, rng)
    snr = 10 * np.log10(np.mean(tone.astype(float) ** 2) / np.mean((noisy - tone).astype(float) ** 2))
    assert abs(snr - 20.0) < 0.2
    shifted = time_offset(tone, SR, 0.25)
    assert len(shifted) == SR and np.array_equal(shifted[: SR - 4000], tone[4000:]) and not shifted[-4000:].any()
    up = pitch_shift(tone, SR, 1.0)
    peak = np.fft.rfftfreq(SR, 1 / SR)[np.abs(np.fft.rfft(up)).argmax()]
    assert len(up) == SR and abs(peak - 440.0 * 2 ** (1 / 12)) < 3.0  # 466.2 Hz
    assert planted_count(0.0, 24) == 0 and planted_count(0.01, 24) == 1 and planted_count(0.25, 24) == 6


def test_calibrate_takes_the_rank_that_bounds_the_rate():
    s = np.arange(1, 201, dtype=float)  # 200 clips at 1% -> rank 198, 2 clips above
    t = calibrate(s, 0.01)
    assert t.rank == 198 and t.value == 198.0 and np.count_nonzero(t.flags(s)) == 2
    assert t.fresh_rate == pytest.approx(3 / 201)
    assert calibrate(s[:10], 0.01).value == 10.0  # too few for 1%: the maximum
    with pytest.raises(ValueError, match="no calibration"):
        calibrate([], 0.01)
    with pytest.raises(ValueError, match=r"rate must lie in \(0, 1\)"):
        calibrate(s, 0.0)


def test_split_keeps_a_files_clips_together():
    names = [f"f{i}#{k}" for i in range(5) for k in range(3)]
    a, b = split_by_source(names, seed=1)
    assert len(a) == 9 and len(b) == 6  # 3 of 5 files, 2 of 5
    assert not {source_of(names[i]) for i in a} & {source_of(names[i]) for i in b}


def test_bad_input(sets):
    space = MelSpace(sample_rate=SR)
    empty = ClipSet("my training set", [], [])
    with pytest.raises(ValueError, match="training set 'my training set' is empty"):
        ReplicationAudit(space, empty, sets["heldout"])
    one_file = sets["heldout"].take(range(4))
    with pytest.raises(TooFewClipsForReplicationError, match="from 1 source.*at least 2 sources"):
        ReplicationAudit(space, sets["training"], one_file)
    with pytest.raises(TooFewClipsForReplicationError, match="held-out set 'x' is empty"):
        ReplicationAudit(space, sets["training"], ClipSet("x", [], []))
    audit = ReplicationAudit(space, sets["training"].take(range(4)), sets["heldout"])
    with pytest.raises(TooFewClipsForReplicationError, match="set 'nothing' is empty"):
        audit.evaluate(ClipSet("nothing", [], []))
    with pytest.raises(TooFewClipsForReplicationError, match="planting 6 clips needs as many training clips"):
        planted_copy_calibration([audit], sets["generated"], fractions=(0.25,))
    with pytest.raises(KeyError, match="unknown transforms"):
        planted_copy_calibration([audit], sets["generated"], transforms=("reverb",))
    with pytest.raises(ValueError, match="2 names for 1 clips"):
        ClipSet("bad", ["a", "b"], [np.zeros(10)])
