"""Embedding sets under the evaluation protocol, and the content-addressed embedding cache: reused when
nothing changed, never when anything did; two sets made differently are refused with both named."""

from __future__ import annotations

import numpy as np
import pytest

from musicdiff.data.screening import TooManySkippedError
import soundfile as sf

from musicdiff.evaluation.protocol import EvaluationProtocol, ProtocolMismatchError, independent_frames
from musicdiff.evaluation.sets import EmbeddedSet
from musicdiff.evaluation.engine import embed_files
from musicdiff.evaluation.embeddings.registry import LogMelStats, cache_key, get_embedding

PROTOCOL = EvaluationProtocol(0.73, 22050)


def test_files_are_cut_into_protocol_clips_and_cached_embeddings_are_reused(fadtk_clips, tmp_path, monkeypatch):
    embedding = LogMelStats()
    first = embed_files(embedding, fadtk_clips[:2], PROTOCOL, "two clips", cache_dir=tmp_path / "cache",
                        progress=False)
    seconds = [sf.info(str(c)).duration for c in fadtk_clips[:2]]
    assert len(first.clips) == sum(int(s // 0.73) for s in seconds) == first.clips_available
    assert len(list((tmp_path / "cache").glob("*.npy"))) == len(first.clips)
    assert first.names[0].endswith("#0") and first.names[1].endswith("#1")
    # a 0.73 s clip is shorter than the 1 s window: one padded window, one independent frame
    assert all(len(c) == 1 for c in first.clips) and first.n_independent == len(first.clips)

    def must_not_run(audio):
        raise AssertionError("cache miss")

    monkeypatch.setattr(embedding, "embed", must_not_run)
    again = embed_files(embedding, fadtk_clips[:2], PROTOCOL, "two clips", cache_dir=tmp_path / "cache",
                        progress=False)
    for a, b in zip(first.clips, again.clips):
        np.testing.assert_array_equal(a, b)
    first.save(tmp_path / "set.npz")
    loaded = EmbeddedSet.load(tmp_path / "set.npz")
    assert loaded.names == first.names and loaded.protocol == first.protocol == PROTOCOL.to_dict()
    assert all(np.array_equal(a, b) for a, b in zip(loaded.clips, first.clips))


def test_a_seeded_subset_of_clips_is_kept(fadtk_clips, tmp_path):
    embedding = LogMelStats()
    full = embed_files(embedding, fadtk_clips[:3], PROTOCOL, "full", cache_dir=tmp_path, progress=False)
    part = embed_files(embedding, fadtk_clips[:3], PROTOCOL, "part", cache_dir=tmp_path, max_clips=10, seed=1,
                       progress=False)
    assert len(part.clips) == 10 and part.clips_available == len(full.clips)
    assert set(part.names) <= set(full.names)
    assert part.names == embed_files(embedding, fadtk_clips[:3], PROTOCOL, "again", cache_dir=tmp_path,
                                     max_clips=10, seed=1, progress=False).names


def test_sets_made_differently_are_refused_naming_both(fadtk_clips, tmp_path):
    a = embed_files(LogMelStats(), fadtk_clips[:1], PROTOCOL, "generated", progress=False)
    longer = embed_files(LogMelStats(), fadtk_clips[1:2], EvaluationProtocol(3.0, 22050), "reference",
                         progress=False)
    with pytest.raises(ProtocolMismatchError, match=r"'generated' and 'reference'.*clip_s: 0.73 \(generated\) vs "
                                                    r"3.0 \(reference\)"):
        a.check_comparable(longer)
    other_hop = embed_files(LogMelStats(hop_s=0.25), fadtk_clips[1:2], PROTOCOL, "hop", progress=False)
    with pytest.raises(ProtocolMismatchError, match="embedding config"):
        a.check_comparable(other_hop)
    rate = embed_files(LogMelStats(), fadtk_clips[1:2], EvaluationProtocol(0.73, 16000), "rate", progress=False)
    with pytest.raises(ProtocolMismatchError, match="sample_rate: 22050"):
        a.check_comparable(rate)


def test_a_file_shorter_than_one_clip_is_an_error_naming_it(tmp_path):
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(2000, dtype=np.float32) + 0.1, 22050)
    with pytest.raises(TooManySkippedError, match="short.wav: too_short"):  # its only file: nothing left
        embed_files(LogMelStats(), [short], PROTOCOL, "short", progress=False)


def test_independent_frames_count_non_overlapping_windows():
    assert independent_frames(0.73, 3.0) == 1  # one padded MusiCNN patch
    assert independent_frames(10.0, 3.0) == 3
    assert independent_frames(10.0, 0.96) == 10
    assert independent_frames(0.96, 0.96) == 1
    with pytest.raises(ValueError):
        EvaluationProtocol(0.0, 22050)
    with pytest.raises(ValueError):
        EvaluationProtocol(float("nan"), 22050)


def test_cache_key_changes_with_audio_clip_protocol_config_weights_and_code(monkeypatch):
    base = LogMelStats()
    spec = PROTOCOL.to_dict()
    key = cache_key("a" * 64, base, spec, 0)
    assert cache_key("b" * 64, base, spec, 0) != key
    assert cache_key("a" * 64, base, spec, 1) != key
    assert cache_key("a" * 64, base, EvaluationProtocol(1.0, 22050).to_dict(), 0) != key
    assert cache_key("a" * 64, LogMelStats(hop_s=0.25), spec, 0) != key
    monkeypatch.setattr(LogMelStats, "weight_sha256", "other")
    assert cache_key("a" * 64, LogMelStats(), spec, 0) != key
    monkeypatch.undo()
    monkeypatch.setattr("musicdiff.evaluation.embeddings.registry.code_sha256", lambda embedding: "edited")
    assert cache_key("a" * 64, base, spec, 0) != key


def test_unknown_embedding_names_the_known_ones():
    with pytest.raises(KeyError, match="musicnn"):
        get_embedding("vggish-typo")
