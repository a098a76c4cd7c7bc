"""The content-addressed embedding cache: reused when nothing changed, never when anything did."""

from __future__ import annotations

import numpy as np
import pytest

from musicdiff.metrics.embeddings import EmbeddedSet, LogMelStats, cache_key, embed_files, get_embedding


def test_cached_embeddings_are_reused_and_saved_sets_round_trip(fadtk_clips, tmp_path, monkeypatch):
    embedding = LogMelStats()
    first = embed_files(embedding, fadtk_clips[:2], cache_dir=tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2

    def must_not_run(audio):
        raise AssertionError("cache miss")

    monkeypatch.setattr(embedding, "embed", must_not_run)
    again = embed_files(embedding, fadtk_clips[:2], cache_dir=tmp_path / "cache", progress=False)
    for a, b in zip(first.clips, again.clips):
        np.testing.assert_array_equal(a, b)
    first.save(tmp_path / "set.npz")
    loaded = EmbeddedSet.load(tmp_path / "set.npz")
    assert loaded.sha256 == first.sha256 and all(np.array_equal(a, b) for a, b in zip(loaded.clips, first.clips))


def test_cache_key_changes_with_audio_config_weights_and_code(monkeypatch):
    base = LogMelStats()
    key = cache_key("a" * 64, base)
    assert cache_key("b" * 64, base) != key
    assert cache_key("a" * 64, LogMelStats(hop_s=0.25)) != key
    monkeypatch.setattr(LogMelStats, "weight_sha256", "other")
    assert cache_key("a" * 64, LogMelStats()) != key
    monkeypatch.undo()
    monkeypatch.setattr("musicdiff.metrics.embeddings.code_sha256", lambda embedding: "edited")
    assert cache_key("a" * 64, base) != key


def test_unknown_embedding_names_the_known_ones():
    with pytest.raises(KeyError, match="musicnn"):
        get_embedding("vggish-typo")
