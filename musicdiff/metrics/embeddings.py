"""Embedding registry and the content-addressed embedding cache shared by every stage.

Each embedding exposes ``name``, ``sample_rate`` (Hz), ``dim``, ``config`` (every preprocessing knob)
and ``weight_sha256``, and ``embed(audio)`` mapping mono float32 ``(samples,)`` at ``sample_rate`` to
``(frames, dim)`` float32. Models are imported only when asked for, so nothing is downloaded at import.

The cache key of a clip is SHA-256 over (audio file SHA-256, embedding name, weight SHA-256, the
preprocessing config as sorted JSON, SHA-256 of the code that decodes the clip and computes the
embedding, cache format version): a changed clip, model, weight file, window setting or front end
can never reuse a stale entry.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio
from tqdm.auto import tqdm

from musicdiff.hashing import sha256_file, sha256_tree

CACHE_FORMAT = 1


class LogMelStats:
    """Sanity-reference embedding without a network: per-window mean and standard deviation of the
    log-mel spectrum (64 Slaney mel bands, 16 kHz, n_fft 512, hop 256, 1 s windows every 0.5 s)
    -> 128-d. Sensitive to timbre and loudness only; use it beside a learnt embedding, not alone."""

    name = "logmel-stats"
    sample_rate = 16000
    dim = 128
    weight_sha256 = "none"

    def __init__(self, window_s: float = 1.0, hop_s: float = 0.5):
        self.window_s, self.hop_s = window_s, hop_s
        self.config = {"sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 64,
                       "window_s": window_s, "hop_s": hop_s, "log": "ln(mel + 1e-6)", "tail": "drop"}
        self._mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, hop_length=256, n_mels=64,
                                                         norm="slaney", mel_scale="slaney")

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """(samples,) at 16 kHz -> (windows, 128); clips shorter than one window give one window."""
        x = torch.as_tensor(_check_audio(audio))
        logmel = torch.log(self._mel(x) + 1e-6)  # (64, frames)
        per_s = self.sample_rate / 256
        win, hop = max(1, round(self.window_s * per_s)), max(1, round(self.hop_s * per_s))
        starts = range(0, max(1, logmel.shape[1] - win + 1), hop)
        rows = [torch.cat([logmel[:, s:s + win].mean(1), logmel[:, s:s + win].std(1)]) for s in starts]
        return torch.stack(rows).numpy().astype(np.float32)


def _check_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"expected mono audio (samples,), got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or inf")
    return audio


EMBEDDINGS = ("clap-laion-audio", "clap-laion-music", "logmel-stats", "musicnn", "vggish")


def get_embedding(name: str, **options):
    """The embedding called ``name`` (one of :data:`EMBEDDINGS`), built with ``options``.

    Raises ``KeyError`` naming the known embeddings for an unknown name; loaders raise
    ``RuntimeError`` naming the missing weights and how to provide them
    (:class:`musicdiff.weights.MissingWeightsError` for VGGish and CLAP).
    """
    if name == "musicnn":
        from musicdiff.metrics.musicnn import MusicnnEmbedding

        return MusicnnEmbedding(**options)
    if name == "logmel-stats":
        return LogMelStats(**options)
    if name == "vggish":
        from musicdiff.metrics.vggish import VggishEmbedding

        return VggishEmbedding(**options)
    if name in ("clap-laion-audio", "clap-laion-music"):
        from musicdiff.metrics.clap import ClapEmbedding

        return ClapEmbedding(kind=name.rsplit("-", 1)[1], **options)
    raise KeyError(f"unknown embedding {name!r}; known: {list(EMBEDDINGS)}")


def code_sha256(embedding) -> str:
    """SHA-256 over the source files that decode audio and define ``embedding``'s class."""
    from musicdiff.data import audio

    return sha256_tree([inspect.getsourcefile(audio), inspect.getsourcefile(type(embedding))])


