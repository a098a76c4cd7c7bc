"""Benchmark against fadtk on the same inputs: FAD computation time and agreement, the effect of
fadtk's float16 embedding storage, and embedding throughput of the same network through both
pipelines.

Everything here measures; nothing asserts. ``pipelines/bench.py`` (the DVC ``bench`` stage) logs the
numbers to MLflow and the report writes ``reports/tables/bench.md`` from that run.

Timings are wall-clock medians (``time.perf_counter``) of ``repeats`` runs after one warm-up, on
whatever device the process has; record the device and thread count beside them.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musicdiff.evaluation.metrics.fad import GaussianStats, frechet_distance, gaussian_stats


def median_time(fn, repeats: int = 5) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls after one warm-up call."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@dataclass(frozen=True)
class FrechetComparison:
    """One FAD computed by musicdiff and by fadtk from the same statistics (values; seconds).

    ``ours_cached_s``: one distance with the reference already factored (as for every bootstrap
    resample, FAD-inf subset and further evaluation set); ``factor_s``: factoring the reference once
    (``GaussianStats.factor``, one ``eigh``); ``ours_s``: one distance from scratch, factoring included;
    ``fadtk_s``: ``calc_frechet_distance``."""

    label: str
    dim: int
    ours: float
    fadtk: float
    ours_s: float
    fadtk_s: float
    ours_cached_s: float = float("nan")
    factor_s: float = float("nan")

    @property
    def abs_diff(self) -> float:
        return abs(self.ours - self.fadtk)

    @property
    def rel_diff(self) -> float:
        return abs(self.ours - self.fadtk) / abs(self.fadtk)


def compare_frechet(label: str, ref: GaussianStats, evl: GaussianStats, repeats: int = 5) -> FrechetComparison:
    """Time and compare ``musicdiff.evaluation.metrics.fad.frechet_distance`` (reference factor ``F`` from one
    ``eigh``, then ``eigvalsh(F^T C_e F)``) with ``fadtk.fad.calc_frechet_distance`` (scipy ``sqrtm``
    and ``eig`` of ``C_r C_e``) on the same ``(mu, cov)`` pair: musicdiff with the factor cached, the
    factoring alone, musicdiff from scratch (fresh ``GaussianStats``, factoring included) and fadtk."""
    from fadtk.fad import calc_frechet_distance

    def fresh() -> GaussianStats:
        return GaussianStats(ref.mu, ref.cov, ref.n)

    ours = frechet_distance(ref, evl)[0]
    theirs = float(calc_frechet_distance(ref.mu, ref.cov, evl.mu, evl.cov))
    return FrechetComparison(
        label=label, dim=int(ref.mu.shape[0]), ours=float(ours), fadtk=theirs,
        ours_s=median_time(lambda: frechet_distance(fresh(), evl), repeats),
        fadtk_s=median_time(lambda: calc_frechet_distance(ref.mu, ref.cov, evl.mu, evl.cov), repeats),
        ours_cached_s=median_time(lambda: frechet_distance(ref, evl), repeats),
        factor_s=median_time(lambda: fresh().factor, repeats),
    )


@dataclass(frozen=True)
class BootstrapTiming:
    """Wall time of one FAD bootstrap: ``n_bootstrap`` resamples of ``clips`` clips of
    ``frames_per_clip`` frames in ``dim`` dimensions against a reference already factored.

    ``seconds``: the whole :func:`~musicdiff.evaluation.metrics.fad.bootstrap_fads` (projection included);
    ``direct_per_resample_s``: one resample the direct way (stack the drawn clips' frames, their
    covariance, ``frechet_distance`` with the cached factor), median over ``direct_resamples``."""

    dim: int
    clips: int
    frames_per_clip: int
    n_bootstrap: int
    seconds: float
    direct_per_resample_s: float
    direct_resamples: int

    @property
    def per_resample_s(self) -> float:
        return self.seconds / self.n_bootstrap


def time_bootstrap(ref: GaussianStats, clips: int = 400, frames_per_clip: int = 4, n_bootstrap: int = 1000,
                   direct_resamples: int = 20, seed: int = 0) -> BootstrapTiming:
    """Time ``bootstrap_fads`` with ``n_bootstrap`` resamples of ``clips`` random clips (frames drawn from
    N(ref.mu + 0.1, ref.cov), (frames_per_clip, dim) each) against ``ref`` (mu (dim,), cov (dim, dim)),
    factored beforehand, and one direct resample (see :class:`BootstrapTiming`)."""
    from musicdiff.evaluation.metrics.fad import bootstrap_fads

    rng = np.random.default_rng(seed)
    factor = ref.factor
    dim = int(ref.mu.shape[0])
    frames = ref.mu + 0.1 + rng.normal(size=(clips * frames_per_clip, factor.shape[1])) @ factor.T
    eval_clips = list(frames.reshape(clips, frames_per_clip, dim))
    start = time.perf_counter()
    bootstrap_fads(ref, eval_clips, n_bootstrap, np.random.default_rng(seed))
    seconds = time.perf_counter() - start
    draw = np.random.default_rng(seed)

    def direct() -> float:
        pick = draw.integers(0, clips, clips)
        return frechet_distance(ref, gaussian_stats(np.concatenate([eval_clips[i] for i in pick])))[0]

    return BootstrapTiming(dim=dim, clips=clips, frames_per_clip=frames_per_clip, n_bootstrap=n_bootstrap,
                           seconds=seconds, direct_per_resample_s=median_time(direct, direct_resamples),
                           direct_resamples=direct_resamples)


def float16_effect(ref_frames: np.ndarray, eval_frames: np.ndarray) -> tuple[float, float]:
    """FAD from float32 embeddings and from the same embeddings rounded to float16 (fadtk stores
    every embedding as float16, ``ModelLoader.get_embedding``): ``(fad_float32, fad_float16)``."""
    exact = frechet_distance(gaussian_stats(ref_frames), gaussian_stats(eval_frames))[0]
    rounded = frechet_distance(gaussian_stats(ref_frames.astype(np.float16)),
                               gaussian_stats(eval_frames.astype(np.float16)))[0]
    return float(exact), float(rounded)


@dataclass(frozen=True)
class ThroughputComparison:
    """Seconds of audio embedded per wall-clock second, through musicdiff and through fadtk (medians of
    ``repeats`` runs, the two interleaved).

    ``stages``: musicdiff's seconds per stage in its median run (``embed_files``'s ``timings``:
    ``decode_s`` and ``resample_s`` summed over its decoding threads, which overlap ``embed_s``, the
    network). ``network_per_file_s``: the network alone on the same audio, decoded and resampled
    beforehand, one file per call as fadtk calls it; ``network_batched_s``: the same through
    ``embed_batch`` (all files in one call) when the embedding has it. What no pipeline around this
    network can beat is the faster of the two: :attr:`ceiling` is fadtk's time over it."""

    embedding: str
    clips: int
    audio_s: float
    ours_s: float
    fadtk_s: float
    stages: dict = field(default_factory=dict)
    network_per_file_s: float = float("nan")
    network_batched_s: float = float("nan")
    repeats: int = 1

    @property
    def ours_x_realtime(self) -> float:
        return self.audio_s / self.ours_s

    @property
    def fadtk_x_realtime(self) -> float:
        return self.audio_s / self.fadtk_s

    @property
    def ceiling(self) -> float:
        """fadtk's time over the network's own time (its faster way): the most any pipeline of this
        network can be faster than fadtk's, as a ratio."""
        return self.fadtk_s / float(np.nanmin([self.network_per_file_s, self.network_batched_s]))


