"""Mel-spectrogram datasets: a folder of clips -> one tensor of fixed resolution [frames, mels]."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from musicdiff.features.mel import MelTransform


def mel_dataset(paths: list[Path], transform: MelTransform, frames: int, progress: bool = True) -> torch.Tensor:
    """Scaled log-mels of the first ``frames`` frames of each clip: (clips, 1, n_mels, frames) float32.

    Clips are decoded at ``transform.config.sample_rate`` Hz (mono). Raises ``ValueError`` naming
    the clip when one is too short for ``frames`` frames (it needs
    ``(frames - 1) * hop_length`` samples).
    """
    from musicdiff.data.audio import load_audio

    need = transform.config.samples_for_frames(frames)
    out = []
    for path in tqdm(paths, desc="mel", disable=not progress):
        audio = torch.from_numpy(load_audio(path, transform.config.sample_rate))
        if audio.shape[-1] < need:
            raise ValueError(f"{path}: {audio.shape[-1]} samples, need {need} for {frames} frames")
        with torch.no_grad():
            out.append(transform(audio[:need])[..., :frames])
    return torch.stack(out).unsqueeze(1)


def spectral_convergence(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """||S_ref - S_est||_F / ||S_ref||_F over magnitudes (Sturmel & Daudet 2011), lower is better."""
    return float(torch.linalg.norm(reference - estimate) / torch.linalg.norm(reference))
