"""Training tensors from a folder of clips: mel spectrograms [frames, mels] or raw waveform windows."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from musicdiff.features.mel import MelTransform


def _crops(paths: list[Path], sample_rate: int, length: int, crops_per_clip: int, progress: bool, desc: str):
    """Yield ``(path, window)``: up to ``crops_per_clip`` consecutive non-overlapping windows of
    ``length`` samples from the start of each clip (mono, ``sample_rate`` Hz)."""
    from musicdiff.data.audio import load_audio

    if crops_per_clip < 1:
        raise ValueError("crops_per_clip must be at least 1")
    for path in tqdm(paths, desc=desc, disable=not progress):
        audio = torch.from_numpy(load_audio(path, sample_rate))
        if audio.shape[-1] < length:
            raise ValueError(
                f"{path}: {audio.shape[-1]} samples ({audio.shape[-1] / sample_rate:.2f} s), need {length} "
                f"({length / sample_rate:.2f} s); prepare longer segments (datasets.<set>.prepare.segment_s)")
        for i in range(min(crops_per_clip, audio.shape[-1] // length)):
            yield path, audio[i * length:(i + 1) * length]


def mel_dataset(paths: list[Path], transform: MelTransform, frames: int, progress: bool = True,
                crops_per_clip: int = 1) -> torch.Tensor:
    """Scaled log-mels of ``frames`` frames: (examples, 1, n_mels, frames) float32.

    Each clip, decoded at ``transform.config.sample_rate`` Hz (mono), gives up to ``crops_per_clip``
    consecutive non-overlapping windows of ``(frames - 1) * hop_length`` samples (one by default:
    the clip's start). Raises ``ValueError`` naming the clip when one is too short for one window.
    """
    need = transform.config.samples_for_frames(frames)
    out = []
    for _, window in _crops(paths, transform.config.sample_rate, need, crops_per_clip, progress, "mel"):
        with torch.no_grad():
            out.append(transform(window)[..., :frames])
    return torch.stack(out).unsqueeze(1)


def waveform_dataset(paths: list[Path], sample_rate: int, samples: int, crops_per_clip: int = 1,
                     progress: bool = True) -> torch.Tensor:
    """Raw audio windows (examples, 1, samples) float32 in [-1, 1] at ``sample_rate`` Hz, up to
    ``crops_per_clip`` consecutive non-overlapping windows per clip. Raises ``ValueError`` naming the
    clip when one is shorter than ``samples``."""
    out = [w.clamp(-1.0, 1.0) for _, w in _crops(paths, sample_rate, samples, crops_per_clip, progress, "waveform")]
    return torch.stack(out).unsqueeze(1)


def spectral_convergence(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """||S_ref - S_est||_F / ||S_ref||_F over magnitudes (Sturmel & Daudet 2011), lower is better."""
    return float(torch.linalg.norm(reference - estimate) / torch.linalg.norm(reference))
