"""A generator entry point for the ``systems:`` tests: ``generate(n_clips, seed, seconds)`` returns
``(audio (n_clips, samples), sample_rate)`` of decaying harmonic notes, as a user's model function would."""

import numpy as np

SAMPLE_RATE = 16000


def generate(n_clips: int, seed: int, seconds: float = 1.0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    clips = []
    for _ in range(n_clips):
        f0 = rng.uniform(110, 660)
        note = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3)) * np.exp(-2 * t)
        clips.append(0.3 * note / np.max(np.abs(note)) + 0.01 * rng.standard_normal(len(t)))
    return np.stack(clips).astype(np.float32), SAMPLE_RATE


def wrong_count(n_clips: int, seed: int):
    return np.zeros((n_clips + 1, 100), np.float32), SAMPLE_RATE
