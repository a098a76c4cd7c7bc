"""The prepare step: decoded, resampled, fixed-length clips from a downloaded set.

:func:`prepare_set` reads the manifest written by
:func:`musicdiff.data.sources.download_set`, decodes each track to mono at
``sample_rate`` Hz, cuts it into segments of ``segment_s`` seconds, drops bad
files and silent segments, splits *tracks* into ``train``/``heldout`` (or
``ref``), subsamples deterministically, and writes::

    out_dir/<split>/<clip_id>.wav      mono float32 WAV at sample_rate
    out_dir/<split>/clips.csv          that split's rows of out_dir/manifest.csv
    out_dir/<split>/manifest.json      the split's summary (provenance, licences, clip count,
                                       durations; musicdiff.data.summary.prepared_split_summary)
    out_dir/manifest.csv               one row per clip (see CLIP_COLUMNS)

The steps, for each manifest row in order of ``path`` (:func:`_prepare_track`):

1. check the raw file's SHA-256 against the manifest (a mismatch raises); a file identical to an
   earlier one is skipped as ``"duplicate"``, its detail naming the file it duplicates;
2. decode, down-mix (channel mean), resample to ``sample_rate`` and screen with
   :func:`~musicdiff.data.screening.screen_file` (the bad-input policy: ``min_duration_s``,
   ``silence_dbfs`` on the whole track, sample rate, non-finite and over-range samples, DC);
   failures are *skipped* and counted by reason with the file named; clipping, DC offset, a low
   band limit and more than two channels are flagged and counted; an exception the policy does not
   know stops the run naming the file;
3. a track shorter than one segment is skipped as ``"too_short"``, unless ``pad_short`` is true:
   then it is padded to exactly one segment, by repeating it from its start (``pad_mode="repeat"``,
   the MusiCNN convention) or with trailing zeros (``pad_mode="zero"``, better for one-shot samples,
   whose decay into silence is part of the sound) (:func:`musicdiff.data.segments.pad_track`);
4. segments of ``round(segment_s * sample_rate)`` samples start every ``round(hop_s * sample_rate)``
   samples from 0; the incomplete tail is dropped; a segment whose RMS is below ``silence_dbfs`` is
   dropped (counted in ``n_silent_segments``); a track left with no segment is skipped as
   ``"silent"`` (:func:`musicdiff.data.segments.cut_segments`);
5. at most ``max_segments_per_track`` segments per track are kept: with
   ``per_track_selection="random"`` a uniform subset without replacement, drawn by a generator
   seeded with ``(seed, track SHA-256)`` (so it does not depend on the other tracks); with
   ``"first"`` the earliest ones (for one-shot samples: the attack rather than the decay)
   (:func:`musicdiff.data.segments.select_segments`).

Then (:func:`_check_losses`) the whole loss is checked: the entries the download already dropped
(dangling links, directories named like audio, unreadable files: the raw set's summary lists them) and
the files skipped here, over every entry of the source; more than ``policy.max_skip_fraction`` stops
the run listing each. The surviving tracks are split (:func:`musicdiff.data.splits.split_tracks`):
with ``heldout_fraction == 0`` every clip is ``"ref"``; otherwise the tracks (sorted by path) are
shuffled with ``numpy.random.default_rng(seed)`` and the first ``round(heldout_fraction * n_tracks)``
(at least 1 and at most ``n_tracks - 1`` when there are two or more tracks) become ``"heldout"``, the
rest ``"train"``.  With ``floor_fraction > 0`` the first ``round(floor_fraction * n_heldout)`` of the
held-out tracks in that order (at least 1 and at most ``n_heldout - 1`` when two or more are held out)
become ``"floor"``: held-out real music kept apart from the held-out *reference* set, scored as an
evaluation set (the "real: held-out" floor of ``musicdiff.evaluation.floors``).  A track's clips are
never in two splits. Finally at most ``max_clips`` clips are kept *per split* (a seeded uniform subset
without replacement; :func:`musicdiff.data.splits.place_clips`) and the tables are written
(:func:`musicdiff.data.splits.write_tables`).

Everything depends only on the input files and the arguments (seeded NumPy
generators, sorted iteration, WAV files without time stamps), so two runs with
the same library versions on the same kind of CPU give byte-identical outputs
(float resampling may differ in the last bit on other hardware).

Arguments of prepare_set:

    manifest: the download manifest (columns ``path``, ``sha256``, ``package``, ``path_in_package``,
        ``source_sha256``; see :data:`musicdiff.data.sources.MANIFEST_COLUMNS`).
    raw_dir: the folder the manifest's ``path`` column is relative to; the entries its summary lists
        as skipped at download (:func:`download_skips`) count as lost entries of the source.
    out_dir: output folder; replaced atomically (built in a temporary folder beside it, then renamed).
    sample_rate, segment_s, hop_s: output rate (Hz), clip length and distance between clip starts
        (seconds; ``hop_s`` defaults to ``segment_s``: no overlap).
    min_duration_s: tracks shorter than this (seconds) are ``"too_short"`` (default ``segment_s``, or 0
        with ``pad_short``).
    pad_short, pad_mode: pad tracks shorter than one segment (``"repeat"`` or ``"zero"``) instead of
        skipping them.
    silence_dbfs: silence threshold for tracks and segments (RMS, dBFS); overrides ``policy.silence_dbfs``.
    max_segments_per_track, per_track_selection: cap on clips per track (None: none), ``"random"`` or
        ``"first"``.
    max_clips: cap on clips per split (None: no cap).
    heldout_fraction, floor_fraction: fractions of tracks put in ``"heldout"`` and of those in
        ``"floor"`` (each in [0, 1)).
    seed: seed of every random choice.
    policy: the bad-input policy (default :class:`~musicdiff.data.screening.InputPolicy`); at most its
        ``max_skip_fraction`` of the source's entries may be lost (download and prepare together).
    progress: show a tqdm progress bar.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from musicdiff.data.audio import BadAudioError, write_float_wav
from musicdiff.data.hashing import replace_folder, sha256_file
from musicdiff.data.screening import InputPolicy, SkipLog, TooManySkippedError, screen_file
from musicdiff.data.screening import SKIP_REASONS as SCREENING_REASONS
from musicdiff.data.segments import Cutting, clip_row, cut_segments, pad_track, select_segments, track_base
from musicdiff.data.splits import place_clips, split_tracks, write_tables
from musicdiff.data.summary import SUMMARY_FILE, read_summary

__all__ = ["CLIP_COLUMNS", "SKIP_REASONS", "PrepareResult", "download_skips", "prepare_set"]

CLIP_COLUMNS = [
    "clip",  # path relative to out_dir, e.g. "train/<clip_id>.wav"
    "sha256",  # of the written clip file
    "split",  # "train" | "heldout" | "floor" | "ref"
    "track",  # the raw file, relative to raw_dir (the download manifest's `path`)
    "track_sha256",
    "package",
    "path_in_package",
    "source_sha256",
    "offset_s",  # start of the clip in the (resampled) track, seconds
    "duration_s",  # clip length, seconds (= segment_s up to one sample)
    "padded",  # True if the track was shorter than a segment and padded (pad_short)
    "source_sample_rate",  # Hz of the raw file; its band limit is half of it
    "source_channels",  # channels of the raw file before the mono downmix (their mean)
    "peak",  # the raw file's peak, fraction of full scale
    "track_rms_dbfs",  # the raw track's RMS level, dBFS (full scale 1.0)
    "rms_dbfs",  # the clip's RMS level, dBFS
    "clipped_fraction",  # of the raw track's samples at or above the clip level (musicdiff.data.screening)
    "dc_offset",  # the raw track's mean, fraction of full scale
    "flags",  # ";"-joined flags of the raw track (musicdiff.data.screening.FLAGS)
]

#: Why a raw file can be skipped: the reasons of the bad-input policy
#: (:data:`musicdiff.data.screening.SKIP_REASONS`), and ``"duplicate"``, a file whose
#: SHA-256 equals that of an earlier track of the manifest (kept once, so the
#: same audio can never be in both train and held-out).
SKIP_REASONS = SCREENING_REASONS + ("duplicate",)


@dataclass
class PrepareResult:
    """What :func:`prepare_set` produced.

    Attributes:
        manifest: one row per written clip, columns :data:`CLIP_COLUMNS`, sorted by ``clip``.
        skipped: number of raw files skipped by prepare, per reason (all of :data:`SKIP_REASONS`, zeros
            included).
        skipped_files: ``(track path relative to raw_dir, reason)`` for each file prepare skipped.
        skip_log: every entry of the source that was lost, with its detail: first the entries the download
            dropped (detail ``at download: ...``), then prepare's skips; ``total`` counts every entry of the
            source; the flag counts of the used tracks (:class:`~musicdiff.data.screening.SkipLog`).
        n_tracks: number of tracks that contributed at least one clip.
        n_clips: number of clips written.
        total_s: total duration of the clips, seconds.
        n_silent_segments: segments dropped because they were silent (their track was kept).
        download_skipped: entries of the source the download had already dropped.
    """

    manifest: pd.DataFrame
    skipped: dict[str, int]
    skipped_files: list[tuple[str, str]]
    n_tracks: int
    n_clips: int
    total_s: float
    n_silent_segments: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    skip_log: SkipLog | None = None
    download_skipped: int = 0


@dataclass
class _Tracks:
    """What the per-track steps gathered: the skips (counted per reason and in the log), the SHA-256 of the
    tracks seen (to the first track that had it), the pending clip rows per track, silent segments."""

    log: SkipLog
    skipped: dict[str, int] = field(default_factory=lambda: {r: 0 for r in SKIP_REASONS})
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    first_with: dict[str, str] = field(default_factory=dict)
    per_track: dict[str, list[dict]] = field(default_factory=dict)
    n_silent_segments: int = 0

    def skip(self, track: str, reason: str, detail: str = "") -> None:
        self.skipped[reason] += 1
        self.skipped_files.append((track, reason))
        self.log.skip(track, reason, detail)


def download_skips(raw_dir: str | os.PathLike) -> list[dict]:
    """The entries the download of ``raw_dir`` dropped (``{"path", "reason", "detail"}``, from the raw set's
    summary ``manifest.json``; ``[]`` when it has none or lists none)."""
    path = Path(raw_dir) / SUMMARY_FILE
    return list(read_summary(path).get("skipped_files") or []) if path.is_file() else []


def _check_arguments(manifest: pd.DataFrame, segment_s: float, hop_s: float, heldout_fraction: float,
                     floor_fraction: float, max_segments_per_track, max_clips, per_track_selection: str,
                     pad_mode: str) -> None:
    """Raise ``ValueError`` naming the first argument of :func:`prepare_set` out of range."""
    if segment_s <= 0:
        raise ValueError(f"segment_s must be > 0, got {segment_s}")
    if hop_s <= 0:
        raise ValueError(f"hop_s must be > 0, got {hop_s}")
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    if not 0.0 <= floor_fraction < 1.0:
        raise ValueError(f"floor_fraction must be in [0, 1), got {floor_fraction}")
    for name, v in (("max_segments_per_track", max_segments_per_track), ("max_clips", max_clips)):
        if v is not None and v < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {v}")
    missing = {"path", "sha256"} - set(manifest.columns)
    if missing:
        raise ValueError(f"manifest lacks columns {sorted(missing)}")
    if per_track_selection not in ("random", "first"):
        raise ValueError(f"per_track_selection must be 'random' or 'first', got {per_track_selection!r}")
    if pad_mode not in ("repeat", "zero"):
        raise ValueError(f"pad_mode must be 'repeat' or 'zero', got {pad_mode!r}")


def _temporary_folder(out_dir: Path) -> tuple[Path, Path]:
    """``(tmp, tmp/_pending)``: a fresh folder beside ``out_dir`` with the umask's mode, and its folder of
    clips not yet placed in a split."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    pending = tmp / "_pending"
    pending.mkdir()
    return tmp, pending


