"""The 2-D UNet shared by three families: the mel UNet (``UNet2DModel`` on ``(batch, 1, n_mels,
frames)``), the latent UNet (the same on a VAE's latent grid) and the text-conditioned mel UNet
(``UNet2DConditionModel``). Only the keyword arguments live here; each family builds its own class.

The paper size is teticio/audio-diffusion's UNet (block_out_channels (128, 128, 256, 256, 512, 512),
attention at level 5), 113.67 M parameters at every resolution; the CPU size keeps the layout with
three narrow levels. Every side of the input must be divisible by ``2 ** (levels - 1)``.
"""

from __future__ import annotations


def unet_kwargs(config: dict, n_mels: int, frames: int) -> dict:
    """The keyword arguments shared by the 2-D UNets (``UNet2DModel`` and ``UNet2DConditionModel``):
    one input and output channel at ``sample_size`` (n_mels, frames) and the architecture keys of
    ``config`` (``block_out_channels``, ``down_block_types``, ``up_block_types``, ``layers_per_block``,
    ``norm_num_groups``, ``attention_head_dim``). Raises ``ValueError`` when ``frames`` or ``n_mels``
    is not divisible by the UNet's total downsampling factor."""
    levels = len(config["block_out_channels"])
    factor = 2 ** (levels - 1)
    if n_mels % factor or frames % factor:
        raise ValueError(
            f"resolution [{frames}, {n_mels}] ([frames, mels]) must be divisible by {factor} "
            f"for a UNet with {levels} levels"
        )
    return dict(
        sample_size=(n_mels, frames),
        in_channels=1,
        out_channels=1,
        layers_per_block=config["layers_per_block"],
        block_out_channels=tuple(config["block_out_channels"]),
        down_block_types=tuple(config["down_block_types"]),
        up_block_types=tuple(config["up_block_types"]),
        norm_num_groups=config["norm_num_groups"],
        attention_head_dim=config["attention_head_dim"],
    )


def build_unet2d(config: dict, n_mels: int, frames: int):
    """A diffusers ``UNet2DModel`` of ``config`` on ``(batch, 1, n_mels, frames)`` (see ``unet_kwargs``
    for the keys and the ``ValueError`` it raises)."""
    from diffusers import UNet2DModel

    return UNet2DModel(**unet_kwargs(config, n_mels, frames))
