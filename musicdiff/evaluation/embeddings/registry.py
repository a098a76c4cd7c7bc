"""Embedding registry and the content-addressed key of the embedding cache shared by every stage.

Each embedding exposes ``name``, ``sample_rate`` (Hz), ``dim``, ``window_s`` (seconds of one window:
the unit of independent frames), ``config`` (every preprocessing knob) and ``weight_sha256``, and
``embed(audio)`` mapping mono float32 ``(samples,)`` at ``sample_rate`` to ``(frames, dim)`` float32.
Models are imported only when asked for, so nothing is downloaded (or even imported) at import.

The cache key of one evaluation clip is SHA-256 over (audio file SHA-256, the clip's index in the
file, the evaluation protocol, embedding name, weight SHA-256, the preprocessing config as sorted
JSON, SHA-256 of the code that decodes the clip and computes the embedding, cache format version): a
changed clip, protocol, model, weight file, window setting or front end can never reuse a stale entry.
Embedding sets live in ``musicdiff.evaluation.sets``, the embedding pass and its cache in ``musicdiff.evaluation.engine``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json

import numpy as np

from musicdiff.data.hashing import sha256_tree
from musicdiff.evaluation.embeddings.base import check_audio

CACHE_FORMAT = 2


class LogMelStats:
    """Sanity-reference embedding without a network: per-window mean and standard deviation of the
    log-mel spectrum (64 Slaney mel bands, 16 kHz, n_fft 512, hop 256, 1 s windows every 0.5 s)
    -> 128-d. Sensitive to timbre and loudness only; use it beside a learnt embedding, not alone."""

    name = "logmel-stats"
    sample_rate = 16000
    dim = 128
    weight_sha256 = "none"

    def __init__(self, window_s: float = 1.0, hop_s: float = 0.5):
        self.window_s, self.hop_s = window_s, hop_s  # window_s: the unit of independent frames
        self.config = {"sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 64,
                       "window_s": window_s, "hop_s": hop_s, "log": "ln(mel + 1e-6)", "tail": "drop"}
        import torchaudio

        self._mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, hop_length=256, n_mels=64,
                                                         norm="slaney", mel_scale="slaney")

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """(samples,) at 16 kHz -> (windows, 128); clips shorter than one window give one window."""
        import torch

        x = torch.as_tensor(check_audio(audio))
        logmel = torch.log(self._mel(x) + 1e-6)  # (64, frames)
        per_s = self.sample_rate / 256
        win, hop = max(1, round(self.window_s * per_s)), max(1, round(self.hop_s * per_s))
        starts = range(0, max(1, logmel.shape[1] - win + 1), hop)
        rows = [torch.cat([logmel[:, s:s + win].mean(1), logmel[:, s:s + win].std(1)]) for s in starts]
        return torch.stack(rows).numpy().astype(np.float32)


EMBEDDINGS = ("clap-laion-audio", "clap-laion-music", "logmel-stats", "musicnn", "vggish")


def get_embedding(name: str, **options):
    """The embedding called ``name`` (one of :data:`EMBEDDINGS`), built with ``options``.

    Raises ``KeyError`` naming the known embeddings for an unknown name; loaders raise
    ``RuntimeError`` naming the missing weights and how to provide them
    (:class:`musicdiff.weights.registry.MissingWeightsError` for VGGish and CLAP).
    """
    if name == "musicnn":
        from musicdiff.evaluation.embeddings.musicnn import MusicnnEmbedding

        return MusicnnEmbedding(**options)
    if name == "logmel-stats":
        return LogMelStats(**options)
    if name == "vggish":
        from musicdiff.evaluation.embeddings.vggish import VggishEmbedding

        return VggishEmbedding(**options)
    if name in ("clap-laion-audio", "clap-laion-music"):
        from musicdiff.evaluation.embeddings.clap import ClapEmbedding

        return ClapEmbedding(kind=name.rsplit("-", 1)[1], **options)
    raise KeyError(f"unknown embedding {name!r}; known: {list(EMBEDDINGS)}")


def code_sha256(embedding) -> str:
    """SHA-256 over the source files that decode audio and define ``embedding``'s class, and those of the
    modules the class names in ``code_modules`` (the network it runs, when that lives apart); computed once
    per class and process."""
    return _code_sha256(type(embedding))


@functools.lru_cache(maxsize=None)
def _code_sha256(cls) -> str:
    from musicdiff.data import audio

    extra = [inspect.getsourcefile(module) for module in getattr(cls, "code_modules", ())]
    return sha256_tree([inspect.getsourcefile(audio), inspect.getsourcefile(cls), *extra])


def cache_key(audio_sha256: str, embedding, protocol: dict | None = None, clip: int = 0) -> str:
    """The content address of the embedding of clip ``clip`` of a file (see the module docstring);
    ``protocol`` is ``EvaluationProtocol.to_dict()`` (None: the whole file as one clip)."""
    body = json.dumps({"audio": audio_sha256, "clip": clip, "protocol": protocol, "model": embedding.name,
                       "weights": embedding.weight_sha256, "config": embedding.config, "code": code_sha256(embedding),
                       "format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()