def cache_key(audio_sha256: str, embedding) -> str:
    """The content address of one clip's embedding (see the module docstring)."""
    body = json.dumps({"audio": audio_sha256, "model": embedding.name, "weights": embedding.weight_sha256,
                       "config": embedding.config, "code": code_sha256(embedding), "format": CACHE_FORMAT},
                      sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class EmbeddedSet:
    """Per-clip embeddings of a folder: ``clips[i]`` is (frames_i, dim) for ``paths[i]``.

    ``skipped`` is empty for a real set; otherwise it says why the set could not be embedded (e.g.
    the embedding's weights are missing) and the set holds no clips. Consumers record the skip.
    """

    paths: list[str]
    sha256: list[str]
    clips: list[np.ndarray]
    embedding: str
    weight_sha256: str
    config: dict
    skipped: str = ""

    @classmethod
    def skip(cls, embedding: str, reason: str) -> "EmbeddedSet":
        """A set that records why it holds no embeddings (``reason`` must not be empty)."""
        if not reason:
            raise ValueError("a skipped set needs its reason")
        return cls(paths=[], sha256=[], clips=[], embedding=embedding, weight_sha256="", config={}, skipped=reason)

    @property
    def frames(self) -> np.ndarray:
        """All frames stacked, (total_frames, dim). Raises ``ValueError`` for a skipped set."""
        if self.skipped:
            raise ValueError(f"the {self.embedding} set was skipped: {self.skipped}")
        return np.concatenate(self.clips, axis=0)

    def save(self, path: Path) -> None:
        """Write as one ``.npz`` (frames, per-clip offsets, paths, hashes, config), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(c) for c in self.clips])
        frames = self.frames if self.clips else np.zeros((0, 0), dtype=np.float32)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
        os.close(fd)
        np.savez(tmp, frames=frames, offsets=offsets, paths=np.array(self.paths, dtype=str),
                 sha256=np.array(self.sha256, dtype=str), embedding=self.embedding,
                 weight_sha256=self.weight_sha256, config=json.dumps(self.config, sort_keys=True),
                 skipped=self.skipped)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "EmbeddedSet":
        with np.load(path) as z:
            frames, offsets = z["frames"], z["offsets"]
            clips = [frames[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
            return cls(paths=[str(p) for p in z["paths"]], sha256=[str(s) for s in z["sha256"]], clips=clips,
                       embedding=str(z["embedding"]), weight_sha256=str(z["weight_sha256"]),
                       config=json.loads(str(z["config"])),
                       skipped=str(z["skipped"]) if "skipped" in z.files else "")


def embed_files(embedding, paths: list[Path], cache_dir: Path | None = None, progress: bool = True,
                root: Path | None = None) -> EmbeddedSet:
    """Embed audio files (decoded, downmixed and resampled to ``embedding.sample_rate``).

    Each clip's result is looked up in / written to ``cache_dir`` under its ``cache_key``.
    ``root`` makes the stored paths relative. Raises ``ValueError`` for an empty list and lets a
    ``musicdiff.data.audio.BadAudioError`` for an unreadable clip propagate with its path.
    """
    from musicdiff.data.audio import load_audio

    if not paths:
        raise ValueError("no audio files to embed")
    clips, hashes, names = [], [], []
    for path in tqdm(paths, desc=f"embed ({embedding.name})", disable=not progress):
        sha = sha256_file(path)
        cached = Path(cache_dir) / f"{cache_key(sha, embedding)}.npy" if cache_dir else None
        if cached is not None and cached.exists():
            vectors = np.load(cached)
        else:
            vectors = embedding.embed(load_audio(path, embedding.sample_rate))
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".npy")
                os.close(fd)
                np.save(tmp, vectors)
                os.replace(tmp, cached)
        clips.append(vectors)
        hashes.append(sha)
        names.append(str(Path(path).relative_to(root)) if root else str(path))
    return EmbeddedSet(paths=names, sha256=hashes, clips=clips, embedding=embedding.name,
                       weight_sha256=embedding.weight_sha256, config=embedding.config)
