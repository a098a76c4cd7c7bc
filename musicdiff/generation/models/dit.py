"""The DiT variant (seed 003): a diffusion transformer on square mel spectrograms, x0-prediction.

Seed 003 (Bojescu's dissertation) used a custom DiT: 4x4 convolutional patch embedding, 4 pre-LN
blocks of 4-head attention, width 256, trained to predict the clean spectrogram (5,388,802
parameters). We use diffusers' ``DiTTransformer2DModel`` (Peebles & Xie 2023, "Scalable Diffusion
Models with Transformers": adaLN-Zero blocks, fixed 2-D sin-cos positional embedding) with the
same depth, heads, width (4 heads x head dim 64 = 256) and patch size 4. Its adaLN-Zero
conditioning embeds a class label next to the timestep; this benchmark is unconditional, so we
build it with ONE class (``num_embeds_ada_norm=1``) and always pass label 0. That gives
5,402,384 parameters (+0.25 % of the seed's count); with diffusers' default 1000 classes the label
tables alone would add about 1 M. Note that diffusers hard-codes a 10 % label dropout during
training, which here only swaps the single learned label vector for the "null" one. Train with
the noise scheduler's ``prediction_type="sample"`` (x0-prediction, as in seed 003).

Square-only. ``DiTTransformer2DModel.forward`` un-patchifies with ``side = sqrt(tokens)``, so a
non-square input silently comes back with a different shape (a 32 x 128 input returns 64 x 64), and
it fails without class labels. ``UnconditionalDiT2DModel`` therefore rejects inputs that are not
square or whose side is not a multiple of the patch size with ``ValueError`` instead of reshaping:
tiling a [frames, mels] spectrogram into a square only works when frames / mels is a power of 4,
and rewriting the un-patchify step would mean maintaining a copy of diffusers' forward. Use the DiT
at square resolutions ([64, 64] on CPU, [128, 128] at paper size).
"""

from __future__ import annotations

import torch
from diffusers import DiTTransformer2DModel


class UnconditionalDiT2DModel(DiTTransformer2DModel):
    """``DiTTransformer2DModel`` called as ``model(sample, timestep).sample`` like the UNets.

    Same constructor and config as the parent (so ``from_config``, ``save_pretrained`` and
    ``from_pretrained`` work on this class); only ``forward`` differs: it checks the input shape,
    broadcasts a scalar timestep to the batch and supplies the single class label.
    """

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor | int, class_labels=None,
                cross_attention_kwargs=None, return_dict: bool = True):
        """Predict from ``hidden_states`` (batch, channels, side, side) at integer ``timestep``
        (scalar or (batch,)) of the noise scheduler; returns ``Transformer2DModelOutput`` with
        ``.sample`` of the same shape (or a 1-tuple if ``return_dict`` is False).

        Raises ``ValueError`` for a non-square input or a side that is not a multiple of the patch
        size.
        """
        batch, _, height, width = hidden_states.shape
        patch = self.config.patch_size
        if height != width or height % patch:
            raise ValueError(
                f"the DiT takes square inputs with sides divisible by the patch size {patch}; got "
                f"{height} x {width} (diffusers would silently return a different shape)"
            )
        timestep = torch.as_tensor(timestep, device=hidden_states.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch)
        if class_labels is None:
            class_labels = torch.zeros(batch, dtype=torch.long, device=hidden_states.device)
        return super().forward(hidden_states, timestep=timestep, class_labels=class_labels,
                               cross_attention_kwargs=cross_attention_kwargs, return_dict=return_dict)


def build_dit(config: dict, height: int, width: int) -> UnconditionalDiT2DModel:
    """Build the DiT denoiser for spectrograms (batch, 1, height=n_mels, width=frames).

    ``config`` keys: ``num_layers``, ``num_attention_heads``, ``attention_head_dim``,
    ``patch_size``. Raises ``ValueError`` when ``height != width`` (see the module docstring) or
    the side is not divisible by ``patch_size``.
    """
    patch = config["patch_size"]
    if height != width or height % patch:
        raise ValueError(
            f"the DiT needs a square resolution with sides divisible by patch_size {patch}; "
            f"got n_mels={height}, frames={width}"
        )
    return UnconditionalDiT2DModel(
        num_attention_heads=config["num_attention_heads"],
        attention_head_dim=config["attention_head_dim"],
        num_layers=config["num_layers"],
        in_channels=1,
        out_channels=1,
        sample_size=height,
        patch_size=patch,
        num_embeds_ada_norm=1,
    )



def denoiser_class() -> type:
    """The class trained ``dit`` weights load with."""
    return UnconditionalDiT2DModel


def build_denoiser(config: dict, shape: tuple[int, ...], num_train_timesteps: int = 1000) -> UnconditionalDiT2DModel:
    """The DiT for examples of ``shape`` (channels, n_mels, frames); ``num_train_timesteps`` is unused.
    Raises ``ValueError`` as ``build_dit``."""
    return build_dit(config, height=shape[-2], width=shape[-1])
