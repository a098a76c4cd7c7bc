"""The VAE latent codec: a spectrogram autoencoder's posterior means scaled to unit spread (encoding)
and scaled latents back to spectrograms (decoding). Shared by the latent family (which trains the VAE
and estimates the scale), the representation of latent feature sets and model folders, and the vae
stage; it holds no model definition (``musicdiff.generation.models.latent`` builds the VAE).

Scaling follows Rombach et al. 2022 (§4.3.2 / appendix G): the denoiser sees ``scale * z`` with
``scale = 1 / std(z)`` measured on the training latents, and decoding divides by it again.
"""

from __future__ import annotations

import torch


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of ``module``'s first parameter."""
    return next(module.parameters()).device


@torch.no_grad()
def latent_means(vae, data: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Posterior means ``mean(q(z | x))`` (N, 1, H/f, W/f), on the CPU, of ``data`` (N, 1, H, W) in
    [-1, 1], encoded ``batch_size`` examples at a time by ``vae`` (a diffusers ``AutoencoderKL``)."""
    device = module_device(vae)
    means = [vae.encode(data[i:i + batch_size].to(device).float()).latent_dist.mean.cpu()
             for i in range(0, len(data), batch_size)]
    return torch.cat(means)


def encode_latents(vae, data: torch.Tensor, scale: float, batch_size: int = 64) -> torch.Tensor:
    """Scaled latents ``scale * mean(q(z | x))`` (N, 1, H/f, W/f) of ``data`` (N, 1, H, W), on the CPU.

    Uses the posterior mean rather than a sample, so the diffusion training set is deterministic
    (diffusers' text-to-image scripts sample instead; with ``kl_weight`` 1e-6 the posterior
    variance is tiny either way).
    """
    return latent_means(vae, data, batch_size) * scale


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, scale: float, batch_size: int = 64) -> torch.Tensor:
    """Spectrograms (N, 1, H, W), on the CPU, from scaled ``latents`` (N, 1, H/f, W/f): the decoder
    applied to ``latents / scale``. The output is not clamped; it is close to [-1, 1] for in-range
    latents.
    """
    device = module_device(vae)
    out = [vae.decode(latents[i:i + batch_size].to(device).float() / scale).sample.cpu()
           for i in range(0, len(latents), batch_size)]
    return torch.cat(out)
