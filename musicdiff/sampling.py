"""Generation with DDPM, DDIM or DPM-Solver++ from a trained denoiser, with separate timings.

DDPM is ancestral sampling (Ho et al. 2020, Algorithm 2); DDIM with eta = 0 is the deterministic
sampler of Song et al. 2021 (eq. 12); both come from ``musicdiff.schedulers.build_sampler`` so they
share the training betas. Every batch of clips draws its noise from its own generator seeded with
``seed + first clip index``, so clip ``i`` is the same whatever else was generated in that run for
a fixed ``batch_size``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


@dataclass
class GenerationResult:
    """Generated samples (n, channels, height, width) and the wall time of the denoising loop (s)."""

    samples: torch.Tensor
    denoise_seconds: float
    num_inference_steps: int


@torch.inference_mode()
def generate(
    model: torch.nn.Module,
    sampler,
    n: int,
    shape: tuple[int, ...],
    num_inference_steps: int,
    seed: int,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    eta: float = 0.0,
    progress: bool = True,
) -> GenerationResult:
    """Generate ``n`` samples of ``shape`` (channels, height, width) by running ``sampler``.

    ``sampler`` is a diffusers scheduler (DDPM, DDIM, DPM-Solver++); ``eta`` is used by DDIM only.
    Returns samples on the CPU, float32. Raises ``ValueError`` for ``n < 1`` and
    ``FloatingPointError`` if the model produces NaN or infinite values.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    model.eval().to(device)
    sampler.set_timesteps(num_inference_steps, device=device)
    step_kwargs = {"eta": eta} if "eta" in sampler.step.__code__.co_varnames else {}
    out = []
    began = time.perf_counter()
    batches = range(0, n, batch_size)
    bar = tqdm(total=len(batches) * len(sampler.timesteps), desc=f"sample ({type(sampler).__name__}, {n} clips)",
               unit="step", disable=not progress)
    for first in batches:
        count = min(batch_size, n - first)
        generator = torch.Generator().manual_seed(seed + first)
        x = torch.randn((count, *shape), generator=generator).to(device) * sampler.init_noise_sigma
        sampler.set_timesteps(num_inference_steps, device=device)
        for t in sampler.timesteps:
            model_input = sampler.scale_model_input(x, t)
            prediction = model(model_input, t).sample
            x = sampler.step(prediction, t, x, generator=generator, **step_kwargs).prev_sample
            bar.update(1)
        if not torch.isfinite(x).all():
            raise FloatingPointError(f"non-finite values in samples {first}..{first + count - 1}")
        out.append(x.float().cpu())
    bar.close()
    return GenerationResult(torch.cat(out), time.perf_counter() - began, num_inference_steps)
