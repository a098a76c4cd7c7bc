"""Embedding a set: screen its files with the bad-input policy, cut them into evaluation clips and embed
them, through a content-addressed cache.

:func:`screen_files` decodes each file once (in a few threads) at the protocol's sample rate and applies
``musicdiff.data.screening``; :func:`embed_files` cuts the used files into clips
(``EvaluationProtocol.clips``), optionally keeps a seeded subset of the clips, resamples each clip to the
embedding's rate and embeds batches of clips while the next files decode, through the cache (one ``.npy``
per clip, keyed by ``musicdiff.evaluation.embeddings.registry.cache_key``). The result is an
:class:`~musicdiff.evaluation.sets.EmbeddedSet`.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musicdiff.evaluation.protocol import EvaluationProtocol
from musicdiff.evaluation.sets import EmbeddedSet

#: Decoded audio (samples) that :func:`screen_files` keeps per set for the embedding pass, so that a
#: file is decoded once (float32: 4 bytes a sample; 2**26 is 256 MiB, about 50 minutes at 22050 Hz).
#: Files beyond the budget are decoded again when a clip of theirs is not cached.
KEEP_AUDIO_SAMPLES = 2 ** 26
#: Seconds of audio (at the embedding's rate) gathered before one call of ``embed_batch``.
BATCH_SECONDS = 96.0


def _workers() -> int:
    """Threads that decode and resample beside the network: the CPUs this process may use, 1 to 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _cache_read(cache_dir: Path | None, key: str) -> np.ndarray | None:
    """The cached embedding ``cache_dir/<key>.npy``, or None (no cache, or no entry): one ``np.load``,
    no separate stat."""
    if cache_dir is None:
        return None
    try:
        return np.load(Path(cache_dir) / f"{key}.npy")
    except FileNotFoundError:
        return None


def _cache_write(cache_dir: Path | None, key: str, vectors: np.ndarray) -> None:
    """Store ``vectors`` as ``cache_dir/<key>.npy`` atomically (temporary file + rename)."""
    if cache_dir is None:
        return
    path = Path(cache_dir) / f"{key}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy")
    os.close(fd)
    try:
        np.save(tmp, vectors)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _embed_clips(embedding, clips: list[np.ndarray]) -> list[np.ndarray]:
    """``embedding.embed_batch(clips)`` when the embedding has it, else ``embed`` clip by clip: a list
    of (frames_i, dim) float32."""
    batch = getattr(embedding, "embed_batch", None)
    out = batch(clips) if batch is not None else [embedding.embed(c) for c in clips]
    return [np.asarray(v, dtype=np.float32) for v in out]


