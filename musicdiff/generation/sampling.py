"""Generation with DDPM, DDIM or DPM-Solver++ from a trained denoiser, with separate timings.

DDPM is ancestral sampling (Ho et al. 2020, Algorithm 2); DDIM with eta = 0 is the deterministic
sampler of Song et al. 2021 (eq. 12); both come from ``musicdiff.generation.schedulers.build_sampler`` so they
share the training betas. Every batch of clips draws its noise from its own generator seeded with
``seed + first clip index``, so clip ``i`` is the same whatever else was generated in that run for
a fixed ``batch_size``.

Text-conditioned denoisers (``UNet2DConditionModel``) get a :class:`TextCondition`; with a guidance
scale w the prediction is classifier-free guidance, ``uncond + w (cond - uncond)`` (Ho & Salimans
2022, "Classifier-Free Diffusion Guidance", eq. 6, written for any prediction type: it is linear).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


@dataclass
class TextCondition:
    """Cross-attention inputs of a text-conditioned denoiser.

    ``hidden`` (batch, tokens, dim) and ``mask`` (batch, tokens) encode one caption per clip;
    ``uncond_hidden`` (1, tokens, dim) and ``uncond_mask`` (1, tokens) the empty caption that the
    model saw when its caption was dropped in training. ``guidance_scale`` 1 is the plain
    conditional model, 0 the unconditional one, > 1 classifier-free guidance.
    """

    hidden: torch.Tensor
    mask: torch.Tensor
    uncond_hidden: torch.Tensor
    uncond_mask: torch.Tensor
    guidance_scale: float

    def rows(self, first: int, count: int) -> TextCondition:
        """The condition of clips ``first .. first + count - 1``."""
        return TextCondition(self.hidden[first:first + count], self.mask[first:first + count],
                             self.uncond_hidden, self.uncond_mask, self.guidance_scale)


def predict(model: torch.nn.Module, x: torch.Tensor, t, condition: TextCondition | None = None) -> torch.Tensor:
    """The denoiser's output for ``x`` (batch, ...) at timestep ``t``: ``model(x, t).sample``, or for a
    text-conditioned model the classifier-free-guided output (one batched call with the empty caption
    when the guidance scale is not 1). Raises ``ValueError`` when the condition has another batch size."""
    if condition is None:
        return model(x, t).sample
    n = x.shape[0]
    if condition.hidden.shape[0] != n:
        raise ValueError(f"text condition for {condition.hidden.shape[0]} clips, samples for {n}")
    device = x.device
    hidden, mask = condition.hidden.to(device), condition.mask.to(device)
    w = float(condition.guidance_scale)
    if w == 1.0:
        return model(x, t, encoder_hidden_states=hidden, encoder_attention_mask=mask).sample
    uncond = condition.uncond_hidden.to(device).expand(n, -1, -1)
    uncond_mask = condition.uncond_mask.to(device).expand(n, -1)
    out = model(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, hidden]),
                encoder_attention_mask=torch.cat([uncond_mask, mask])).sample
    out_uncond, out_cond = out.chunk(2)
    return out_uncond + w * (out_cond - out_uncond)


def synchronize(device: str | torch.device) -> None:
    """Wait for the queued work of a CUDA ``device`` (nothing to wait for elsewhere), so that a clock
    read next covers the work launched before it."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class GenerationResult:
    """Generated samples (n, channels, height, width) and the wall time of the denoising loop (s): the
    initial noise, the scheduler's set-up and every step, with the device synchronized on CUDA before
    the clock is read at each end."""

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
    condition: TextCondition | None = None,
) -> GenerationResult:
    """Generate ``n`` samples of ``shape`` (channels, height, width) by running ``sampler``.

    ``sampler`` is a diffusers scheduler (DDPM, DDIM, DPM-Solver++); ``eta`` is used by DDIM only;
    ``condition`` holds one caption per clip for a text-conditioned model.
    Returns samples on the CPU, float32. Raises ``ValueError`` for ``n < 1`` and
    ``FloatingPointError`` if the model produces NaN or infinite values.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    model.eval().to(device)
    sampler.set_timesteps(num_inference_steps, device=device)
    step_kwargs = {"eta": eta} if "eta" in sampler.step.__code__.co_varnames else {}
    out = []
    synchronize(device)
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
            prediction = predict(model, model_input, t,
                                 None if condition is None else condition.rows(first, count))
            x = sampler.step(prediction, t, x, generator=generator, **step_kwargs).prev_sample
            bar.update(1)
        if not torch.isfinite(x).all():
            raise FloatingPointError(f"non-finite values in samples {first}..{first + count - 1}")
        out.append(x.float().cpu())
    synchronize(device)
    seconds = time.perf_counter() - began
    bar.close()
    return GenerationResult(torch.cat(out), seconds, num_inference_steps)
