"""Inference speed as the reference study reports it: compute seconds per second of generated audio.

``time_inference`` runs the whole sampler (every step) on a batch, then the decoder (Griffin-Lim,
VAE + Griffin-Lim, or nothing for waveforms), ``warmup`` times untimed and ``repeats`` times timed,
and reports the median of the timed runs. A real-time factor below 1 means faster than real time.
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
    """Time ``repeats`` runs (after ``warmup`` untimed ones) of generating ``batch_size`` clips of
    ``shape`` (channels, ...) with ``sampler`` for ``num_inference_steps`` steps and decoding them
    with ``decoder`` (a ``musicdiff.representation.Decoder``; output (batch, samples) at
    ``sample_rate`` Hz).

    Raises ``ValueError`` when ``repeats < 3`` (a median of fewer runs is not reported) or
    ``warmup < 0``.
    """
    if repeats < 3:
        raise ValueError("repeats must be at least 3 (the speed table reports a median of >= 3 runs)")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")
    denoise, decode, audio_seconds = [], [], float("nan")
    for run in range(warmup + repeats):
        result = generate(model, sampler, batch_size, shape, num_inference_steps, seed=seed + run,
                          batch_size=batch_size, device=device, eta=eta, progress=False)
        began = time.perf_counter()
        audio = decoder(result.samples)
        decode_seconds = time.perf_counter() - began
        audio_seconds = audio.shape[0] * audio.shape[-1] / sample_rate
        if run >= warmup:
            denoise.append(result.denoise_seconds)
            decode.append(decode_seconds)
    return SpeedResult(denoise, decode, audio_seconds, num_inference_steps)
