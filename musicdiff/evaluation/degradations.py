"""Graded degradations of real music, to show that a metric responds to what it should.

A benchmark's distance is only worth reading if it grows when audio gets worse. The metric-sensitivity
analysis (Kilgour et al. 2019, "Frechet Audio Distance: A Reference-Free Metric for Evaluating Music
Enhancement Algorithms", §4, did it with artificial distortions) degrades held-out real clips by each
kind at several strengths, scores them with every embedding and reports the rank correlation of score
with strength (:func:`rank_correlation`).

Kinds (each a function ``(audio (clips, samples), sample_rate, level, seed) -> audio``):

* ``white_noise``: Gaussian noise added at ``level`` dB signal-to-noise ratio, per clip (the clip's
  own mean power over the noise's); lower SNR is stronger;
* ``lowpass``: every frequency above ``level`` Hz removed (brick-wall, in the FFT of the clip); a
  lower cut-off is stronger;
* ``griffin_lim``: the mel spectrogram round trip the mel and latent families decode through
  (``musicdiff.features.mel.MelTransform``: dB scale, [-1, 1], Griffin-Lim with the decode settings'
  iterations and random-free initialisation) through ``level`` mel bands; fewer bands are stronger
  (the number of Griffin-Lim iterations is not a graded harm: measured, 8 iterations scored no worse
  than 32).

:func:`strength` turns a level into a number that grows with the harm (the clean audio is the mildest:
``-inf``).
"""

from __future__ import annotations

import numpy as np

KINDS = ("white_noise", "lowpass", "griffin_lim")


def white_noise(audio: np.ndarray, sample_rate: int, snr_db: float, seed: int = 0) -> np.ndarray:
    """``audio`` (clips, samples) plus Gaussian noise at ``snr_db`` dB SNR per clip (seeded)."""
    x = np.asarray(audio, dtype=np.float64)
    power = np.mean(x**2, axis=-1, keepdims=True)
    noise = np.random.default_rng(seed).normal(size=x.shape) * np.sqrt(power / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def lowpass(audio: np.ndarray, sample_rate: int, cutoff_hz: float, seed: int = 0) -> np.ndarray:
    """``audio`` (clips, samples) with every FFT bin above ``cutoff_hz`` (Hz) set to zero."""
    x = np.asarray(audio, dtype=np.float64)
    spectrum = np.fft.rfft(x, axis=-1)
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / sample_rate)
    spectrum[..., freqs > cutoff_hz] = 0.0
    return np.fft.irfft(spectrum, n=x.shape[-1], axis=-1).astype(np.float32)


def griffin_lim(audio: np.ndarray, sample_rate: int, n_mels: float, seed: int = 0,
                mel: dict | None = None) -> np.ndarray:
    """``audio`` (clips, samples) through a scaled log-mel of ``n_mels`` bands (the other settings from
    ``mel``, a ``MelConfig`` dict; default n_fft 1024, hop 256, 32 Griffin-Lim iterations) and back by
    Griffin-Lim; the output is cut or zero-padded to the input length."""
    import torch

    from musicdiff.features.mel import MelConfig, MelTransform

    config = MelConfig(**{**(mel or {}), "sample_rate": sample_rate, "n_mels": int(n_mels)})
    transform = MelTransform(config)
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    with torch.no_grad():
        y = transform.inverse(transform(x)).numpy()
    n = x.shape[-1]
    return (y[..., :n] if y.shape[-1] >= n else np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])]))


FUNCTIONS = {"white_noise": white_noise, "lowpass": lowpass, "griffin_lim": griffin_lim}


def degrade(audio: np.ndarray, sample_rate: int, kind: str, level: float, seed: int = 0, **options) -> np.ndarray:
    """``audio`` (clips, samples) at ``sample_rate`` Hz degraded by ``kind`` at ``level``.

    Raises ``KeyError`` naming the known kinds."""
    if kind not in FUNCTIONS:
        raise KeyError(f"unknown degradation {kind!r}; known: {list(KINDS)}")
    return FUNCTIONS[kind](audio, sample_rate, level, seed=seed, **options)


def strength(kind: str, level: float) -> float:
    """A number that grows with the harm done: ``-SNR`` dB, ``-cut-off`` Hz, ``-mel bands``."""
    if kind not in FUNCTIONS:
        raise KeyError(f"unknown degradation {kind!r}; known: {list(KINDS)}")
    return -float(level)


def rank_correlation(strengths: list[float], scores: list[float]) -> float:
    """Spearman's rank correlation of scores with strengths (1: the score grows with every step)."""
    from scipy.stats import spearmanr

    if len(strengths) != len(scores) or len(scores) < 3:
        raise ValueError(f"need at least 3 (strength, score) pairs, got {len(strengths)} and {len(scores)}")
    return float(spearmanr(strengths, scores).statistic)
