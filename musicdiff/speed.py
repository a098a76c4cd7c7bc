"""Inference speed as the reference study reports it: compute seconds per second of generated audio.

``time_samplers`` runs each whole sampler (every step) on a batch, then the decoder (Griffin-Lim,
VAE + Griffin-Lim, or nothing for waveforms), ``warmup`` times untimed and ``repeats`` times timed
(interleaved across samplers), and reports the median of the timed runs. A real-time factor below 1 means faster than real time.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from musicdiff.sampling import generate


@dataclass
class SpeedResult:
    """Wall times (seconds) of each timed run and the audio (seconds) one run produces."""

    denoise_seconds: list[float]
    decode_seconds: list[float]
    audio_seconds: float
    num_inference_steps: int

    @property
    def denoise_rtf(self) -> float:
        """Median denoising seconds per second of audio."""
        return statistics.median(self.denoise_seconds) / self.audio_seconds

    @property
    def decode_rtf(self) -> float:
        """Median decoding seconds per second of audio."""
        return statistics.median(self.decode_seconds) / self.audio_seconds

    @property
    def seconds_per_step(self) -> float:
        """Median denoising seconds per sampler step for the whole batch."""
        return statistics.median(self.denoise_seconds) / self.num_inference_steps


def time_inference(model: torch.nn.Module, sampler, decoder, shape: tuple[int, ...], num_inference_steps: int,
                   sample_rate: int, batch_size: int = 1, warmup: int = 1, repeats: int = 3, seed: int = 0,
                   device: str | torch.device = "cpu", eta: float = 0.0) -> SpeedResult:
    """Time one sampler: ``time_samplers`` with a single entry."""
    return time_samplers(model, {"sampler": (sampler, num_inference_steps, eta)}, decoder, shape, sample_rate,
                         batch_size=batch_size, warmup=warmup, repeats=repeats, seed=seed, device=device)["sampler"]


def time_samplers(model: torch.nn.Module, samplers: dict, decoder, shape: tuple[int, ...], sample_rate: int,
                  batch_size: int = 1, warmup: int = 1, repeats: int = 3, seed: int = 0,
                  device: str | torch.device = "cpu", condition=None) -> dict[str, SpeedResult]:
    """Time every sampler in ``samplers`` (name -> ``(scheduler, num_inference_steps, eta)``): each
    run generates ``batch_size`` clips of ``shape`` (channels, ...) and decodes them with ``decoder``
    (a ``musicdiff.representation.Decoder``; output (batch, samples) at ``sample_rate`` Hz).

    Every sampler first runs ``warmup`` untimed times; then the timed runs are interleaved (round r
    runs each sampler once), so a slow spell of a shared machine affects all samplers alike rather
    than one. Returns name -> ``SpeedResult`` with ``repeats`` timed runs each. ``condition`` (a
    ``musicdiff.sampling.TextCondition`` for ``batch_size`` clips) is passed on for a text-conditioned
    model; with a guidance scale other than 1 every step runs the denoiser on twice the batch.

    Raises ``ValueError`` when ``repeats < 3`` (a median of fewer runs is not reported) or
    ``warmup < 0``.
    """
    if repeats < 3:
        raise ValueError("repeats must be at least 3 (the speed table reports a median of >= 3 runs)")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")
    results = {name: SpeedResult([], [], float("nan"), steps) for name, (_, steps, _) in samplers.items()}
    rounds = [(name, False) for name in samplers for _ in range(warmup)]
    rounds += [(name, True) for _ in range(repeats) for name in samplers]
    for run, (name, timed) in enumerate(rounds):
        sampler, steps, eta = samplers[name]
        generated = generate(model, sampler, batch_size, shape, steps, seed=seed + run, batch_size=batch_size,
                             device=device, eta=eta, progress=False, condition=condition)
        began = time.perf_counter()
        audio = decoder(generated.samples)
        decode_seconds = time.perf_counter() - began
        if timed:
            result = results[name]
            result.denoise_seconds.append(generated.denoise_seconds)
            result.decode_seconds.append(decode_seconds)
            result.audio_seconds = audio.shape[0] * audio.shape[-1] / sample_rate
    return results
