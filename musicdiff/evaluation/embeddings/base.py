"""What every embedding checks of its input: mono float audio, non-empty and finite."""

from __future__ import annotations

import numpy as np


def check_audio(audio: np.ndarray) -> np.ndarray:
    """``audio`` as float32 ``(samples,)``; raises ``ValueError`` unless it is 1-D, non-empty and finite."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"expected mono audio (samples,), got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or inf")
    return audio
