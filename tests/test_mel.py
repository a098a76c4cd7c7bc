"""Mel transform: scaling conventions and the Griffin-Lim round trip on real music."""

from __future__ import annotations

import pytest
import torch

from musicdiff.features.dataset import spectral_convergence
from musicdiff.features.mel import MelConfig, MelTransform


@pytest.fixture(scope="module")
def transform():
    return MelTransform(MelConfig(n_mels=64))


@pytest.fixture(scope="module")
def music(fadtk_clips):
    from musicdiff.data.audio import load_audio

    return torch.from_numpy(load_audio(fadtk_clips[0], 22050))[: 22050 * 3]


def test_full_scale_sine_sits_at_zero_db_and_silence_at_the_floor(transform):
    t = torch.arange(22050) / 22050
    sine = transform(torch.sin(2 * torch.pi * 1000 * t))
    db_top = (sine.max() + 1) / 2 * 80 + (10 - 80)
    assert float(db_top) == pytest.approx(0.0, abs=0.01)
    assert float(transform(torch.zeros(22050)).max()) == -1.0


def test_loudness_survives_scaling(transform, music):
    loud, quiet = transform(music), transform(music * 0.1)
    # 20 dB quieter = 0.5 lower on the [-1, 1] scale (80 dB range), where nothing is clipped
    inside = (quiet > -0.99) & (loud < 0.99)
    assert torch.allclose((loud - quiet)[inside], torch.tensor(0.25 * 2), atol=1e-3)


def test_griffin_lim_round_trip_of_real_music(transform, music):
    mel = transform(music)
    frames = mel.shape[-1]
    audio = transform.inverse(mel)
    assert audio.shape[-1] == (frames - 1) * 256
    again = transform(audio)[..., : frames - 1]
    reference = transform.to_power(mel[..., : frames - 1]).sqrt()
    error = spectral_convergence(reference, transform.to_power(again).sqrt())
    assert error < 0.35
    # a decoded random spectrogram is far from the music
    noise = transform(transform.inverse(torch.rand_like(mel) * 2 - 1))[..., : frames - 1]
    assert spectral_convergence(reference, transform.to_power(noise).sqrt()) > 3 * error


def test_inverse_rejects_wrong_shape_and_nan(transform):
    with pytest.raises(ValueError, match="mel bands"):
        transform.inverse(torch.zeros(32, 10))
    with pytest.raises(ValueError, match="NaN"):
        transform.inverse(torch.full((64, 10), float("nan")))