def _pipelined(embedding, jobs: list, load, store, timings: dict | None, progress) -> None:
    """Run ``load(job)`` for every job in a thread pool (:func:`_workers` threads, a few jobs ahead,
    in order) while the network embeds what was loaded, :data:`BATCH_SECONDS` of audio per call.

    ``load(job)`` returns ``[(slot, audio at the embedding's rate), ...]`` and may add seconds to
    ``timings``; ``store(slot, vectors)`` receives each clip's (frames, dim) float32. Exceptions of
    ``load`` propagate in job order. ``timings["embed_s"]`` gets the network's wall seconds."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    limit = BATCH_SECONDS * embedding.sample_rate
    batch: list = []
    held = 0

    def flush():
        nonlocal batch, held
        if not batch:
            return
        start = time.perf_counter()
        vectors = _embed_clips(embedding, [audio for _, audio in batch])
        _add(timings, "embed_s", start)
        for (slot, _), v in zip(batch, vectors):
            store(slot, v)
        progress.update(len(batch))
        batch, held = [], 0

    workers = _workers()
    with ThreadPoolExecutor(workers, thread_name_prefix="musicdiff-decode") as pool:
        todo, pending = iter(jobs), deque()

        def refill():
            for job in todo:
                pending.append(pool.submit(load, job))
                if len(pending) >= 2 * workers:
                    return

        refill()
        try:
            while pending:
                items = pending.popleft().result()
                refill()
                for slot, audio in items:
                    batch.append((slot, audio))
                    held += len(audio)
                if held >= limit:
                    flush()
            flush()
        finally:
            for future in pending:
                future.cancel()


_TIMINGS_LOCK = threading.Lock()


def _add(timings: dict | None, key: str, start: float) -> None:
    """Add the seconds since ``start`` to ``timings[key]`` (from any thread)."""
    if timings is not None:
        with _TIMINGS_LOCK:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


@dataclass
class ScreenedFiles:
    """The files of one set that the bad-input policy lets through, and what it skipped.

    ``files[i]`` is ``(path, sha256, number of evaluation clips)``; ``log`` a
    ``musicdiff.data.screening.SkipLog`` whose ``total`` counts every file asked for. ``audio[i]``, when
    present, is file i's screened audio (samples,) float32 at the rate of ``protocol`` (the
    ``EvaluationProtocol.to_dict()`` it was screened under), kept for the embedding pass within
    :data:`KEEP_AUDIO_SAMPLES`."""

    name: str
    files: list[tuple[Path, str, int]]
    log: object
    audio: dict[int, np.ndarray] = field(default_factory=dict)
    protocol: dict | None = None

    @property
    def paths(self) -> list[Path]:
        return [path for path, _, _ in self.files]


def screen_files(paths: list[Path], protocol: EvaluationProtocol, name: str, policy=None, listing_skips=(),
                 progress: bool = False, keep_samples: int = KEEP_AUDIO_SAMPLES,
                 evaluated: bool = False) -> ScreenedFiles:
    """Screen audio files for one set under ``protocol`` with the bad-input policy
    (``musicdiff.data.screening``): each file is decoded once (in a few threads), checked and its
    evaluation clips counted; a file shorter than one clip (``protocol.clip_s`` seconds) is ``too_short``.

    Args:
        paths: audio files.
        protocol: the evaluation protocol (its rate, resampler and clip length).
        name: the set's name in messages.
        policy: ``musicdiff.data.screening.InputPolicy`` (default thresholds when None).
        listing_skips: ``Skip`` entries of a folder listing (``find_audio_files``), counted in the set.
        keep_samples: the screened audio of the first files, up to this many samples in all, is kept
            in the result (``ScreenedFiles.audio``) so that :func:`embed_files` does not decode them again.
        evaluated: an evaluated set (generated clips, a system): silent, DC-only and over-range files are
            flagged and scored instead of skipped (``musicdiff.data.screening``, "Two roles").

    Returns:
        :class:`ScreenedFiles`; nothing is checked against ``max_skip_fraction`` here (the caller calls
        ``log.check``), so that several sets can be screened before any is embedded.

    Raises:
        musicdiff.data.screening.UnexpectedInputError: an exception the policy does not know, naming the file
            (the first such file in ``paths`` order).
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from musicdiff.data.audio import BadAudioError
    from musicdiff.data.screening import InputPolicy, SkipLog, screen_file
    from musicdiff.data.hashing import sha256_file

    policy = policy or InputPolicy()
    log = SkipLog(name, total=len(paths) + len(listing_skips))
    log.extend(listing_skips)

    def check(path):
        try:
            screened = screen_file(path, protocol.sample_rate, policy, min_duration_s=protocol.clip_s,
                                   resampling=protocol.resampling, evaluated=evaluated)
            protocol.clips(screened.audio, path)  # too short after resampling to the protocol's rate
        except BadAudioError as error:
            return path, error, None
        return path, screened, sha256_file(path)

    files, kept, held = [], {}, 0
    pool = ThreadPoolExecutor(_workers(), thread_name_prefix="musicdiff-screen")
    try:
        for path, screened, sha in tqdm(pool.map(check, paths), total=len(paths), desc=f"check {name}",
                                        disable=not progress):
            if isinstance(screened, BadAudioError):
                log.skip(path, screened.reason, screened.detail)
                continue
            log.used(screened)
            if held + len(screened.audio) <= keep_samples:
                kept[len(files)] = screened.audio
                held += len(screened.audio)
            files.append((Path(path), sha, len(protocol.clips(screened.audio, path))))
    finally:  # on an error, the files not yet started are not screened
        pool.shutdown(wait=True, cancel_futures=True)
    return ScreenedFiles(name, files, log, kept, protocol.to_dict())


