"""VGGish and CLAP code paths end to end on real music, with RANDOMLY INITIALISED WEIGHTS of the real
architectures (no trained checkpoint can be downloaded here). These tests check what our code and
fadtk's loaders do with audio (framing, chunking, padding, layer choice, loading, lookup), never the
quality of the features.

- VGGish: a stand-in torch-hub folder (``tests/data/random_vggish_hub``: torchvggish 0.2's VGGish with
  random weights and its ``vggish_input`` preprocessing) and a random state dict are imported into a
  temporary ``$MUSICDIFF_WEIGHTS`` (the registry's VGGish entry is replaced by a TEMPORARY ENTRY with
  that file's SHA-256 prefix and size), then ``get_embedding("vggish")`` runs the production path.
- CLAP: ``tests/random_clap_embed.py``, in a fresh process (see its docstring).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from musicdiff.weights import fetch, registry, verify
from musicdiff.data.audio import load_audio
from musicdiff.evaluation.embeddings.registry import get_embedding

ROOT = Path(__file__).resolve().parents[1]


def _vggish_examples(samples: int) -> int:
    """VGGish's example count: 25 ms / 10 ms STFT frames without padding, 96-frame examples, no overlap."""
    return 1 + (1 + (samples - 400) // 160 - 96) // 96


@pytest.fixture()
def random_vggish(weights_env, tmp_path, monkeypatch):
    """``get_embedding("vggish")`` with RANDOM weights installed through ``musicdiff weights import``."""
    from torchvggish import torchvggish as port

    torch.manual_seed(0)
    checkpoint = tmp_path / "random" / "vggish-10086976.pth"
    checkpoint.parent.mkdir()
    torch.save(port.VGG(port.make_layers(), postprocess=False).state_dict(), checkpoint)
    data = checkpoint.read_bytes()
    monkeypatch.setitem(registry.REGISTRY, "vggish", dataclasses.replace(
        registry.REGISTRY["vggish"], sha256_prefix=hashlib.sha256(data).hexdigest()[:8], size=len(data)))
    fetch.import_weights(checkpoint)
    fetch.import_weights(ROOT / "tests" / "data" / "random_vggish_hub")

    def no_network(*args, **kwargs):
        raise AssertionError("VGGish loading must not touch the network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", no_network)
    return get_embedding("vggish"), hashlib.sha256(data).hexdigest()


def test_vggish_with_random_weights_embeds_real_clips_end_to_end(random_vggish, fadtk_clips):
    embedding, weight_sha256 = random_vggish
    assert embedding.weight_sha256 == weight_sha256 and embedding.weights_verified
    assert embedding.config["hub_code_sha256"] == verify.tree_sha256(ROOT / "tests" / "data" / "random_vggish_hub")
    assert isinstance(embedding.loader.model.embeddings[-1], torch.nn.Linear), "final ReLU removed (fadtk default)"
    assert embedding.loader.model.postprocess is False, "no PCA (fadtk default)"

    out = []
    for clip in fadtk_clips[:2]:
        audio = load_audio(clip, 16000)
        x = embedding.embed(audio)
        assert x.dtype == np.float32 and x.shape == (_vggish_examples(len(audio)), 128)
        assert x.shape[0] == int(len(audio) / 16000 / 0.96), "one row per complete 0.96 s example"
        assert np.isfinite(x).all()
        out.append(x)
    assert (out[0] < 0).any(), "pre-ReLU outputs take negative values"
    assert not np.allclose(out[0], out[1]), "different clips give different embeddings"
    assert not np.allclose(out[0][0], out[0][-1]), "different examples of a clip differ"

    half_second = embedding.embed(load_audio(fadtk_clips[0], 16000)[:8000])
    assert half_second.shape == (1, 128), "clips under 1 s are zero-padded to one example"
    with pytest.raises(ValueError):
        embedding.embed(np.zeros((2, 16000), np.float32))


def test_clap_with_random_weights_embeds_a_real_clip_end_to_end(fadtk_clips, tmp_path):
    """laion_clap's HTSAT-tiny (loaded from a random checkpoint through resolve and fadtk's load_model,
    offline, with stand-in Hugging Face repos) on a 10 s clip and a 2.5 s excerpt, and HTSAT-base
    (random, in memory) on the excerpt."""
    out = tmp_path / "clap.json"
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "HF_HUB_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf"), MUSICDIFF_WEIGHTS=str(tmp_path / "weights"),
               TORCH_HOME=str(tmp_path / "torch"), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "random_clap_embed.py"), str(fadtk_clips[0]), str(out)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["seconds"] == pytest.approx(10.0, abs=0.01)
    assert result["audio"]["shape"] == [10, 512], "a 10 s clip gives 10 chunks (10 s windows every 1 s, tails padded)"
    assert result["music"]["shape"] == [3, 512], "a 2.5 s clip gives ceil(2.5) = 3 chunks"
    for r in (result["audio"], result["music"]):
        assert r["dtype"] == "float32" and r["finite"] and r["rows_distinct"]
        assert r["norm_min"] == pytest.approx(1.0, abs=1e-5) and r["norm_max"] == pytest.approx(1.0, abs=1e-5)
    audio = result["audio"]
    assert audio["short_clip_shape"] == [3, 512]
    assert audio["max_abs_diff_loaded_vs_in_memory"] < 1e-5, "the checkpoint file's weights were loaded"
    assert audio["weight_sha256_is_file_sha256"] and audio["weights_verified"] is False
    assert result["music"]["name"] == "clap-laion-music" and result["music"]["config_sample_rate"] == 48000


