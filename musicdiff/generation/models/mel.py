"""The mel-spectrogram family (``mel``): a diffusers ``UNet2DModel`` on ``(batch, 1, n_mels, frames)``
(the 2-D UNet of ``musicdiff.generation.models.unet2d``).

Like every family module it exposes ``denoiser_class()`` (the diffusers class its trained weights load
with) and ``build_denoiser(config, shape, num_train_timesteps)``; ``musicdiff.generation.models.registry``
imports it only when a variant of this family is built or loaded.
"""

from __future__ import annotations

from diffusers import UNet2DModel

from musicdiff.generation.models.unet2d import build_unet2d


def build_mel_unet(config: dict, n_mels: int, frames: int) -> UNet2DModel:
    """Build the denoiser for spectrograms of resolution ``[frames, n_mels]``.

    ``config`` holds the ``UNet2DModel`` architecture keys (``block_out_channels``,
    ``down_block_types``, ``up_block_types``, ``layers_per_block``, ``norm_num_groups``,
    ``attention_head_dim``). Raises ``ValueError`` when ``frames`` or ``n_mels`` is not divisible by
    the UNet's total downsampling factor.
    """
    return build_unet2d(config, n_mels, frames)


def denoiser_class() -> type:
    """The class trained ``mel`` weights load with."""
    return UNet2DModel


def build_denoiser(config: dict, shape: tuple[int, ...], num_train_timesteps: int = 1000) -> UNet2DModel:
    """The denoiser for examples of ``shape`` (channels, n_mels, frames); ``num_train_timesteps`` is
    unused (the UNet embeds the timestep itself). Raises ``ValueError`` as ``build_mel_unet``."""
    return build_mel_unet(config, n_mels=shape[-2], frames=shape[-1])
