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
        """Read ``folder/representation.json``.

        Raises ``FileNotFoundError`` naming the file when it is missing, and ``ValueError`` naming the file
        and what is wrong when it is not JSON, not an object, lacks or has unknown keys, or holds values a
        representation cannot have (its mel config included)."""
        path = Path(folder) / FILENAME
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the folder was not written by musicdiff's "
                                    "features, vae or train stage")
        hint = "the file is damaged; the stage that wrote the folder (features, vae or train) writes it again"
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not valid JSON ({error}); {hint}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: holds a JSON {type(data).__name__}, not an object with kind, sample_rate, "
                             f"shape, ...; {hint}")
        known = set(cls.__dataclass_fields__)
        missing = {"kind", "sample_rate", "shape"} - set(data)
        if missing or set(data) - known:
            raise ValueError(f"{path}: " + "; ".join(
                part for part in (f"lacks {sorted(missing)}" if missing else "",
                                  f"unknown keys {sorted(set(data) - known)}" if set(data) - known else "") if part)
                + f" (known: {sorted(known)}); {hint}")
        try:
            representation = cls(**data)
            if representation.mel is not None:
                representation.mel_config  # noqa: B018 - a mel config that does not build is caught here
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}; {hint}") from None
        return representation


class Decoder:
    """Turns generated tensors of a ``Representation`` into audio (batch, samples) float32 on the CPU.

    For latents the VAE is read from ``model_dir / "vae"``. ``decode`` overrides the decode-only
    settings of the representation's mel config (``griffin_lim_iters``, ``griffin_lim_momentum``: params
    ``decode``), which are not part of what a model was trained on. Raises ``FileNotFoundError`` when a
    latent model folder has no ``vae/``.
    """

    def __init__(self, representation: Representation, model_dir: Path | None = None, decode: dict | None = None):
        self.representation = r = representation
        config = None
        if r.kind in ("mel", "latent"):
            from dataclasses import replace

            config = replace(r.mel_config, **{k: v for k, v in (decode or {}).items()
                                               if k in ("griffin_lim_iters", "griffin_lim_momentum")})
        self.mel = MelTransform(config) if config is not None else None
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
            from musicdiff.generation.latent_codec import decode_latents

            samples = decode_latents(self.vae, samples, self.vae.config.scaling_factor).clamp(-1.0, 1.0)
        return self.mel.inverse(samples[:, 0].float())


class Encoder:
    """Turns audio into tensors of a ``Representation``: the inverse direction of :class:`Decoder`,
    used by the creative tools to start from a real clip.

    * mel: the scaled log-mel (``MelTransform``) of the audio;
    * latent: that mel through the VAE encoder, posterior mean times the stored ``scaling_factor``
      (Rombach et al. 2022, §4.3.2; ``musicdiff.generation.latent_codec.encode_latents``);
    * waveform: the audio itself, clamped to [-1, 1].

    ``frames_per_unit`` is how many spectrogram frames one step of the tensor's last (time) axis holds
    (1 for mel, the VAE's downsampling for latents), ``samples_per_unit`` how many audio samples
    (``hop_length * frames_per_unit``; 1 for waveforms).
    """

    def __init__(self, representation: Representation, decoder: Decoder):
        self.representation = r = representation
        self.decoder = decoder
        self.frames_per_unit = (r.frames // r.shape[-1]) if r.kind == "latent" else 1
        self.samples_per_unit = 1 if r.kind == "waveform" else r.mel_config.hop_length * self.frames_per_unit

    @property
    def units(self) -> int:
        """Length of one model window along the time axis (frames, latent columns or samples)."""
        return self.representation.shape[-1]

    def samples_for_units(self, units: int) -> int:
        """Audio samples that ``units`` steps of the time axis decode to (as ``Decoder`` cuts them)."""
        if self.representation.kind == "waveform":
            return units
        return self.representation.mel_config.samples_for_frames(units * self.frames_per_unit)

    @torch.no_grad()
    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """Tensors (batch, channels, ..., units) from audio (batch, samples) at ``sample_rate`` Hz, where
        ``units = samples // samples_per_unit`` (+1 frame for spectrograms, centred STFT), cut to a
        whole number of latent columns. Raises ``ValueError`` for audio shorter than one unit."""
        r = self.representation
        audio = audio.float()
        if audio.dim() != 2:
            raise ValueError(f"expected audio (batch, samples), got shape {tuple(audio.shape)}")
        if r.kind == "waveform":
            return audio.clamp(-1.0, 1.0).unsqueeze(1)
        mel = self.decoder.mel(audio).unsqueeze(1)  # (batch, 1, n_mels, frames)
        if r.kind == "mel":
            return mel
        from musicdiff.generation.latent_codec import encode_latents

        usable = mel.shape[-1] // self.frames_per_unit * self.frames_per_unit
        if usable == 0:
            raise ValueError(f"audio of {audio.shape[-1]} samples is shorter than one latent column")
        return encode_latents(self.decoder.vae, mel[..., :usable], self.decoder.vae.config.scaling_factor)

    @torch.no_grad()
    def decode(self, tensors: torch.Tensor) -> torch.Tensor:
        """Audio (batch, samples) from tensors of any length along the time axis (the denoisers are
        convolutional along it; the decoder is Griffin-Lim for mel and latent, the identity for
        waveforms)."""
        r = self.representation
        if r.kind == "waveform":
            return tensors[:, 0].float().clamp(-1.0, 1.0)
        if r.kind == "latent":
            from musicdiff.generation.latent_codec import decode_latents

            tensors = decode_latents(self.decoder.vae, tensors, self.decoder.vae.config.scaling_factor).clamp(-1, 1)
        return self.decoder.mel.inverse(tensors[:, 0].float())