def embed_files(embedding, paths: list[Path], protocol: EvaluationProtocol | None, name: str,
                cache_dir: Path | None = None, root: Path | None = None, max_clips: int | None = None,
                seed: int = 0, progress: bool = True, policy=None,
                screened: ScreenedFiles | None = None, timings: dict | None = None,
                evaluated: bool = False) -> EmbeddedSet:
    """Embed the evaluation clips of audio files ``paths`` under ``protocol`` (see the module docstring).

    The files go through the bad-input policy first (:func:`screen_files`, in the role ``evaluated``, or
    its result ``screened`` when the caller screened them already): skipped files are listed in the set's
    ``extra["inputs"]`` and the set stops with ``TooManySkippedError`` when more than
    ``policy.max_skip_fraction`` of them were skipped, before anything is embedded.
    ``max_clips`` keeps a seeded uniform subset of all the files' clips (without replacement, in file
    order); ``root`` makes the stored file names relative. ``protocol`` None embeds each whole file as
    one clip at the embedding's rate (tools that must see files as another toolkit does, such as the
    throughput benchmark against fadtk; such sets are comparable only with sets made the same way).

    Speed (the result does not depend on it, up to float rounding of batched convolutions): every
    clip's cache entry is read first; only files with a missing clip are loaded: from the audio
    ``screened`` kept, else decoded again, in a few threads while the network embeds the clips
    loaded before, :data:`BATCH_SECONDS` of audio per ``embedding.embed_batch`` call (``embed``
    clip by clip for an embedding without it). ``timings``, when given, receives wall seconds
    ``cache_s`` (reading the cache), ``decode_s`` and ``resample_s`` (summed over the threads),
    ``embed_s`` (the network) and the count ``computed`` of clips embedded.

    Raises:
        ValueError: no files.
        musicdiff.data.screening.TooManySkippedError: too many files skipped (the message lists them).
        musicdiff.data.screening.UnexpectedInputError: an unknown exception while reading a named file.
    """
    from tqdm.auto import tqdm

    from musicdiff.data.screening import InputPolicy
    from musicdiff.evaluation.embeddings.registry import cache_key

    if not paths and screened is None:
        raise ValueError(f"{name}: no audio files to embed")
    if protocol is None:
        return _embed_whole_files(embedding, paths, name, cache_dir, root, progress, timings)
    spec = protocol.to_dict()
    policy = policy or InputPolicy()
    screened = screened or screen_files(paths, protocol, name, policy, evaluated=evaluated)
    screened.log.check(policy.max_skip_fraction)
    files = screened.files
    if not files:
        raise ValueError(f"{name}: no usable audio files")
    index, available = _pick_clips(files, max_clips, seed)
    keys = [cache_key(files[f][1], embedding, spec, k) for f, k in index]
    clips, missing = _read_cached(cache_dir, keys, index, timings)
    kept = screened.audio if screened.protocol == spec else {}
    load = _clip_loader(embedding, protocol, files, index, missing, kept, timings)

    def store(i, vectors):
        clips[i] = vectors
        _cache_write(cache_dir, keys[i], vectors)

    with tqdm(total=len(index), desc=f"embed {name} ({embedding.name})", disable=not progress) as bar:
        bar.update(len(index) - sum(len(v) for v in missing.values()))
        _pipelined(embedding, sorted(missing), load, store, timings, bar)
    if timings is not None:
        timings["computed"] = timings.get("computed", 0) + sum(len(v) for v in missing.values())
    names = [f"{str(files[f][0].relative_to(root)) if root else str(files[f][0])}#{k}" for f, k in index]
    hashes = [files[f][1] for f, _ in index]
    return EmbeddedSet(name, names, hashes, clips, embedding.name, embedding.weight_sha256, embedding.config, spec,
                       float(embedding.window_s), available, len(files), {"inputs": screened.log.to_dict()})


def _pick_clips(files: list, max_clips: int | None, seed: int) -> tuple[list[tuple[int, int]], int]:
    """``(file, clip)`` of every clip of ``files`` (each ``(path, sha256, n_clips)``), or a seeded uniform
    subset of ``max_clips`` of them (without replacement, in file order); and the number available."""
    index = [(f, k) for f, (_, _, n) in enumerate(files) for k in range(n)]
    available = len(index)
    if max_clips is not None and available > max_clips:
        pick = np.sort(np.random.default_rng(seed).choice(available, size=max_clips, replace=False))
        index = [index[i] for i in pick]
    return index, available


