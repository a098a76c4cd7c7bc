"""The latent variant: a KL autoencoder on mel spectrograms and a UNet2DModel on its latents.

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models"): an ``AutoencoderKL`` maps a spectrogram (batch, 1, n_mels, frames) in [-1, 1] to a
1-channel latent ``2 ** (levels - 1)`` times smaller per side, and the diffusion model is trained on
the latents multiplied by one scalar that gives them unit standard deviation (§4.3.2 and appendix
G: KL-regularised latents are rescaled by 1 / std estimated on the data). We compute that scale from
our own data (``latent_scale``); Stable Diffusion's 0.18215 belongs to an RGB autoencoder and does not
transfer. Latents are not bounded, so their noise scheduler needs ``clip_sample=False``.

Paper size: teticio/audio-diffusion's VAE ported to diffusers, block_out_channels
(128, 256, 512, 512), 2 layers per block: 83.61 M parameters, 256 x 256 -> 1 x 32 x 32. CPU size:
(16, 32, 32), 1 layer per block, 8 norm groups: 0.24 M, 64 x 64 -> 1 x 16 x 16.

Training objective (``train_vae``): L1 reconstruction plus ``kl_weight`` times the KL divergence of
the posterior from N(0, I) (Rombach et al. 2022, appendix G, without its LPIPS and
adversarial terms: LPIPS needs downloaded VGG weights and the hub is not reachable, and the
discriminator only starts after 50k steps in teticio's config). Both terms are summed per example as
in the CompVis code and then divided by the number of pixels per example, so ``kl_weight`` keeps the
meaning it has in their configs (1e-6) while the loss stays at per-pixel scale for gradient clipping.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DModel

from musicdiff.generation.latent_codec import latent_means, module_device
from musicdiff.generation.models.unet2d import build_unet2d


def vae_downsampling(config: dict) -> int:
    """Per-side downsampling factor of the autoencoder in ``config``: ``2 ** (levels - 1)``."""
    return 2 ** (len(config["block_out_channels"]) - 1)


def build_vae(config: dict) -> AutoencoderKL:
    """Build the spectrogram autoencoder: 1 input/output channel, 1 latent channel.

    ``config`` keys: ``block_out_channels``, ``layers_per_block``, ``norm_num_groups``, optional
    ``sample_size`` (the side the VAE is meant for; metadata only, default 256). Every level is a
    ``DownEncoderBlock2D`` / ``UpDecoderBlock2D``; inputs must have sides divisible by
    ``vae_downsampling(config)``. ``scaling_factor`` starts at 1.0 and is set by ``train_vae``.
    """
    levels = len(config["block_out_channels"])
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        latent_channels=1,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(config["block_out_channels"]),
        layers_per_block=config["layers_per_block"],
        norm_num_groups=config["norm_num_groups"],
        sample_size=config.get("sample_size", 256),
        scaling_factor=1.0,
    )


def build_latent_unet(config: dict, height: int, width: int) -> UNet2DModel:
    """The denoiser on latents (batch, 1, height, width): the mel family's 2-D UNet at the latent grid.

    ``config`` has the keys of ``unet2d.unet_kwargs``. Raises ``ValueError`` when a side is not
    divisible by the UNet's total downsampling.
    """
    return build_unet2d(config, n_mels=height, frames=width)


def denoiser_class() -> type:
    """The class trained ``latent`` denoiser weights load with (the VAE beside them is an
    ``AutoencoderKL``)."""
    return UNet2DModel


def build_denoiser(config: dict, shape: tuple[int, ...], num_train_timesteps: int = 1000) -> UNet2DModel:
    """The latent denoiser for examples of ``shape`` (channels, latent height, latent width);
    ``num_train_timesteps`` is unused. Raises ``ValueError`` as ``build_latent_unet``."""
    return build_latent_unet(config, height=shape[-2], width=shape[-1])


def latent_scale(vae: AutoencoderKL, data: torch.Tensor, batch_size: int = 64) -> float:
    """``1 / std`` of the posterior means of ``data`` (N, 1, H, W) in [-1, 1] (one number over all
    latent elements), so ``scale * latents`` has unit standard deviation (Rombach et al. 2022,
    §4.3.2 / appendix G).

    Raises ``ValueError`` for empty data or when the latents have zero or non-finite spread.
    """
    if len(data) == 0:
        raise ValueError("no examples to estimate the latent scale from")
    std = latent_means(vae, data, batch_size).std().item()
    if not math.isfinite(std) or std == 0.0:
        raise ValueError(f"latent standard deviation is {std}; cannot scale")
    return 1.0 / std


def vae_loss(vae: AutoencoderKL, x: torch.Tensor, kl_weight: float,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, l1, kl)`` for a batch ``x`` (B, 1, H, W): per-pixel L1 of the reconstruction from a
    posterior sample, and the KL to N(0, I) summed over latent elements, averaged over the batch and
    divided by the pixels per example; ``loss = l1 + kl_weight * kl``.
    """
    posterior = vae.encode(x).latent_dist
    reconstruction = vae.decode(posterior.sample(generator=generator)).sample
    pixels = x[0].numel()
    l1 = F.l1_loss(reconstruction, x)
    kl = posterior.kl().mean() / pixels
    return l1 + kl_weight * kl, l1, kl