class FadtkCannotDecode(RuntimeError):
    """fadtk's audio loading has no decoder on this machine."""


def fadtk_resampling() -> bool:
    """Which of fadtk's two decoders works here: ``True`` for torchaudio (torchaudio >= 2.9 needs
    torchcodec with FFmpeg), ``False`` for the SoX command line. Raises :class:`FadtkCannotDecode`
    when neither is available, naming both."""
    import importlib.util

    if importlib.util.find_spec("torchcodec") is not None:
        return True
    if shutil.which("sox"):
        return False
    raise FadtkCannotDecode("fadtk cannot decode audio here: its torchaudio path needs torchcodec with FFmpeg, its "
                            "other path the `sox` command (Debian package sox); install one to measure fadtk's "
                            "throughput")


def compare_throughput(embedding, loader, files: list[Path], audio_s: float, repeats: int = 3) -> ThroughputComparison:
    """Embed ``files`` (total ``audio_s`` seconds) from scratch with musicdiff's ``embed_files`` (the
    object ``embedding``, no cache) and with fadtk's ``FrechetAudioDistance.cache_embedding_file``
    (``loader``: a fadtk ``ModelLoader`` whose model is the same network, already loaded), ``repeats``
    times each, interleaved, after one warm-up of each; each run on its own fresh copy of the files so
    neither finds the other's caches. Decoding, resampling and writing the results are included on both
    sides, as a user would run them. musicdiff embeds whole files (``protocol`` None, as fadtk sees them)
    through the same fast path as protocol clips: decoding in threads beside the network, many files per
    forward pass. Then the network alone on the decoded audio (see :class:`ThroughputComparison`). Give
    WAV files: fadtk hands other formats to FFmpeg. Raises :class:`FadtkCannotDecode` when fadtk has no
    decoder here."""
    import fadtk.fad
    from fadtk.fad import FrechetAudioDistance

    from musicdiff.data.audio import SOXR_HQ, load_audio
    from musicdiff.evaluation.engine import embed_files

    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    fadtk.fad.TORCHAUDIO_RESAMPLING = fadtk_resampling()
    fad = FrechetAudioDistance(loader, audio_load_worker=1, load_model=False)
    fad.loaded = True

    def fresh_copy(tmp: str, label: str) -> list[Path]:
        folder = Path(tmp) / label
        folder.mkdir()
        for f in files:
            shutil.copy(f, folder / Path(f).name)
        return sorted(folder.iterdir())

    def ours(tmp: str) -> tuple[float, dict]:
        copies, stages = fresh_copy(tmp, "ours"), {}
        start = time.perf_counter()
        embed_files(embedding, copies, None, "bench", cache_dir=None, progress=False,
                    timings=stages)  # whole files, as fadtk
        return time.perf_counter() - start, stages

    def theirs(tmp: str) -> float:
        copies = fresh_copy(tmp, "fadtk")
        start = time.perf_counter()
        for f in copies:
            fad.cache_embedding_file(f)
        return time.perf_counter() - start

    runs_ours, runs_fadtk = [], []
    for i in range(repeats + 1):  # the first of each is the warm-up
        with tempfile.TemporaryDirectory() as tmp:
            result = ours(tmp)
            seconds = theirs(tmp)
        if i:
            runs_ours.append(result)
            runs_fadtk.append(seconds)
    runs_ours.sort(key=lambda r: r[0])
    ours_s, stages = runs_ours[len(runs_ours) // 2]

    audios = [load_audio(f, embedding.sample_rate, resampling=SOXR_HQ) for f in files]
    per_file = median_time(lambda: [embedding.embed(a) for a in audios], repeats)
    batched = (median_time(lambda: embedding.embed_batch(audios), repeats)
               if hasattr(embedding, "embed_batch") else float("nan"))
    return ThroughputComparison(embedding=embedding.name, clips=len(files), audio_s=audio_s, ours_s=ours_s,
                                fadtk_s=float(np.median(runs_fadtk)),
                                stages={k: float(v) for k, v in stages.items()
                                        if k in ("decode_s", "resample_s", "embed_s")},
                                network_per_file_s=per_file, network_batched_s=batched, repeats=repeats)