def _read_cached(cache_dir: Path | None, keys: list[str], index: list[tuple[int, int]], timings: dict | None,
                 ) -> tuple[list[np.ndarray | None], dict[int, list[int]]]:
    """Every clip's cache entry (None where absent) and, per file, the positions in ``index`` of its
    clips still to embed."""
    clips: list[np.ndarray | None] = [None] * len(index)
    missing: dict[int, list[int]] = {}  # file -> positions in index of its clips to embed
    start = time.perf_counter()
    for i, (f, _) in enumerate(index):
        clips[i] = _cache_read(cache_dir, keys[i])
        if clips[i] is None:
            missing.setdefault(f, []).append(i)
    _add(timings, "cache_s", start)
    return clips, missing


def _clip_loader(embedding, protocol: EvaluationProtocol, files: list, index: list[tuple[int, int]],
                 missing: dict[int, list[int]], kept: dict, timings: dict | None):
    """``load(f)``: the clips of file ``f`` still to embed, as ``[(position in index, audio at the
    embedding's rate)]``, from the audio screening ``kept`` or decoded again."""
    from musicdiff.data.audio import load_audio, resample

    rate = protocol.sample_rate

    def load(f):
        path = files[f][0]
        start = time.perf_counter()
        audio = kept.get(f)
        if audio is None:
            audio = load_audio(path, rate, resampling=protocol.resampling)
        _add(timings, "decode_s", start)
        cut = protocol.clips(audio, path)
        start = time.perf_counter()
        out = [(i, resample(cut[index[i][1]], rate, embedding.sample_rate, protocol.resampling)) for i in missing[f]]
        _add(timings, "resample_s", start)
        return out

    return load


def whole_file_spec(embedding) -> dict:
    """The protocol dict of sets of whole files (``embed_files`` with ``protocol`` None): each file is
    one clip, decoded, down-mixed and resampled to the embedding's rate with the evaluation protocol's
    resampler."""
    from musicdiff.data.audio import SOXR_HQ

    return {"whole_file": True, "sample_rate": embedding.sample_rate, "clip_s": None, "segmentation": "whole file",
            "resampler": SOXR_HQ.describe()}


def _embed_whole_files(embedding, paths, name, cache_dir, root, progress, timings=None) -> EmbeddedSet:
    """``embed_files`` with ``protocol`` None: each file whole, hashed, measured and (on a cache miss)
    decoded in a few threads while the network embeds the files loaded before."""
    from concurrent.futures import ThreadPoolExecutor

    import soundfile as sf
    from tqdm.auto import tqdm

    from musicdiff.data.audio import SOXR_HQ, decode_audio, downmix, resample
    from musicdiff.data.hashing import sha256_file
    from musicdiff.evaluation.embeddings.registry import cache_key

    spec = whole_file_spec(embedding)
    start = time.perf_counter()
    with ThreadPoolExecutor(_workers(), thread_name_prefix="musicdiff-hash") as pool:
        hashes = list(pool.map(sha256_file, paths))
        seconds = list(pool.map(lambda p: float(sf.info(str(p)).duration), paths))
    keys = [cache_key(sha, embedding, spec, 0) for sha in hashes]
    clips = [_cache_read(cache_dir, key) for key in keys]
    missing = [i for i, c in enumerate(clips) if c is None]
    _add(timings, "cache_s", start)

    def load(i):
        start = time.perf_counter()
        data, sr = decode_audio(paths[i])
        mono = downmix(data)
        _add(timings, "decode_s", start)
        start = time.perf_counter()
        audio = resample(mono, sr, embedding.sample_rate, SOXR_HQ)
        _add(timings, "resample_s", start)
        return [(i, audio)]

    def store(i, vectors):
        clips[i] = vectors
        _cache_write(cache_dir, keys[i], vectors)

    with tqdm(total=len(paths), desc=f"embed {name} ({embedding.name})", disable=not progress) as bar:
        bar.update(len(paths) - len(missing))
        _pipelined(embedding, missing, load, store, timings, bar)
    if timings is not None:
        timings["computed"] = timings.get("computed", 0) + len(missing)
    names = [f"{Path(path).relative_to(root) if root else path}#0" for path in paths]
    return EmbeddedSet(name, names, hashes, clips, embedding.name, embedding.weight_sha256, embedding.config, spec,
                       float(embedding.window_s), len(paths), len(paths), {"seconds": seconds})
