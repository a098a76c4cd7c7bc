"""Log-mel spectrograms scaled to [-1, 1] and their Griffin-Lim inverse.

Conventions (DESIGN.md §4, after teticio/audio-diffusion and the reference study):

* audio mono at ``sample_rate`` Hz (22050), STFT with a periodic Hann window of ``n_fft`` samples
  (1024) and ``hop_length`` (256), centred; power spectrogram (power 2);
* ``n_mels`` Slaney-normalised mel bands from ``f_min`` to ``f_max`` Hz (0 .. 11025);
* decibels against a **fixed global reference**: 0 dB is the peak mel power of a full-scale
  1 kHz sine. The dB values are clipped to ``[max_db - top_db, max_db]`` and mapped linearly to
  ``[-1, 1]``. Unlike diffusers' ``Mel`` (which divides every slice by its own maximum and quantises
  to 8 bits) loudness survives the round trip.

The resolution of a spectrogram is written ``[frames, mels]`` as in the reference study; tensors are
laid out ``(batch, 1, n_mels, frames)`` so that ``UNet2DModel(sample_size=(n_mels, frames))`` fits.
``frames`` frames decode to ``(frames - 1) * hop_length`` samples, e.g. [64, 64] is 0.74 s and
[1024, 128] is 11.87 s at 22050 Hz.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchaudio


@dataclass(frozen=True)
class MelConfig:
    """Every knob of the mel transform; ``asdict`` of it is logged with each result."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 11025.0
    top_db: float = 80.0
    max_db: float = 10.0
    griffin_lim_iters: int = 32
    griffin_lim_momentum: float = 0.99

    def to_dict(self) -> dict:
        return asdict(self)

    def frames_to_seconds(self, frames: int) -> float:
        """Duration in seconds of the audio that ``frames`` mel frames decode to."""
        return (frames - 1) * self.hop_length / self.sample_rate

    def samples_for_frames(self, frames: int) -> int:
        """Smallest number of samples whose centred STFT has at least ``frames`` frames."""
        return (frames - 1) * self.hop_length


class MelTransform(torch.nn.Module):
    """Waveform ``(..., samples)`` -> scaled log-mel ``(..., n_mels, frames)`` in [-1, 1], and back.

    ``frames = 1 + samples // hop_length`` (centred STFT). The inverse goes through
    ``torchaudio.transforms.InverseMelScale`` (least squares, clamped at 0) and
    ``torchaudio.transforms.GriffinLim`` (Griffin & Lim 1984, with the momentum of Perraudin et
    al. 2013) from a deterministic zero-phase start, so decoding is reproducible.
    """

    def __init__(self, config: MelConfig | None = None):
        super().__init__()
        self.config = c = config or MelConfig()
        if c.f_max > c.sample_rate / 2:
            raise ValueError(f"f_max {c.f_max} Hz is above Nyquist ({c.sample_rate / 2} Hz)")
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length, f_min=c.f_min,
            f_max=c.f_max, n_mels=c.n_mels, power=2.0, norm="slaney", mel_scale="slaney",
            center=True, pad_mode="reflect",
        )
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=c.n_fft // 2 + 1, n_mels=c.n_mels, sample_rate=c.sample_rate, f_min=c.f_min,
            f_max=c.f_max, norm="slaney", mel_scale="slaney",
        )
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=c.n_fft, hop_length=c.hop_length, power=2.0, n_iter=c.griffin_lim_iters,
            momentum=c.griffin_lim_momentum, rand_init=False,
        )
        t = torch.arange(c.sample_rate, dtype=torch.float32) / c.sample_rate
        with torch.no_grad():
            ref = self.mel(torch.sin(2 * torch.pi * 1000.0 * t)).max()
        self.register_buffer("ref_power", ref)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Scaled log-mel of ``audio`` (..., samples) float in [-1, 1] -> (..., n_mels, frames)."""
        c = self.config
        power = self.mel(audio)
        db = 10.0 * torch.log10(torch.clamp(power / self.ref_power, min=1e-12))
        db = torch.clamp(db, min=c.max_db - c.top_db, max=c.max_db)
        return (db - (c.max_db - c.top_db)) / c.top_db * 2.0 - 1.0

    def to_power(self, scaled: torch.Tensor) -> torch.Tensor:
        """Inverse of the scaling: [-1, 1] (..., n_mels, frames) -> mel power (same shape)."""
        c = self.config
        db = (torch.clamp(scaled, -1.0, 1.0) + 1.0) / 2.0 * c.top_db + (c.max_db - c.top_db)
        return self.ref_power * torch.pow(10.0, db / 10.0)

    def inverse(self, scaled: torch.Tensor) -> torch.Tensor:
        """Scaled log-mel (..., n_mels, frames) -> waveform (..., (frames - 1) * hop_length).

        Raises ``ValueError`` when the input has the wrong number of mel bands or non-finite values.
        """
        if scaled.shape[-2] != self.config.n_mels:
            raise ValueError(f"expected {self.config.n_mels} mel bands, got shape {tuple(scaled.shape)}")
        if not torch.isfinite(scaled).all():
            raise ValueError("spectrogram holds NaN or inf values; cannot decode")
        frames = scaled.shape[-1]
        linear = self.inverse_mel(self.to_power(scaled).float())
        audio = self.griffin_lim(linear)
        return audio[..., : self.config.samples_for_frames(frames)]
