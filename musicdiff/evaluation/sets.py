"""Embedding sets: the evaluation clips of a folder of audio, embedded under one protocol.

``musicdiff.evaluation.engine.embed_files`` makes one from audio files. An :class:`EmbeddedSet` carries the
protocol, the embedding's name, config, window and weight hash, so that
``musicdiff.evaluation.protocol.check_comparable`` can refuse to compare two sets made differently.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musicdiff.evaluation.protocol import check_comparable, independent_frames

SET_FORMAT = 2


@dataclass
class EmbeddedSet:
    """Per-clip embeddings of one audio set under one evaluation protocol.

    ``clips[i]`` is (frames_i, dim) float32 for the clip named ``names[i]`` (``<file>#<k>``: the k-th
    clip of the file), whose file has SHA-256 ``sha256[i]``. ``protocol`` is
    ``EvaluationProtocol.to_dict()``; ``window_s`` the embedding's window in seconds. ``clips_available``
    counts the clips the files gave before any subset was drawn.
    """

    name: str
    names: list[str]
    sha256: list[str]
    clips: list[np.ndarray]
    embedding: str
    weight_sha256: str
    config: dict
    protocol: dict
    window_s: float
    clips_available: int = 0
    files: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def meta(self) -> dict:
        """What must agree between two sets that a score compares (see ``check_comparable``)."""
        return {"protocol": self.protocol, "embedding": self.embedding, "config": self.config,
                "weight_sha256": self.weight_sha256}

    @property
    def dim(self) -> int:
        return int(self.clips[0].shape[1]) if self.clips else 0

    @property
    def frames(self) -> np.ndarray:
        """All frames stacked, (total_frames, dim). Raises ``ValueError`` for an empty set."""
        if not self.clips:
            raise ValueError(f"embedding set {self.name!r} holds no clips")
        return np.concatenate(self.clips, axis=0)

    @property
    def independent_per_clip(self) -> int:
        """Independent frames (non-overlapping windows) of one clip under this protocol (for a set of
        whole files, of the shortest file)."""
        if self.protocol.get("clip_s") is None:
            return min(independent_frames(s, float(self.window_s)) for s in self.extra["seconds"])
        return independent_frames(float(self.protocol["clip_s"]), float(self.window_s))

    @property
    def n_independent(self) -> int:
        """Independent evaluation frames of the set: clips x non-overlapping windows per clip."""
        if self.protocol.get("clip_s") is None:
            return sum(independent_frames(s, float(self.window_s)) for s in self.extra["seconds"])
        return len(self.clips) * self.independent_per_clip

    def check_comparable(self, other: "EmbeddedSet") -> None:
        """Raise ``ProtocolMismatchError`` naming both sets unless ``other`` was made the same way."""
        check_comparable(self.name, self.meta, other.name, other.meta)

    def subset(self, indices, name: str | None = None) -> "EmbeddedSet":
        """The clips at ``indices`` (in that order) as a new set."""
        idx = [int(i) for i in indices]
        return EmbeddedSet(name or self.name, [self.names[i] for i in idx], [self.sha256[i] for i in idx],
                           [self.clips[i] for i in idx], self.embedding, self.weight_sha256, self.config,
                           self.protocol, self.window_s, self.clips_available, self.files, dict(self.extra))

    def save(self, path: Path) -> None:
        """Write as one ``.npz`` (frames, per-clip offsets, names, hashes, metadata), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(c) for c in self.clips])
        frames = self.frames if self.clips else np.zeros((0, 0), dtype=np.float32)
        meta = {"name": self.name, "embedding": self.embedding, "weight_sha256": self.weight_sha256,
                "config": self.config, "protocol": self.protocol, "window_s": self.window_s,
                "clips_available": self.clips_available, "files": self.files, "extra": self.extra,
                "format": SET_FORMAT}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
        os.close(fd)
        try:
            np.savez(tmp, frames=frames, offsets=offsets, names=np.array(self.names, dtype=str),
                     sha256=np.array(self.sha256, dtype=str), meta=json.dumps(meta, sort_keys=True))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> "EmbeddedSet":
        """Read a set written by :meth:`save`. Raises ``FileNotFoundError`` naming the file and
        ``ValueError`` for a file of an older format (re-run the stage that wrote it)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no embedding set here (run the stage that embeds it)")
        with np.load(path) as z:
            if "meta" not in z.files:
                raise ValueError(f"{path}: an embedding set of an older format without its protocol; re-run the "
                                 "stage that wrote it")
            meta = json.loads(str(z["meta"]))
            frames, offsets = z["frames"], z["offsets"]
            clips = [frames[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
            return cls(meta["name"], [str(n) for n in z["names"]], [str(s) for s in z["sha256"]], clips,
                       meta["embedding"], meta["weight_sha256"], meta["config"], meta["protocol"],
                       float(meta["window_s"]), int(meta["clips_available"]), int(meta["files"]),
                       meta.get("extra", {}))
