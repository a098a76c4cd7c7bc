"""Matplotlib without a display, and the two figure helpers every plot shares: atomic PNG saving and the
example spectrogram a stage attaches to its MLflow run. Imports neither pandas nor the tables, so a
stage that draws one spectrogram pays for matplotlib alone."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

DPI = 120


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    """Save ``fig`` as PNG to ``path`` atomically (no date stamp) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=DPI, metadata={"Software": None})
    pyplot().close(fig)
    os.replace(tmp, path)
    return path


def spectrogram_figure(audio: np.ndarray, sample_rate: int, path: Path, title: str = "") -> Path:
    """A log-magnitude spectrogram (dB, STFT n_fft 1024, hop 256) of mono ``audio`` (samples,) at
    ``sample_rate`` Hz, as a PNG: what an MLflow run shows beside its example WAVs."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.0))
    ax.specgram(np.asarray(audio, dtype=np.float64), NFFT=1024, Fs=sample_rate, noverlap=768, scale="dB", cmap="magma")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)
