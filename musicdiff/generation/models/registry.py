"""One dispatching builder per variant and the diffusers classes trained weights load with.

The architecture configurations are plain data (lists, ints, strings) that live in ``params.yaml`` and
the profiles (``pipelines/profiles/paper.yaml``, ``cpu-study.yaml``), never here; ``build_model`` hands a
section to the builder of its variant. Parameter counts measured with diffusers 0.39
(``count_parameters``, models built on the meta device; the tests build them from the profiles):

| variant | paper size | CPU size |
|---|---|---|
| mel (teticio UNet2DModel) | 113,668,609 | 1,085,937 |
| waveform (Dance Diffusion UNet1DModel) | 63,627,017 (65536 samples) | 1,161,209 (16384 samples) |
| vae (AutoencoderKL, 1 latent channel) | 83,607,691 (256 -> 32) | 239,067 (64 -> 16) |
| latent_unet (UNet2DModel on latents) | 113,668,609 (32 x 32) | 701,345 (16 x 16) |
| dit (UnconditionalDiT2DModel) | 5,402,384 | 1,974,648 |
| mel-text (UNet2DConditionModel, cross-attention at levels 3, 4, mid) | - | 1,945,777 (MiniLM); 2,060,465 (T5) |

The text-conditioned family ``mel-text`` is built by ``build_denoiser`` only: its size depends on the
text encoder's width, ``config["cross_attention_dim"]`` (the CPU size above with MiniLM's 384-d and
T5-small's 512-d token states); the seed study gives no size for it, so it has no paper
configuration here.

Resolutions follow DESIGN.md: spectrograms are ``[frames, mels]`` (the tensor is (batch, 1, mels,
frames)), waveforms are ``[samples]``.
"""

from __future__ import annotations

import torch

from musicdiff.generation.models.mel_text import build_text_unet
from musicdiff.generation.models.dit import build_dit
from musicdiff.generation.models.latent import build_latent_unet, build_vae, vae_downsampling
from musicdiff.generation.models.mel import build_mel_unet
from musicdiff.generation.models.waveform import build_waveform_unet

VARIANTS = ("mel", "waveform", "vae", "latent_unet", "dit")


def build_model(variant: str, config: dict, resolution: tuple[int, ...],
                num_train_timesteps: int = 1000) -> torch.nn.Module:
    """Build ``variant`` from its config section at ``resolution``.

    ``resolution`` is ``(frames, mels)`` for mel, vae and dit, ``(frames, mels)`` of the latent grid
    for latent_unet (the spectrogram's divided by ``vae_downsampling``), and ``(samples,)`` for
    waveform. ``num_train_timesteps`` is used by the waveform UNet only (its Fourier time features
    are scaled to ``t / T``). The vae's resolution is only checked: the autoencoder is fully
    convolutional.

    Raises ``KeyError`` naming the known variants for an unknown one, and ``ValueError`` for a
    resolution the variant cannot take.
    """
    if variant not in VARIANTS:
        raise KeyError(f"unknown variant {variant!r}; known: {list(VARIANTS)}")
    if variant == "waveform":
        (samples,) = resolution
        return build_waveform_unet(config, samples, num_train_timesteps=num_train_timesteps)
    frames, mels = resolution
    if variant == "mel":
        return build_mel_unet(config, n_mels=mels, frames=frames)
    if variant == "latent_unet":
        return build_latent_unet(config, height=mels, width=frames)
    if variant == "dit":
        return build_dit(config, height=mels, width=frames)
    factor = vae_downsampling(config)
    if frames % factor or mels % factor:
        raise ValueError(f"resolution [{frames}, {mels}] ([frames, mels]) must be divisible by {factor} for this VAE")
    return build_vae(config)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters of ``model``, trainable or not (shared tensors counted once); works on
    models built on the meta device."""
    return sum(p.numel() for p in model.parameters())


# Pipeline families: the denoiser of each variant and the diffusers class its weights load with.
FAMILIES = ("mel", "waveform", "latent", "dit", "mel-text")


def _denoiser_classes() -> dict:
    from diffusers import UNet1DModel, UNet2DConditionModel, UNet2DModel

    from musicdiff.generation.models.dit import UnconditionalDiT2DModel

    return {"mel": UNet2DModel, "latent": UNet2DModel, "waveform": UNet1DModel, "dit": UnconditionalDiT2DModel,
            "mel-text": UNet2DConditionModel}


def build_denoiser(family: str, config: dict, shape: tuple[int, ...],
                   num_train_timesteps: int = 1000) -> torch.nn.Module:
    """The denoiser of a pipeline ``family`` (mel | waveform | latent | dit | mel-text) for examples of
    ``shape`` (channels, n_mels, frames), (channels, samples) or (channels, latent height, latent width).

    ``mel-text`` (``UNet2DConditionModel``) also needs ``config["cross_attention_dim"]``, the width of
    the text encoder's token states (set by the train stage from the encoder it loads).

    Raises ``KeyError`` for an unknown family and ``ValueError`` for a shape the model cannot take or a
    ``mel-text`` config without ``cross_attention_dim``.
    """
    if family not in FAMILIES:
        raise KeyError(f"unknown variant family {family!r}; known: {list(FAMILIES)}")
    if family == "mel-text":
        if "cross_attention_dim" not in config:
            raise ValueError("a mel-text denoiser needs config['cross_attention_dim'], the width of the text "
                             "encoder's token states (384 for minilm, 512 for t5-small)")
        architecture = {k: v for k, v in config.items() if k != "cross_attention_dim"}
        return build_text_unet(architecture, n_mels=shape[-2], frames=shape[-1],
                               cross_attention_dim=config["cross_attention_dim"])
    if family == "waveform":
        return build_model("waveform", config, (shape[-1],), num_train_timesteps)
    height, width = shape[-2:]
    return build_model("latent_unet" if family == "latent" else family, config, (width, height), num_train_timesteps)


def load_denoiser(family: str, path) -> torch.nn.Module:
    """Load trained denoiser weights (a diffusers ``save_pretrained`` folder) of ``family``.

    Raises ``KeyError`` for an unknown family and ``OSError`` (from diffusers) for a missing folder.
    """
    if family not in FAMILIES:
        raise KeyError(f"unknown variant family {family!r}; known: {list(FAMILIES)}")
    return _denoiser_classes()[family].from_pretrained(path)
