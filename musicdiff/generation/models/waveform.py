"""Builder for the waveform variant: a diffusers ``UNet1DModel`` in the Dance Diffusion layout.

The denoiser works on raw audio ``(batch, 1, samples)``. The layout is Harmonai's Dance Diffusion
U-Net as ported to diffusers: a first ``DownBlock1DNoSkip`` that concatenates the time features onto
the input (the only block that sees t), ``DownBlock1D`` levels, ``AttnDownBlock1D`` levels at the
bottom, a ``UNetMidBlock1D`` and the mirrored up path. The paper size (block_out_channels
(128, 128, 256, 256) + (256,) * 9, 5 attention levels) has 63.63 M parameters on 65536 samples; the
CPU size (16, 16, 32, 32, 64) with one attention level has 0.75 M on 8192 samples.

Time conditioning. ``time_embedding_type="fourier"`` gives Gaussian Fourier features
``[cos(2 pi W t), sin(2 pi W t)]`` with ``W ~ N(0, 1)`` fixed at initialisation (Tancik et al. 2020;
the v-diffusion / Dance Diffusion recipe), which expect a continuous ``t`` in [0, 1]. diffusers'
``DanceDiffusionPipeline`` passes its IPNDM scheduler's continuous timesteps. Our training loop and
samplers pass the DDPM/DDIM scheduler's integer timesteps ``0 .. T - 1`` instead, and with
``W ~ N(0, 1)`` those alias into near-random features. The builder therefore folds ``1 / T`` into the
fixed frequencies (``W <- W / T``, with ``T = num_train_timesteps``), so
``model(x, t)`` with an integer ``t`` computes exactly the features of ``t / T`` under the original
frequencies. ``W`` is a non-trainable parameter, so the scaling is kept by ``save_pretrained`` /
``from_pretrained`` and by ``EMAModel`` (which copies non-trainable parameters), but NOT by
``UNet1DModel.from_config`` alone (fresh, unscaled ``W``; copy the weights in afterwards).
"""

from __future__ import annotations

import torch
from diffusers import UNet1DModel

# Block types that halve the length of their input (the others keep it).
_DOWNSAMPLING_BLOCKS = {"DownBlock1D", "AttnDownBlock1D"}
_KEEPING_BLOCKS = {"DownBlock1DNoSkip"}
_MIN_BOTTOM_LENGTH = 3


def waveform_downsampling(config: dict) -> int:
    """Total downsampling factor of the Dance Diffusion layout in ``config``: 2 per ``DownBlock1D`` /
    ``AttnDownBlock1D`` and 2 for the ``UNetMidBlock1D`` (it halves, attends and doubles).

    Raises ``ValueError`` for block types outside that layout.
    """
    halvings = 0
    for block in config["down_block_types"]:
        if block in _DOWNSAMPLING_BLOCKS:
            halvings += 1
        elif block not in _KEEPING_BLOCKS:
            raise ValueError(f"down block {block!r} is not part of the Dance Diffusion layout")
    mid = config.get("mid_block_type", "UNetMidBlock1D")
    if mid != "UNetMidBlock1D":
        raise ValueError(f"mid block {mid!r} is not part of the Dance Diffusion layout")
    return 2 ** (halvings + 1)


def build_waveform_unet(config: dict, sample_size: int, num_train_timesteps: int = 1000) -> UNet1DModel:
    """Build the waveform denoiser for clips of ``sample_size`` samples, input (batch, 1, samples).

    ``config`` keys: ``block_out_channels``, ``down_block_types``, ``up_block_types``,
    ``mid_block_type`` (UNetMidBlock1D), ``time_embedding_dim`` (width of the Fourier features; 16 as
    in Harmonai's checkpoints: diffusers >= 0.36 would otherwise default to
    ``2 * block_out_channels[0]``). ``extra_in_channels`` is derived: the first block concatenates
    the time features onto the input, so it must equal ``time_embedding_dim``; a config that states
    a different value is rejected. ``num_train_timesteps`` (T of the noise scheduler) is folded into
    the Fourier frequencies, see the module docstring: call the model with the scheduler's integer t.

    Raises ``ValueError`` when ``sample_size`` is not a multiple of the total downsampling
    (``waveform_downsampling``, 32 for the CPU size, 8192 for the paper size) or leaves fewer than
    3 samples at the bottom, when an attention level or the level above it has fewer than 32 channels (the reflect padding of the resamplers needs them; measured), when
    ``extra_in_channels`` disagrees with ``time_embedding_dim``, or for a block type outside the
    Dance Diffusion layout.
    """
    factor = waveform_downsampling(config)
    if sample_size % factor or sample_size // factor < _MIN_BOTTOM_LENGTH:
        raise ValueError(
            f"sample_size {sample_size} must be a multiple of {factor} (the UNet's total downsampling) "
            f"and at least {_MIN_BOTTOM_LENGTH * factor}"
        )
    time_dim = int(config.get("time_embedding_dim", 16))
    extra = config.get("extra_in_channels", time_dim)
    if extra != time_dim:
        raise ValueError(
            f"extra_in_channels ({extra}) must equal time_embedding_dim ({time_dim}): the first block "
            "concatenates the time features onto the input"
        )
    if num_train_timesteps < 1:
        raise ValueError("num_train_timesteps must be positive")
    channels = list(config["block_out_channels"])
    for i, block in enumerate(config["down_block_types"]):
        # SelfAttention1d has channels // 32 heads: an attention level and the level above it (the
        # output width of the mirrored AttnUpBlock1D) need >= 32 channels, or the heads are 0.
        if block == "AttnDownBlock1D" and min(channels[max(i - 1, 0)], channels[i]) < 32:
            raise ValueError(f"attention level {i} needs >= 32 channels at levels {i - 1} and {i} "
                             f"(block_out_channels {channels}): SelfAttention1d uses channels // 32 heads")
    model = UNet1DModel(
        sample_size=sample_size,
        in_channels=1,
        out_channels=1,
        extra_in_channels=time_dim,
        time_embedding_type="fourier",
        time_embedding_dim=time_dim,
        flip_sin_to_cos=True,
        use_timestep_embedding=False,
        block_out_channels=tuple(config["block_out_channels"]),
        down_block_types=tuple(config["down_block_types"]),
        up_block_types=tuple(config["up_block_types"]),
        mid_block_type=config.get("mid_block_type", "UNetMidBlock1D"),
    )
    with torch.no_grad():
        model.time_proj.weight.div_(num_train_timesteps)
    return model


def denoiser_class() -> type:
    """The class trained ``waveform`` weights load with."""
    return UNet1DModel


def build_denoiser(config: dict, shape: tuple[int, ...], num_train_timesteps: int = 1000) -> UNet1DModel:
    """The waveform UNet for examples of ``shape`` (channels, samples); its Fourier time features are
    scaled to ``t / num_train_timesteps``. Raises ``ValueError`` as ``build_waveform_unet``."""
    return build_waveform_unet(config, shape[-1], num_train_timesteps=num_train_timesteps)