def train_vae(
    vae: AutoencoderKL,
    data: torch.Tensor,
    config: dict,
    out_dir: Path,
    log_metrics: Callable[[dict, int], None] | None = None,
) -> dict:
    """Train ``vae`` to reconstruct ``data`` (N, 1, H, W) in [-1, 1] on the VAE's current device.

    ``config`` keys: ``seed``, ``batch_size``, ``max_steps``, ``learning_rate`` (4.5e-6 in teticio's
    LDM config; larger for short runs), ``kl_weight`` (default 1e-6), ``grad_clip`` (default 1.0),
    ``adam_betas`` (default (0.5, 0.9), the CompVis autoencoder's), ``weight_decay`` (default 0),
    ``log_every``. Batch indices and posterior noise of step ``s`` come from ``seed + s`` alone.
    After training, the latent scale of ``data`` is stored as ``vae.config.scaling_factor`` and the
    VAE is written with ``save_pretrained`` to ``out_dir / "vae"`` (a temporary folder renamed into
    place). ``log_metrics(metrics, step)`` receives loss, l1 and kl.

    Returns ``{"step", "final_loss", "losses", "l1", "kl", "latent_scale", "seconds_per_step"}``.
    Raises ``ValueError`` for an empty dataset and ``FloatingPointError`` (naming the step) when the
    loss becomes NaN or infinite.
    """
    if len(data) == 0:
        raise ValueError("no training examples")
    seed, max_steps = int(config["seed"]), int(config["max_steps"])
    batch_size, kl_weight = int(config["batch_size"]), float(config.get("kl_weight", 1e-6))
    log_every = int(config.get("log_every", 10))
    device = module_device(vae)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config["learning_rate"],
                                  betas=tuple(config.get("adam_betas", (0.5, 0.9))),
                                  weight_decay=config.get("weight_decay", 0.0))
    losses: list[float] = []
    l1 = kl = torch.tensor(math.nan)
    began = time.perf_counter()

    vae.train()
    for step in range(max_steps):
        generator = torch.Generator().manual_seed(seed + step)
        index = torch.randint(0, len(data), (batch_size,), generator=generator)
        x = data[index].to(device).float()
        loss, l1, kl = vae_loss(vae, x, kl_weight, generator=generator)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"VAE loss is {loss.item()} at step {step + 1}; stopping")
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), config.get("grad_clip", 1.0))
        optimizer.step()
        losses.append(loss.item())
        if log_metrics and ((step + 1) % log_every == 0 or step + 1 == max_steps):
            log_metrics({"vae_loss": losses[-1], "vae_l1": l1.item(), "vae_kl": kl.item()}, step + 1)
    seconds = (time.perf_counter() - began) / max(max_steps, 1)
    vae.eval()

    scale = latent_scale(vae, data, batch_size)
    vae.register_to_config(scaling_factor=scale)
    _atomic_save_pretrained(vae, Path(out_dir) / "vae")
    return {"step": max_steps, "final_loss": losses[-1] if losses else math.nan, "losses": losses,
            "l1": l1.item(), "kl": kl.item(), "latent_scale": scale, "seconds_per_step": seconds}


def _atomic_save_pretrained(model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp_{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