def _prepare_track(row: dict, raw_dir: Path, pending: Path, state: _Tracks, policy: InputPolicy,
                   min_duration_s: float, cut: Cutting) -> None:
    """Steps 1-5 of the module docstring for one manifest row: skip it (recorded in ``state``) or write its
    kept segments to ``pending`` and their rows to ``state.per_track``.

    Raises ``FileNotFoundError`` (the file is missing), ``ValueError`` (its SHA-256 differs from the
    manifest's) and :class:`~musicdiff.data.screening.UnexpectedInputError`."""
    track = str(row["path"])
    f = raw_dir / track
    if not f.is_file():
        raise FileNotFoundError(f"{f}: listed in the manifest but missing")
    sha = sha256_file(f)
    if str(row["sha256"]) and sha != str(row["sha256"]):
        raise ValueError(f"{f}: SHA-256 {sha} differs from the manifest's {row['sha256']}")
    if sha in state.first_with:
        state.skip(track, "duplicate", f"duplicate of {state.first_with[sha]} (same SHA-256 {sha[:12]})")
        return
    state.first_with[sha] = track
    try:
        screened = screen_file(f, cut.sample_rate, policy, min_duration_s)
    except BadAudioError as e:
        state.skip(track, e.reason, e.detail)
        return
    state.log.used(screened)
    padded = pad_track(screened.audio, cut)
    if padded is None:
        state.skip(track, "too_short")
        return
    x, was_padded = padded
    kept, silent = cut_segments(x, cut)
    state.n_silent_segments += silent
    if not kept:
        state.skip(track, "silent", f"every segment below {cut.silence_dbfs} dBFS")
        return
    base, clips = track_base(track, sha), []
    for k, start in select_segments(kept, sha, cut):
        clip_id, segment = f"{base}-{k:04d}", x[start : start + cut.seg_n]
        write_float_wav(pending / f"{clip_id}.wav", segment, cut.sample_rate)
        clips.append(clip_row(clip_id, row, track, sha, screened, segment, start, was_padded, cut))
    state.per_track[track] = clips


