"""Embedding sets: the evaluation clips of a folder of audio, embedded under one protocol.

:func:`embed_files` decodes each file at the protocol's sample rate, cuts it into clips
(``EvaluationProtocol.clips``), optionally keeps a seeded subset of the clips, resamples each clip to
the embedding's rate and embeds it, through a content-addressed cache (one ``.npy`` per clip, keyed
by ``musicdiff.metrics.embeddings.cache_key``). The result, an :class:`EmbeddedSet`, carries the
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

from musicdiff.evaluation.protocol import EvaluationProtocol, check_comparable, independent_frames

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


def _cached(cache_dir: Path | None, key: str, compute) -> np.ndarray:
    """``compute()`` through the cache file ``cache_dir/<key>.npy`` (written atomically)."""
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    vectors = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy")
    os.close(fd)
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


@dataclass
class ScreenedFiles:
    """The files of one set that the bad-input policy lets through, and what it skipped.

    ``files[i]`` is ``(path, sha256, number of evaluation clips)``; ``log`` a
    ``musicdiff.data.screening.SkipLog`` whose ``total`` counts every file asked for."""

    name: str
    files: list[tuple[Path, str, int]]
    log: object

    @property
    def paths(self) -> list[Path]:
        return [path for path, _, _ in self.files]


def screen_files(paths: list[Path], protocol: EvaluationProtocol, name: str, policy=None, listing_skips=(),
                 progress: bool = False, evaluated: bool = False) -> ScreenedFiles:
    """Screen audio files for one set under ``protocol`` with the bad-input policy
    (``musicdiff.data.screening``): each file is decoded once, checked and its evaluation clips counted;
    a file shorter than one clip (``protocol.clip_s`` seconds) is ``too_short``.

    Args:
        paths: audio files.
        protocol: the evaluation protocol (its rate and clip length).
        name: the set's name in messages.
        policy: ``musicdiff.data.screening.InputPolicy`` (default thresholds when None).
        listing_skips: ``Skip`` entries of a folder listing (``find_audio_files``), counted in the set.
        evaluated: an evaluated set (generated clips, a system): silent, DC-only and over-range files are
            flagged and scored instead of skipped (``musicdiff.data.screening``, "Two roles").

    Returns:
        :class:`ScreenedFiles`; nothing is checked against ``max_skip_fraction`` here (the caller calls
        ``log.check``), so that several sets can be screened before any is embedded.

    Raises:
        musicdiff.data.screening.UnexpectedInputError: an exception the policy does not know, naming the file.
    """
    from tqdm.auto import tqdm

    from musicdiff.data.audio import BadAudioError
    from musicdiff.data.screening import InputPolicy, SkipLog, screen_file
    from musicdiff.hashing import sha256_file

    policy = policy or InputPolicy()
    log = SkipLog(name, total=len(paths) + len(listing_skips))
    log.extend(listing_skips)
    files = []
    for path in tqdm(paths, desc=f"check {name}", disable=not progress):
        try:
            screened = screen_file(path, protocol.sample_rate, policy, min_duration_s=protocol.clip_s,
                                   evaluated=evaluated)
        except BadAudioError as error:
            log.skip(path, error.reason, error.detail)
            continue
        log.used(screened)
        files.append((Path(path), sha256_file(path), len(protocol.clips(screened.audio, path))))
    return ScreenedFiles(name, files, log)


def embed_files(embedding, paths: list[Path], protocol: EvaluationProtocol | None, name: str,
                cache_dir: Path | None = None, root: Path | None = None, max_clips: int | None = None,
                seed: int = 0, progress: bool = True, policy=None,
                screened: ScreenedFiles | None = None, evaluated: bool = False) -> EmbeddedSet:
    """Embed the evaluation clips of audio files ``paths`` under ``protocol`` (see the module docstring).

    The files go through the bad-input policy first (:func:`screen_files` in the role ``evaluated``, or
    its result ``screened`` when the caller screened them already): skipped files are listed in the set's
    ``extra["inputs"]`` and the set stops with ``TooManySkippedError`` when more than
    ``policy.max_skip_fraction`` of them were skipped, before anything is embedded.
    ``max_clips`` keeps a seeded uniform subset of all the files' clips (without replacement, in file
    order); ``root`` makes the stored file names relative. ``protocol`` None embeds each whole file as
    one clip at the embedding's rate (tools that must see files as another toolkit does, such as the
    throughput benchmark against fadtk; such sets are comparable only with sets made the same way).

    Raises:
        ValueError: no files.
        musicdiff.data.screening.TooManySkippedError: too many files skipped (the message lists them).
        musicdiff.data.screening.UnexpectedInputError: an unknown exception while reading a named file.
    """
    from tqdm.auto import tqdm

    from musicdiff.data.audio import load_audio, resample
    from musicdiff.data.screening import InputPolicy
    from musicdiff.metrics.embeddings import cache_key

    if not paths and screened is None:
        raise ValueError(f"{name}: no audio files to embed")
    if protocol is None:
        return _embed_whole_files(embedding, paths, name, cache_dir, root, progress)
    spec = protocol.to_dict()
    policy = policy or InputPolicy()
    screened = screened or screen_files(paths, protocol, name, policy, evaluated=evaluated)
    screened.log.check(policy.max_skip_fraction)
    files = screened.files
    if not files:
        raise ValueError(f"{name}: no usable audio files")
    index = [(f, k) for f, (_, _, n) in enumerate(files) for k in range(n)]
    available = len(index)
    if max_clips is not None and available > max_clips:
        pick = np.sort(np.random.default_rng(seed).choice(available, size=max_clips, replace=False))
        index = [index[i] for i in pick]
    names, hashes, clips = [], [], []
    audio, loaded = None, None
    for f, k in tqdm(index, desc=f"embed {name} ({embedding.name})", disable=not progress):
        path, sha, _ = files[f]

        def compute(f=f, k=k, path=path):
            nonlocal audio, loaded
            if loaded != f:  # decode a file once, only when one of its clips is not cached
                audio, loaded = protocol.clips(load_audio(path, protocol.sample_rate), path), f
            return np.asarray(embedding.embed(resample(audio[k], protocol.sample_rate, embedding.sample_rate)),
                              dtype=np.float32)

        clips.append(_cached(cache_dir, cache_key(sha, embedding, spec, k), compute))
        label = str(path.relative_to(root)) if root else str(path)
        names.append(f"{label}#{k}")
        hashes.append(sha)
    return EmbeddedSet(name, names, hashes, clips, embedding.name, embedding.weight_sha256, embedding.config, spec,
                       float(embedding.window_s), available, len(files), {"inputs": screened.log.to_dict()})


def _embed_whole_files(embedding, paths, name, cache_dir, root, progress) -> EmbeddedSet:
    import soundfile as sf
    from tqdm.auto import tqdm

    from musicdiff.data.audio import load_audio
    from musicdiff.hashing import sha256_file
    from musicdiff.metrics.embeddings import cache_key

    spec = {"whole_file": True, "sample_rate": embedding.sample_rate, "clip_s": None, "segmentation": "whole file"}
    names, hashes, clips, seconds = [], [], [], []
    for path in tqdm(paths, desc=f"embed {name} ({embedding.name})", disable=not progress):
        sha = sha256_file(path)
        seconds.append(float(sf.info(str(path)).duration))

        def compute(path=path):
            return np.asarray(embedding.embed(load_audio(path, embedding.sample_rate)), dtype=np.float32)

        clips.append(_cached(cache_dir, cache_key(sha, embedding, spec, 0), compute))
        names.append(f"{Path(path).relative_to(root) if root else path}#0")
        hashes.append(sha)
    return EmbeddedSet(name, names, hashes, clips, embedding.name, embedding.weight_sha256, embedding.config, spec,
                       float(embedding.window_s), len(paths), len(paths), {"seconds": seconds})
