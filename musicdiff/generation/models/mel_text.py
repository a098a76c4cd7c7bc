"""Builder for the text-conditioned mel variant: a diffusers ``UNet2DConditionModel`` on
``(batch, 1, n_mels, frames)`` that cross-attends to a frozen text encoder's token states.

The layout follows Stable Diffusion's UNet (Rombach et al. 2022): residual blocks at every level and
transformer blocks (self-attention, cross-attention to ``encoder_hidden_states`` of width
``cross_attention_dim``, feed-forward) at the ``CrossAttn*Block2D`` levels and in the middle block.
Every side of the input must be divisible by ``2 ** (levels - 1)``.
"""

from __future__ import annotations

from diffusers import UNet2DConditionModel

from musicdiff.generation.models.mel import unet_kwargs


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
