"""What a denoiser's tensors are and how they become audio: mel spectrogram, waveform or VAE latent.

Every feature set, latent set and trained model folder carries a ``representation.json`` written by
``Representation.save``; sampling, speed timing and the creative tools read it back, so a model
folder is self-contained (a latent model folder also holds its ``vae/``).

* ``mel``: scaled log-mels (batch, 1, n_mels, frames) in [-1, 1], decoded by Griffin-Lim
  (``musicdiff.features.mel.MelTransform.inverse``) to ``(frames - 1) * hop_length`` samples.
* ``waveform``: raw audio (batch, 1, samples) in [-1, 1]; decoding is the identity.
* ``latent``: scaled VAE latents (batch, 1, n_mels / f, frames / f); decoded by the VAE to a mel
  (Rombach et al. 2022, latent divided by the stored ``scaling_factor``), then by Griffin-Lim.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from musicdiff.features.mel import MelConfig, MelTransform

KINDS = ("mel", "waveform", "latent")
FILENAME = "representation.json"


@dataclass(frozen=True)
class Representation:
    """The data space of a denoiser.

    ``shape`` is one example's tensor shape without the batch: (1, n_mels, frames) for mel,
    (1, samples) for waveform, (1, n_mels / f, frames / f) for latent. ``mel`` is the ``MelConfig``
    as a dict (mel and latent), ``frames`` the spectrogram frames (mel and latent), ``samples`` the
    clip length in samples (waveform).
    """

    kind: str
    sample_rate: int
    shape: tuple[int, ...]
    frames: int | None = None
    samples: int | None = None
    mel: dict | None = field(default=None)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown representation kind {self.kind!r}; known: {list(KINDS)}")
        if self.kind in ("mel", "latent") and (self.mel is None or self.frames is None):
            raise ValueError(f"a {self.kind} representation needs its mel config and frames")
        if self.kind == "waveform" and self.samples is None:
            raise ValueError("a waveform representation needs its length in samples")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @property
    def mel_config(self) -> MelConfig:
        return MelConfig(**self.mel)

    @property
    def audio_samples(self) -> int:
        """Length in samples of one decoded clip."""
        if self.kind == "waveform":
            return int(self.samples)
        return self.mel_config.samples_for_frames(self.frames)

    @property
    def clip_seconds(self) -> float:
        """Duration in seconds of one decoded clip."""
        return self.audio_samples / self.sample_rate

    @property
    def resolution(self) -> str:
        """The study's notation: ``[frames, mels]``, ``[1, samples]``, or ``[frames, mels] [w, h]``
        (spectrogram, then latent grid) for latents."""
        if self.kind == "waveform":
            return f"[1, {self.samples}]"
        spec = f"[{self.frames}, {self.mel['n_mels']}]"
        return spec if self.kind == "mel" else f"{spec} [{self.shape[2]}, {self.shape[1]}]"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["shape"] = list(self.shape)
        return out

    def save(self, folder: Path) -> Path:
        """Write ``folder/representation.json`` atomically; returns its path."""
        path = Path(folder) / FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".representation.")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.to_dict(), fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, folder: Path) -> "Representation":
        """Read ``folder/representation.json``. Raises ``FileNotFoundError`` naming the file."""
        path = Path(folder) / FILENAME
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the folder was not written by musicdiff's "
                                    "features, vae or train stage")
        return cls(**json.loads(path.read_text()))


class Decoder:
    """Turns generated tensors of a ``Representation`` into audio (batch, samples) float32 on the CPU.

    For latents the VAE is read from ``model_dir / "vae"``. Raises ``FileNotFoundError`` when a
    latent model folder has no ``vae/``.
    """

    def __init__(self, representation: Representation, model_dir: Path | None = None):
        self.representation = r = representation
        self.mel = MelTransform(r.mel_config) if r.kind in ("mel", "latent") else None
        self.vae = None
        if r.kind == "latent":
            from diffusers import AutoencoderKL

            vae_dir = Path(model_dir or ".") / "vae"
            if not vae_dir.exists():
                raise FileNotFoundError(f"{vae_dir} is missing: a latent model folder must contain the VAE")
            self.vae = AutoencoderKL.from_pretrained(vae_dir).eval()

    @torch.no_grad()
    def __call__(self, samples: torch.Tensor) -> torch.Tensor:
        """Audio (batch, clip samples) at ``representation.sample_rate`` Hz from ``samples``
        (batch, *representation.shape)."""
        r = self.representation
        if tuple(samples.shape[1:]) != r.shape:
            raise ValueError(f"expected samples of shape (batch, {', '.join(map(str, r.shape))}), "
                             f"got {tuple(samples.shape)}")
        if r.kind == "waveform":
            return samples[:, 0].float().clamp(-1.0, 1.0)
        if r.kind == "latent":
            from musicdiff.models.latent import decode_latents

            samples = decode_latents(self.vae, samples, self.vae.config.scaling_factor).clamp(-1.0, 1.0)
        return self.mel.inverse(samples[:, 0].float())
