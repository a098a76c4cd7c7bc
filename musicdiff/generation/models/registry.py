"""The families of denoisers and the one place that dispatches to them: build, load, train hooks.

Each family is one module of this package named by its key (``mel``, ``waveform``, ``latent``, ``dit``,
``mel_text``), imported only when a variant of that family is built or loaded, so a stage pays for (and,
in ``dvc.yaml``, depends on) the families it runs and no other. A family module exposes
``denoiser_class()`` and ``build_denoiser(config, shape, num_train_timesteps)``; a family whose training
needs more than the examples (the text-conditioned one) also exposes ``prepare_training``.

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
| mel_text (UNet2DConditionModel, cross-attention at levels 3, 4, mid) | - | 1,945,777 (MiniLM); 2,060,465 (T5) |

The text-conditioned family ``mel_text`` is built by ``build_denoiser`` only: its size depends on the
text encoder's width, ``config["cross_attention_dim"]`` (the CPU size above with MiniLM's 384-d and
T5-small's 512-d token states); the seed study gives no size for it, so it has no paper
configuration here.

Resolutions follow DESIGN.md: spectrograms are ``[frames, mels]`` (the tensor is (batch, 1, mels,
frames)), waveforms are ``[samples]``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import torch

# Pipeline families, each the module ``musicdiff.generation.models.<family>`` (params: ``variants.<v>.family``).
FAMILIES = ("mel", "waveform", "latent", "dit", "mel_text")
# The architectures ``build_model`` builds by name (the VAE and the latent UNet are two parts of ``latent``).
VARIANTS = ("mel", "waveform", "vae", "latent_unet", "dit")
PACKAGE = __name__.rpartition(".")[0]


def family_module(family: str) -> ModuleType:
    """The module of ``family``, imported now. Raises ``KeyError`` naming the known families."""
    if family not in FAMILIES:
        raise KeyError(f"unknown variant family {family!r}; known: {list(FAMILIES)}")
    return importlib.import_module(f"{PACKAGE}.{family}")


def family_file(family: str) -> Path:
    """The source file of ``family``'s module (what its ``train@`` stages depend on), without importing it.
    Raises ``KeyError`` naming the known families."""
    if family not in FAMILIES:
        raise KeyError(f"unknown variant family {family!r}; known: {list(FAMILIES)}")
    return Path(__file__).with_name(f"{family}.py")


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
        return family_module("waveform").build_waveform_unet(config, samples, num_train_timesteps=num_train_timesteps)
    frames, mels = resolution
    if variant == "mel":
        return family_module("mel").build_mel_unet(config, n_mels=mels, frames=frames)
    if variant == "dit":
        return family_module("dit").build_dit(config, height=mels, width=frames)
    latent = family_module("latent")
    if variant == "latent_unet":
        return latent.build_latent_unet(config, height=mels, width=frames)
    factor = latent.vae_downsampling(config)
    if frames % factor or mels % factor:
        raise ValueError(f"resolution [{frames}, {mels}] ([frames, mels]) must be divisible by {factor} for this VAE")
    return latent.build_vae(config)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters of ``model``, trainable or not (shared tensors counted once); works on
    models built on the meta device."""
    return sum(p.numel() for p in model.parameters())


def build_denoiser(family: str, config: dict, shape: tuple[int, ...],
                   num_train_timesteps: int = 1000) -> torch.nn.Module:
    """The denoiser of a pipeline ``family`` (mel | waveform | latent | dit | mel_text) for examples of
    ``shape`` (channels, n_mels, frames), (channels, samples) or (channels, latent height, latent width).

    ``mel_text`` (``UNet2DConditionModel``) also needs ``config["cross_attention_dim"]``, the width of
    the text encoder's token states (set by the train stage from the encoder it loads).

    Raises ``KeyError`` for an unknown family and ``ValueError`` for a shape the model cannot take or a
    ``mel_text`` config without ``cross_attention_dim``.
    """
    return family_module(family).build_denoiser(config, tuple(shape), num_train_timesteps)


def load_denoiser(family: str, path) -> torch.nn.Module:
    """Load trained denoiser weights (a diffusers ``save_pretrained`` folder) of ``family``.

    Raises ``KeyError`` for an unknown family and ``OSError`` (from diffusers) for a missing folder.
    """
    return family_module(family).denoiser_class().from_pretrained(path)


def prepare_training(family: str, variant: dict, data_dir: Path, tensors: dict):
    """What ``family`` adds to training beyond the examples, or ``None`` (every unconditional family): the
    text-conditioned family returns its ``TrainingSetup`` (encoded captions, model config, records).
    ``tensors`` is the feature file's content (``caption_index`` for the text-conditioned family).
    Raises ``KeyError`` for an unknown family and what the family's hook raises."""
    module = family_module(family)
    hook = getattr(module, "prepare_training", None)
    return None if hook is None else hook(variant, data_dir, tensors["caption_index"])
