"""Inference speed as the reference study reports it: compute seconds per second of generated audio.

``time_samplers`` runs each whole sampler (every step) on a batch, then the decoder (Griffin-Lim,
VAE + Griffin-Lim, or nothing for waveforms), ``warmup`` times untimed and ``repeats`` (>= 5) times
timed (interleaved across samplers), and reports the median of the timed runs. A real-time factor
below 1 means faster than real time. ``pin_threads`` fixes torch's thread counts before timing (and
says what it set); ``step_fit`` splits a sampler's time at two step counts into a fixed per-run
overhead and a per-step cost. On CUDA the clock is read after ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from musicdiff.generation.sampling import generate, synchronize

MIN_REPEATS = 5  # the speed table reports a median of at least this many timed runs


def physical_cores(cpus: set[int] | None = None, sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """The physical cores among the logical CPUs ``cpus`` (default: those this process may run on):
    distinct (package, core) pairs read from ``sysfs``; each CPU whose topology cannot be read counts
    as a core of its own."""
    cpus = set(os.sched_getaffinity(0) if cpus is None else cpus)
    cores = set()
    for cpu in cpus:
        topology = Path(sysfs) / f"cpu{cpu}" / "topology"
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def pin_threads(threads: int | None = None) -> dict:
    """Set torch's intra-op threads to ``threads`` (None: :func:`physical_cores`) and its inter-op
    threads to 1 where torch still allows it (not once inter-op work has started). Returns what was
    set, for the run's record: ``threads``, ``interop_threads`` and ``threads_source`` (params |
    physical cores); ``interop_pinned`` is False when torch refused. Raises ``ValueError`` for
    ``threads < 1``."""
    if threads is not None and int(threads) < 1:
        raise ValueError(f"speed.threads must be >= 1 (or null for the physical cores), got {threads}")
    n = int(threads) if threads is not None else physical_cores()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
        interop_pinned = True
    except RuntimeError:  # inter-op parallel work has already started in this process
        interop_pinned = False
    return {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "interop_pinned": interop_pinned, "threads_source": "params" if threads is not None else "physical cores"}


def step_fit(steps_a: int, seconds_a: float, steps_b: int, seconds_b: float) -> tuple[float, float]:
    """The line through (steps, seconds) at two step counts: ``(intercept_s, per_step_s)``, the fixed
    per-run overhead and the cost of one step. Raises ``ValueError`` for equal step counts."""
    if steps_a == steps_b:
        raise ValueError(f"two different step counts are needed, got {steps_a} twice")
    per_step = (seconds_a - seconds_b) / (steps_a - steps_b)
    return seconds_a - per_step * steps_a, per_step


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

    @property
    def denoise_median(self) -> float:
        """Median denoising seconds of one run."""
        return statistics.median(self.denoise_seconds)

    @property
    def denoise_spread(self) -> float:
        """(max - min) / median of the timed denoising runs: how steady the machine was."""
        return (max(self.denoise_seconds) - min(self.denoise_seconds)) / self.denoise_median


def time_inference(model: torch.nn.Module, sampler, decoder, shape: tuple[int, ...], num_inference_steps: int,
                   sample_rate: int, batch_size: int = 1, warmup: int = 1, repeats: int = MIN_REPEATS, seed: int = 0,
                   device: str | torch.device = "cpu", eta: float = 0.0) -> SpeedResult:
    """Time one sampler: ``time_samplers`` with a single entry."""
    return time_samplers(model, {"sampler": (sampler, num_inference_steps, eta)}, decoder, shape, sample_rate,
                         batch_size=batch_size, warmup=warmup, repeats=repeats, seed=seed, device=device)["sampler"]


def time_samplers(model: torch.nn.Module, samplers: dict, decoder, shape: tuple[int, ...], sample_rate: int,
                  batch_size: int = 1, warmup: int = 1, repeats: int = MIN_REPEATS, seed: int = 0,
                  device: str | torch.device = "cpu", condition=None) -> dict[str, SpeedResult]:
    """Time every sampler in ``samplers`` (name -> ``(scheduler, num_inference_steps, eta)``): each
    run generates ``batch_size`` clips of ``shape`` (channels, ...) and decodes them with ``decoder``
    (a ``musicdiff.generation.representation.Decoder``; output (batch, samples) at ``sample_rate`` Hz).

    Every sampler first runs ``warmup`` untimed times; then the timed runs are interleaved (round r
    runs each sampler once), so a slow spell of a shared machine affects all samplers alike rather
    than one. Returns name -> ``SpeedResult`` with ``repeats`` timed runs each. ``condition`` (a
    ``musicdiff.generation.sampling.TextCondition`` for ``batch_size`` clips) is passed on for a text-conditioned
    model; with a guidance scale other than 1 every step runs the denoiser on twice the batch. On
    CUDA the device is synchronized before each clock reading (denoising and decoding).

    Raises ``ValueError`` when ``repeats < 5`` (a median of fewer runs is not reported) or
    ``warmup < 0``.
    """
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS} (the speed table reports a median of >= "
                         f"{MIN_REPEATS} runs), got {repeats}")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")
    results = {name: SpeedResult([], [], float("nan"), steps) for name, (_, steps, _) in samplers.items()}
    rounds = [(name, False) for name in samplers for _ in range(warmup)]
    rounds += [(name, True) for _ in range(repeats) for name in samplers]
    for run, (name, timed) in enumerate(rounds):
        sampler, steps, eta = samplers[name]
        generated = generate(model, sampler, batch_size, shape, steps, seed=seed + run, batch_size=batch_size,
                             device=device, eta=eta, progress=False, condition=condition)
        synchronize(device)
        began = time.perf_counter()
        audio = decoder(generated.samples)
        synchronize(device)
        decode_seconds = time.perf_counter() - began
        if timed:
            result = results[name]
            result.denoise_seconds.append(generated.denoise_seconds)
            result.decode_seconds.append(decode_seconds)
            result.audio_seconds = audio.shape[0] * audio.shape[-1] / sample_rate
    return results


def fit_steps(steps: int, fraction: float | None) -> int | None:
    """The second step count at which a sampler of ``steps`` steps is timed for :func:`step_fit`:
    ``round(steps * fraction)`` (at least 1), or None when ``fraction`` is None or 0 or gives ``steps``."""
    if not fraction:
        return None
    other = max(1, round(steps * float(fraction)))
    return None if other == steps else other


FIT_SUFFIX = ":fit"  # time_samplers name (MLflow metric names allow ":", not "@") of a sampler's run at its second step count


def sampler_metrics(results: dict[str, SpeedResult]) -> dict[str, float]:
    """The metrics the speed stage logs per sampler from ``time_samplers`` results: real-time factors,
    seconds per step, median and spread of the denoising runs; for a sampler also timed at a second
    step count (entry ``<name>:fit``), that count, its median, and the :func:`step_fit` intercept
    (``overhead_s``, fixed seconds per run) and slope (``step_s``, seconds per step)."""
    metrics = {}
    for name, result in results.items():
        if name.endswith(FIT_SUFFIX):
            continue
        metrics.update({f"{name}/denoise_s_per_audio_s": result.denoise_rtf,
                        f"{name}/decode_s_per_audio_s": result.decode_rtf,
                        f"{name}/s_per_step": result.seconds_per_step,
                        f"{name}/num_inference_steps": result.num_inference_steps,
                        f"{name}/denoise_s": result.denoise_median,
                        f"{name}/denoise_spread": result.denoise_spread})
        fit = results.get(name + FIT_SUFFIX)
        if fit is not None:
            overhead, per_step = step_fit(result.num_inference_steps, result.denoise_median,
                                          fit.num_inference_steps, fit.denoise_median)
            metrics.update({f"{name}/fit_steps": fit.num_inference_steps, f"{name}/fit_denoise_s": fit.denoise_median,
                            f"{name}/overhead_s": overhead, f"{name}/step_s": per_step})
    return metrics


GPU_PAPER_INSTANCE = "gpu-paper-mel-256x256"  # the speed stage's run of the study's mel UNet (tag gpu_paper)
NO_CUDA = "no CUDA device was available to the speed stage (torch.cuda.is_available() was False)"


def gpu_paper_record(cuda_available: bool, results: dict[str, SpeedResult] | None, study: dict[str, float],
                     device_name: str = "") -> tuple[dict[str, float], dict[str, str]]:
    """Metrics and tags of the speed stage's GPU run of the study's [256, 256] mel UNet: without CUDA
    only the tag ``gpu_paper`` saying so; with it :func:`sampler_metrics` of ``results`` plus, per
    sampler, the study's seconds per audio second (``study``: name -> value) and the measured denoising
    over it. Raises ``ValueError`` when CUDA was available but nothing was timed."""
    if not cuda_available:
        return {"cuda_available": 0.0}, {"gpu_paper": NO_CUDA, "device": "cpu"}
    if not results:
        raise ValueError("CUDA was available but no sampler was timed for the GPU, paper size block")
    metrics = {"cuda_available": 1.0, **sampler_metrics(results)}
    for name, value in study.items():
        if name in results:
            metrics[f"{name}/study_s_per_audio_s"] = float(value)
            metrics[f"{name}/vs_study"] = results[name].denoise_rtf / float(value)
    return metrics, {"gpu_paper": "timed", "device": "cuda", "device_name": device_name}
