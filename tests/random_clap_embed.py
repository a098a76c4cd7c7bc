"""CLAP code paths end to end with RANDOMLY INITIALISED weights, run by tests/test_vggish_clap.py in a
fresh process: huggingface_hub and transformers read the cache location once, at import, so
``HF_HOME`` must be set before anything imports them.

Usage: ``python tests/random_clap_embed.py CLIP OUT_JSON`` with ``HF_HOME`` and ``MUSICDIFF_WEIGHTS``
pointing at empty temporary folders. Nothing here is a trained model:

- The Hugging Face repositories laion_clap loads are STAND-INS written into ``$HF_HOME``: tokenizer
  vocabularies of a few tokens, and a one-layer ``roberta-base`` with random weights (the CLAP text
  branch; the audio embedding never uses it).
- clap-laion-audio: laion_clap's real ``CLAP_Module`` (HTSAT-tiny) with random weights, saved as
  ``$MUSICDIFF_WEIGHTS/clap/630k-audioset-best.pt`` (no SHA-256 is published for that file, so the
  registry accepts any copy, unverified), then loaded by ``ClapEmbedding("audio")`` through
  ``resolve`` and fadtk's ``load_model``, offline.
- clap-laion-music: laion_clap's real HTSAT-base model with random weights built with
  ``create_model(..., tmodel="transformer")`` (no roberta), used through ``ClapEmbedding.from_module``
  on the 2.5 s excerpt only (the chunking is fadtk's, the same for both models; HTSAT-base is the
  slower network on 2 CPU cores).

Writes shapes, finiteness, row norms and the difference between the checkpoint-loaded and the
in-memory HTSAT-tiny embeddings of a 2.5 s excerpt to OUT_JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from musicdiff.weights.verify import hf_hub_cache, hf_snapshot, weights_dir

_BPE_VOCAB = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4, "a": 5, "b": 6}


def write_hf_stand_ins() -> None:
    """Stand-in tokenizers and a tiny random roberta-base in the HF cache (refs/main -> a fake revision)."""
    from transformers import RobertaConfig, RobertaModel

    revision = "0" * 40
    repos = {
        "bert-base-uncased": {"vocab.txt": "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\n"},
        "facebook/bart-base": {"vocab.json": json.dumps(_BPE_VOCAB), "merges.txt": "#version: 0.2\n"},
        "roberta-base": {"vocab.json": json.dumps(_BPE_VOCAB), "merges.txt": "#version: 0.2\n"},
    }
    for repo_id, files in repos.items():
        root = hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(revision)
        snapshot = hf_snapshot(repo_id)
        snapshot.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (snapshot / name).write_text(text)
    config = RobertaConfig(vocab_size=len(_BPE_VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=80)
    RobertaModel(config).save_pretrained(hf_snapshot("roberta-base"))


def save_as_clap_checkpoint(module, path: Path) -> None:
    """A CLAP_Module's weights in the layout of LAION's checkpoints ("module." prefix, position_ids kept)."""
    state = {"module." + k: v for k, v in module.model.state_dict().items()}
    n_pos = module.model.text_branch.embeddings.position_ids.shape[1]
    state["module.text_branch.embeddings.position_ids"] = torch.arange(n_pos)[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state}, path)


def random_htsat(amodel: str):
    """laion_clap's CLAP_Module with a random HTSAT ``amodel`` and a random CLIP-style text transformer."""
    from laion_clap.hook import CLAP_Module, create_model

    module = CLAP_Module.__new__(CLAP_Module)
    torch.nn.Module.__init__(module)
    module.model, module.model_cfg = create_model(amodel, "transformer", precision="fp32",
                                                  device=torch.device("cpu"), enable_fusion=False)
    module.enable_fusion = False
    return module


def summary(x: np.ndarray) -> dict:
    return {"shape": list(x.shape), "dtype": str(x.dtype), "finite": bool(np.isfinite(x).all()),
            "norm_min": float(np.linalg.norm(x, axis=1).min()), "norm_max": float(np.linalg.norm(x, axis=1).max()),
            "rows_distinct": bool(np.abs(x[0] - x[-1]).max() > 1e-6)}


def main(clip: str, out: str) -> None:
    from musicdiff.data.audio import load_audio
    from musicdiff.data.hashing import sha256_file
    from musicdiff.evaluation.embeddings.clap import ClapEmbedding, hf_offline

    write_hf_stand_ins()
    audio = load_audio(clip, 48000)
    result = {"seconds": len(audio) / 48000}

    torch.manual_seed(0)
    with hf_offline():
        import laion_clap

        tiny = laion_clap.CLAP_Module(enable_fusion=False, amodel="HTSAT-tiny")
    checkpoint = weights_dir() / "clap" / "630k-audioset-best.pt"
    save_as_clap_checkpoint(tiny, checkpoint)
    loaded = ClapEmbedding("audio")  # resolve -> offline fadtk load_model -> load_ckpt of the random weights
    direct = ClapEmbedding.from_module("audio", tiny, "random-init")
    excerpt = audio[: int(2.5 * 48000)]  # 2.5 s: 3 chunks, each zero-padded to 10 s
    short_loaded, short_direct = loaded.embed(excerpt), direct.embed(excerpt)
    result["audio"] = summary(loaded.embed(audio)) | {
        "short_clip_shape": list(short_loaded.shape),
        "max_abs_diff_loaded_vs_in_memory": float(np.abs(short_loaded - short_direct).max()),
        "weight_sha256_is_file_sha256": loaded.weight_sha256 == sha256_file(checkpoint),
        "weights_verified": loaded.weights_verified,
    }

    torch.manual_seed(1)
    base = ClapEmbedding.from_module("music", random_htsat("HTSAT-base"), "random-init")
    result["music"] = summary(base.embed(excerpt)) | {"name": base.name, "config_sample_rate": base.config["sample_rate"]}
    Path(out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