def test_clap_without_the_hugging_face_repos_raises_missing_weights(weights_env, monkeypatch):
    data = b"stand-in for the CLAP music checkpoint"
    entry = dataclasses.replace(registry.REGISTRY["clap-laion-music"], sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(registry.REGISTRY, "clap-laion-music", entry)  # TEMPORARY ENTRY for this test's file
    target = weights_env["MUSICDIFF_WEIGHTS"] / "clap" / entry.filename
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    with pytest.raises(registry.MissingWeightsError) as exc:
        get_embedding("clap-laion-music")
    msg = str(exc.value)
    assert entry.filename not in msg.split("\n- ", 1)[1], "the checkpoint was found; only the HF repos are missing"
    for repo, folder in (("roberta-base", "models--roberta-base"), ("bert-base-uncased", "models--bert-base-uncased"),
                         ("facebook/bart-base", "models--facebook--bart-base")):
        assert f"- {repo}:" in msg and str(weights_env["HF_HOME"] / "hub" / folder) in msg


def test_hf_offline_is_restored_after_loading():
    import huggingface_hub.constants as hub_constants
    import transformers.utils.hub as tf_hub

    from musicdiff.evaluation.embeddings.clap import hf_offline

    before = (os.environ.get("HF_HUB_OFFLINE"), hub_constants.HF_HUB_OFFLINE, tf_hub.is_offline_mode())
    with hf_offline():
        assert hub_constants.HF_HUB_OFFLINE and tf_hub.is_offline_mode() and os.environ["HF_HUB_OFFLINE"] == "1"
    assert (os.environ.get("HF_HUB_OFFLINE"), hub_constants.HF_HUB_OFFLINE, tf_hub.is_offline_mode()) == before


def test_embedding_names_and_unknown_kind():
    from musicdiff.evaluation.embeddings.clap import ClapEmbedding

    with pytest.raises(KeyError, match="clap-laion-music.*vggish"):
        get_embedding("vggish-typo")
    with pytest.raises(ValueError, match="kind must be one of"):
        ClapEmbedding("speech")


def _pretrained_or_skip(name: str):
    try:
        verify.resolve(name)
    except registry.MissingWeightsError:
        pytest.skip(f"{name} weights are not on this machine (`musicdiff weights`); this check needs the real ones")


@pytest.mark.parametrize("name,column", [("vggish", "FAD_vggish_fma_pop"),
                                         ("clap-laion-audio", "FAD_clap_laion_audio_fma_pop"),
                                         ("clap-laion-music", "FAD_clap_laion_music_fma_pop")])
def test_pretrained_fad_of_fadtks_clips_against_fma_pop_matches_fadtks_published_score(name, column, fadtk_clips):
    """With the REAL weights only (skipped otherwise): FAD of fadtk's 23 shipped clips against the
    FMA-Pop statistics it ships must match the score fadtk publishes for them (samples_FAD_scores.csv,
    row samples/all) within 5%; fadtk resamples with its own filter and stores float16 embeddings."""
    import csv

    import fadtk

    from musicdiff.data.reference_stats import fma_pop_stats
    from musicdiff.evaluation.engine import embed_files
    from musicdiff.evaluation.metrics.fad import fad_score

    _pretrained_or_skip(name)
    with open(Path(fadtk.__file__).parent / "test" / "samples_FAD_scores.csv") as fh:
        published = float(next(r for r in csv.DictReader(fh) if r["song_id"] == "samples/all")[column])
    embedded = embed_files(get_embedding(name), fadtk_clips, None, "fadtk clips", progress=False)  # whole files
    ours = fad_score(fma_pop_stats(name), embedded.clips, n_bootstrap=0).fad
    assert ours == pytest.approx(published, rel=0.05)