def _check_losses(state: _Tracks, raw_dir: Path, max_skip_fraction: float) -> None:
    """Raise :class:`~musicdiff.data.screening.TooManySkippedError` (its ``log`` attribute the skip log) when
    no clip survived, or when more than ``max_skip_fraction`` of the source's entries were lost at download
    and here together; the message lists them."""
    if not state.per_track:
        raise TooManySkippedError(f"no usable clip in {raw_dir}; every file was skipped:\n  "
                                  + "\n  ".join(state.log.lines(50)), log=state.log)
    state.log.check(max_skip_fraction)


def prepare_set(
    manifest: pd.DataFrame,
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    sample_rate: int = 22050,
    segment_s: float,
    hop_s: float | None = None,
    min_duration_s: float | None = None,
    pad_short: bool = False,
    pad_mode: str = "repeat",
    silence_dbfs: float = -60.0,
    max_segments_per_track: int | None = None,
    per_track_selection: str = "random",
    max_clips: int | None = None,
    heldout_fraction: float = 0.0,
    floor_fraction: float = 0.0,
    seed: int = 0,
    policy: InputPolicy | None = None,
    progress: bool = True,
) -> PrepareResult:
    """Cut a downloaded set into fixed-length mono clips and write them with a manifest: each track in order
    of ``path`` (:func:`_prepare_track`, steps 1-5 of the module docstring), the whole loss checked
    (:func:`_check_losses`), the tracks split (:func:`~musicdiff.data.splits.split_tracks`), the clips
    placed and capped per split (:func:`~musicdiff.data.splits.place_clips`), the tables written
    (:func:`~musicdiff.data.splits.write_tables`).

    The arguments are described in the module docstring ("Arguments of prepare_set").

    Returns :class:`PrepareResult`. Raises:
        ValueError: bad arguments, a manifest without the needed columns, or a raw file whose SHA-256
            differs from the manifest.
        FileNotFoundError: a manifest entry missing from ``raw_dir``.
        musicdiff.data.screening.TooManySkippedError (a RuntimeError): no clip survived, or more than
            ``policy.max_skip_fraction`` of the source's entries were lost; the message lists them and the
            error's ``log`` is the :class:`~musicdiff.data.screening.SkipLog` (for the stage's record).
        musicdiff.data.screening.UnexpectedInputError: a file raised an exception the policy does not
            know (the message names it).
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    hop_s = segment_s if hop_s is None else hop_s
    _check_arguments(manifest, segment_s, hop_s, heldout_fraction, floor_fraction, max_segments_per_track,
                     max_clips, per_track_selection, pad_mode)
    min_duration_s = (0.0 if pad_short else segment_s) if min_duration_s is None else min_duration_s
    policy = replace(policy or InputPolicy(), silence_dbfs=silence_dbfs)  # the argument overrides the policy's
    cut = Cutting(sample_rate, int(round(segment_s * sample_rate)), int(round(hop_s * sample_rate)), silence_dbfs,
                  pad_short, pad_mode, max_segments_per_track, per_track_selection, seed)
    if cut.seg_n < 1 or cut.hop_n < 1:
        raise ValueError("segment_s and hop_s must each be at least one sample long")
    settings = {"sample_rate": sample_rate, "segment_s": segment_s, "hop_s": hop_s, "min_duration_s": min_duration_s,
                "pad_short": pad_short, "pad_mode": pad_mode, "silence_dbfs": silence_dbfs,
                "max_segments_per_track": max_segments_per_track, "per_track_selection": per_track_selection,
                "max_clips": max_clips, "heldout_fraction": heldout_fraction, "floor_fraction": floor_fraction,
                "seed": seed, "inputs": policy.to_dict()}
    rows = manifest.sort_values("path", kind="stable").to_dict("records")
    dropped = download_skips(raw_dir)
    state = _Tracks(SkipLog(str(raw_dir), total=len(rows) + len(dropped)))
    for r in dropped:
        state.log.skip(r["path"], r["reason"], f"at download: {r['detail']}" if r.get("detail") else "at download")

    tmp, pending = _temporary_folder(out_dir)
    try:
        for row in tqdm(rows, desc=f"prepare {out_dir.name}", unit="track", disable=not progress):
            _prepare_track(row, raw_dir, pending, state, policy, min_duration_s, cut)
        _check_losses(state, raw_dir, policy.max_skip_fraction)
        split_of = split_tracks(sorted(state.per_track), heldout_fraction, floor_fraction, seed)
        placed = place_clips(state.per_track, split_of, tmp, pending, max_clips, seed)
        shutil.rmtree(pending)
        df = placed[CLIP_COLUMNS].sort_values("clip", kind="stable").reset_index(drop=True)
        write_tables(df, tmp, raw_dir, settings, out_dir.name)
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrepareResult(manifest=df, skipped=state.skipped, skipped_files=state.skipped_files,
                         n_tracks=int(df["track"].nunique()), n_clips=len(df), total_s=float(df["duration_s"].sum()),
                         n_silent_segments=state.n_silent_segments,
                         splits={k: int(v) for k, v in df["split"].value_counts().sort_index().items()},
                         skip_log=state.log, download_skipped=len(dropped))
