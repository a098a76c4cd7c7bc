"""Audio files in and out of the creative tools (README "Creative tools"), through the shared bad-input
policy on the way in and atomic writes on the way out (see :mod:`musicdiff.generation.creative`, whose
docstring lists the rules: a refused input names the file and the reason, no partial WAV is left, a
peak above full scale is kept and measured).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from musicdiff.generation.trained import TrainedVariant


def load_wav(path: str | Path, trained: TrainedVariant, policy=None,
             warn: Callable[[str], None] | None = None) -> torch.Tensor:
    """Audio (samples,) float32 of ``path`` down-mixed to mono and resampled to the model's rate, through
    the shared bad-input policy (:func:`musicdiff.data.screening.screen_file`) with one model window as
    the minimum length.

    Args:
        path: audio file (any format the policy decodes).
        trained: the model; its representation gives the rate (Hz) and the window length.
        policy: ``musicdiff.data.screening.InputPolicy`` (default thresholds when None).
        warn: called with one line naming the file and its flags when the policy flags it
            (``clipped``, ``dc_offset``, ``multichannel``, ``over_full_scale``, ``band_limited``); the
            file is used all the same.

    Raises:
        musicdiff.data.audio.BadAudioError: the policy refuses the file; ``reason`` is one of
            ``musicdiff.data.screening.SKIP_REASONS`` and the message names the file.
        musicdiff.data.screening.UnexpectedInputError: an exception the policy does not know.
    """
    from musicdiff.data.screening import InputPolicy, screen_file

    rate = trained.representation.sample_rate
    enc = trained.encoder
    screened = screen_file(path, rate, policy or InputPolicy(), min_duration_s=enc.samples_for_units(enc.units) / rate)
    if screened.flags and warn is not None:
        warn(f"{path}: flagged {', '.join(screened.flags)}, used as it is (peak {screened.peak:.3g}, "
             f"{screened.clipped_fraction:.2%} of samples at the peak, mean {screened.dc_offset:+.3g}, "
             f"{screened.channels} channels at {screened.source_sample_rate} Hz)")
    return torch.from_numpy(np.ascontiguousarray(screened.audio))


def stage_file(path: str | Path, write: Callable[[Path], object]) -> Path:
    """A temporary file beside ``path`` (same folder, hidden name) filled by ``write(temporary path)``, for
    the caller to move into place with ``os.replace`` (or delete). Missing folders are created; the
    file is readable by everyone (mode 644). On any failure the temporary file is removed and the
    exception propagates (``OSError`` when the folder cannot be written)."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def output_level(audio: torch.Tensor) -> dict:
    """The peak of ``audio`` (any shape): ``peak`` (absolute, full scale 1.0), ``peak_dbfs`` (dB re full
    scale, None for digital silence) and ``over_full_scale`` (peak above 1.0). Raises ``ValueError``
    for empty audio or non-finite samples (the count is in the message)."""
    if audio.numel() == 0:
        raise ValueError("the generated audio has no samples")
    finite = torch.isfinite(audio)
    if not finite.all():
        raise ValueError(f"the generated audio has {int((~finite).sum())} NaN or infinite samples")
    peak = float(audio.abs().max())
    return {"peak": round(peak, 6), "peak_dbfs": round(20 * math.log10(peak), 2) if peak > 0 else None,
            "over_full_scale": peak > 1.0}


def stage_wav(path: str | Path, audio: torch.Tensor, trained: TrainedVariant) -> Path:
    """``audio`` (samples,) as float32 WAV at the model's rate (Hz) in a temporary file beside ``path``
    (:func:`stage_file`), returned for the caller to ``os.replace``; a peak above full scale is kept,
    not clipped. Raises ``ValueError`` for empty or non-finite audio (nothing is written), ``OSError``
    when the file cannot be written (no temporary file is left)."""
    from musicdiff.data.audio import write_float_wav

    output_level(audio)
    return stage_file(path, lambda tmp: write_float_wav(tmp, audio.numpy(), trained.representation.sample_rate))


def save_wav(path: str | Path, audio: torch.Tensor, trained: TrainedVariant) -> Path:
    """Write ``audio`` (samples,) as float32 WAV at the model's rate atomically (:func:`stage_wav`, then
    ``os.replace``); returns the path. Raises as :func:`stage_wav` does."""
    import os

    os.replace(stage_wav(path, audio, trained), path)
    return Path(path)
