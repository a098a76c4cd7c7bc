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

Everything depends only on the input files and the arguments (seeded NumPy
generators, sorted iteration, WAV files without time stamps), so two runs with
the same library versions on the same kind of CPU give byte-identical outputs
(float resampling may differ in the last bit on other hardware).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from musicdiff.data.audio import BadAudioError, rms_dbfs, write_float_wav
from musicdiff.data.screening import InputPolicy, SkipLog, TooManySkippedError, screen_file
from musicdiff.data.screening import SKIP_REASONS as SCREENING_REASONS
from musicdiff.data.summary import SUMMARY_FILE, prepared_split_summary, read_summary, write_summary
from musicdiff.data.hashing import replace_folder, sha256_file

__all__ = ["CLIP_COLUMNS", "SKIP_REASONS", "PrepareResult", "prepare_set"]

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
        skipped: number of raw files skipped, per reason (all of :data:`SKIP_REASONS`, zeros included).
        skipped_files: ``(track path relative to raw_dir, reason)`` for each skipped file.
        skip_log: the same skips with their details, the flag counts of the used tracks
            (:class:`~musicdiff.data.screening.SkipLog`).
        n_tracks: number of tracks that contributed at least one clip.
        n_clips: number of clips written.
        total_s: total duration of the clips, seconds.
        n_silent_segments: segments dropped because they were silent (their track was kept).
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


def _slug(path: str) -> str:
    stem = Path(path).stem.lower()
    return re.sub(r"[^a-z0-9]+", "_", stem).strip("_")[:48] or "track"


def _sha_int(sha: str) -> int:
    return int(sha[:15], 16)


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
    """Cut a downloaded set into fixed-length mono clips and write them with a manifest.

    Steps, for each manifest row in order of ``path``:

    1. check the raw file's SHA-256 against the manifest (a mismatch raises);
       a file identical to an earlier one is skipped as ``"duplicate"``;
    2. decode, down-mix (channel mean), resample to ``sample_rate`` and screen
       with :func:`~musicdiff.data.screening.screen_file` (the bad-input policy:
       ``min_duration_s``, ``silence_dbfs`` on the whole track, sample rate,
       non-finite and over-range samples, DC); failures are *skipped* and
       counted by reason with the file named; clipping, DC offset, a low band
       limit and more than two channels are flagged and counted; an exception
       the policy does not know stops the run naming the file;
    4. a track shorter than one segment is skipped as ``"too_short"``, unless
       ``pad_short`` is true: then it is padded to exactly one segment, by
       repeating it from its start (``pad_mode="repeat"``, the MusiCNN
       convention) or with trailing zeros (``pad_mode="zero"``, better for
       one-shot samples, whose decay into silence is part of the sound);
    5. segments of ``round(segment_s * sample_rate)`` samples start every
       ``round(hop_s * sample_rate)`` samples from 0; the incomplete tail is
       dropped; a segment whose RMS is below ``silence_dbfs`` is dropped
       (counted in ``n_silent_segments``); a track left with no segment is
       skipped as ``"silent"``;
    6. at most ``max_segments_per_track`` segments per track are kept: with
       ``per_track_selection="random"`` a uniform subset without replacement,
       drawn by a generator seeded with ``(seed, track SHA-256)`` (so it does
       not depend on the other tracks); with ``"first"`` the earliest ones
       (for one-shot samples: the attack rather than the decay).

    Then the surviving tracks are split: with ``heldout_fraction == 0`` every
    clip is ``"ref"``; otherwise the tracks (sorted by path) are shuffled with
    ``numpy.random.default_rng(seed)`` and the first
    ``round(heldout_fraction * n_tracks)`` (at least 1 and at most
    ``n_tracks - 1`` when there are two or more tracks) become ``"heldout"``,
    the rest ``"train"``.  With ``floor_fraction > 0`` the first
    ``round(floor_fraction * n_heldout)`` of the held-out tracks in that order (at
    least 1 and at most ``n_heldout - 1`` when two or more are held out) become
    ``"floor"``: held-out real music kept apart from the held-out *reference*
    set, scored as an evaluation set (the "real: held-out" floor of
    ``musicdiff.evaluation.floors``).  A track's clips are never in two splits.
    Finally at most ``max_clips`` clips are kept *per split* (a seeded uniform
    subset without replacement).

    Args:
        manifest: the download manifest (columns ``path``, ``sha256``,
            ``package``, ``path_in_package``, ``source_sha256``; see
            :data:`musicdiff.data.sources.MANIFEST_COLUMNS`).
        raw_dir: the folder the manifest's ``path`` column is relative to.
        out_dir: output folder; replaced atomically (built in a temporary folder
            beside it, then renamed).
        sample_rate: output sample rate, Hz.
        segment_s: clip length, seconds.
        hop_s: distance between clip starts, seconds (default ``segment_s``:
            no overlap).
        min_duration_s: tracks shorter than this (seconds) are ``"too_short"``.
            Default: ``segment_s`` (or 0 with ``pad_short``).
        pad_short: pad tracks shorter than one segment instead of skipping them.
        pad_mode: ``"repeat"`` (tile the track) or ``"zero"`` (append silence).
        silence_dbfs: silence threshold for tracks and segments (RMS, dBFS, full scale 1.0);
            it overrides ``policy.silence_dbfs``.
        max_segments_per_track: cap on clips per track (None: no cap).
        per_track_selection: ``"random"`` or ``"first"``, see step 6.
        max_clips: cap on clips per split (None: no cap).
        heldout_fraction: fraction of tracks put in ``"heldout"`` (0 <= f < 1).
        floor_fraction: fraction of the held-out tracks put in ``"floor"`` (0 <= f < 1).
        seed: seed of every random choice.
        policy: the bad-input policy (default :class:`~musicdiff.data.screening.InputPolicy`);
            its ``max_skip_fraction`` of the manifest's files may be skipped.
        progress: show a tqdm progress bar.

    Returns:
        :class:`PrepareResult`.

    Raises:
        ValueError: bad arguments, a manifest without the needed columns, or a
            raw file whose SHA-256 differs from the manifest.
        FileNotFoundError: a manifest entry missing from ``raw_dir``.
        musicdiff.data.screening.TooManySkippedError (a RuntimeError): no clip survived (the message
            lists the skipped files).
        musicdiff.data.screening.TooManySkippedError: more than ``policy.max_skip_fraction``
            of the files were skipped (the message lists them).
        musicdiff.data.screening.UnexpectedInputError: a file raised an exception the policy
            does not know (the message names it).
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if segment_s <= 0:
        raise ValueError(f"segment_s must be > 0, got {segment_s}")
    hop_s = segment_s if hop_s is None else hop_s
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
    if min_duration_s is None:
        min_duration_s = 0.0 if pad_short else segment_s
    policy = policy or InputPolicy()
    if policy.silence_dbfs != silence_dbfs:
        from dataclasses import replace

        policy = replace(policy, silence_dbfs=silence_dbfs)
    seg_n = int(round(segment_s * sample_rate))
    hop_n = int(round(hop_s * sample_rate))
    if seg_n < 1 or hop_n < 1:
        raise ValueError("segment_s and hop_s must each be at least one sample long")

    settings = {"sample_rate": sample_rate, "segment_s": segment_s, "hop_s": hop_s, "min_duration_s": min_duration_s,
                "pad_short": pad_short, "pad_mode": pad_mode, "silence_dbfs": silence_dbfs,
                "max_segments_per_track": max_segments_per_track, "per_track_selection": per_track_selection,
                "max_clips": max_clips, "heldout_fraction": heldout_fraction, "floor_fraction": floor_fraction,
                "seed": seed, "inputs": policy.to_dict()}
    rows = manifest.sort_values("path", kind="stable").to_dict("records")
    skipped = {r: 0 for r in SKIP_REASONS}
    skipped_files: list[tuple[str, str]] = []
    log = SkipLog(str(raw_dir), total=len(rows))
    n_silent_segments = 0
    seen_sha: set[str] = set()
    per_track: dict[str, list[dict]] = {}  # track path -> its clip rows (pending)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    pending = tmp / "_pending"
    pending.mkdir()

    def skip(track: str, reason: str, detail: str = "") -> None:
        skipped[reason] += 1
        skipped_files.append((track, reason))
        log.skip(track, reason, detail)

    try:
        for row in tqdm(rows, desc=f"prepare {out_dir.name}", unit="track", disable=not progress):
            track = str(row["path"])
            f = raw_dir / track
            if not f.is_file():
                raise FileNotFoundError(f"{f}: listed in the manifest but missing")
            sha = sha256_file(f)
            if str(row["sha256"]) and sha != str(row["sha256"]):
                raise ValueError(f"{f}: SHA-256 {sha} differs from the manifest's {row['sha256']}")
            if sha in seen_sha:
                skip(track, "duplicate")
                continue
            seen_sha.add(sha)
            try:
                screened = screen_file(f, sample_rate, policy, min_duration_s)
            except BadAudioError as e:
                skip(track, e.reason, e.detail)
                continue
            log.used(screened)
            x = screened.audio

            padded = False
            if len(x) < seg_n:
                if not pad_short:
                    skip(track, "too_short")
                    continue
                if pad_mode == "repeat":
                    x = np.resize(x, seg_n)  # repeats x from its start
                else:
                    x = np.pad(x, (0, seg_n - len(x)))
                padded = True
            starts = range(0, len(x) - seg_n + 1, hop_n)
            kept = []
            for k, start in enumerate(starts):
                if rms_dbfs(x[start : start + seg_n]) < silence_dbfs:
                    n_silent_segments += 1
                else:
                    kept.append((k, start))
            if not kept:
                skip(track, "silent", f"every segment below {silence_dbfs} dBFS")
                continue
            if max_segments_per_track is not None and len(kept) > max_segments_per_track:
                if per_track_selection == "first":
                    kept = kept[:max_segments_per_track]
                else:
                    rng = np.random.default_rng([seed, 1, _sha_int(sha)])
                    idx = np.sort(rng.choice(len(kept), size=max_segments_per_track, replace=False))
                    kept = [kept[i] for i in idx]

            base = f"{_slug(track)}-{sha[:8]}"
            clips = []
            for k, start in kept:
                clip_id = f"{base}-{k:04d}"
                write_float_wav(pending / f"{clip_id}.wav", x[start : start + seg_n], sample_rate)
                clips.append({
                    "clip_id": clip_id,
                    "track": track,
                    "track_sha256": sha,
                    "package": row.get("package", ""),
                    "path_in_package": row.get("path_in_package", ""),
                    "source_sha256": row.get("source_sha256", ""),
                    "offset_s": start / sample_rate,
                    "duration_s": seg_n / sample_rate,
                    "padded": padded,
                    "source_sample_rate": screened.source_sample_rate,
                    "source_channels": screened.channels,
                    "peak": round(screened.peak, 6),
                    "track_rms_dbfs": round(screened.rms_dbfs, 3),
                    "rms_dbfs": round(rms_dbfs(x[start : start + seg_n]), 3),
                    "clipped_fraction": round(screened.clipped_fraction, 6),
                    "dc_offset": round(screened.dc_offset, 6),
                    "flags": ";".join(screened.flags),
                })
            per_track[track] = clips

        if not per_track:
            raise TooManySkippedError(f"no usable clip in {raw_dir}; every file was skipped:\n  "
                                      + "\n  ".join(log.lines(50)))
        log.check(policy.max_skip_fraction)

        # Split tracks (never segments of one track).
        tracks = sorted(per_track)
        split_of = {t: "ref" for t in tracks}
        if heldout_fraction > 0:
            n = len(tracks)
            n_held = int(round(heldout_fraction * n))
            if n >= 2:
                n_held = min(max(n_held, 1), n - 1)
            order = np.random.default_rng(seed).permutation(n)
            held = {tracks[i] for i in order[:n_held]}
            split_of = {t: ("heldout" if t in held else "train") for t in tracks}
            if floor_fraction > 0:
                n_floor = int(round(floor_fraction * n_held))
                if n_held >= 2:
                    n_floor = min(max(n_floor, 1), n_held - 1)
                split_of.update({tracks[i]: "floor" for i in order[:n_floor]})

        by_split: dict[str, list[dict]] = {}
        for t in tracks:
            for c in per_track[t]:
                by_split.setdefault(split_of[t], []).append({**c, "split": split_of[t]})
        final: list[dict] = []
        for i, split in enumerate(sorted(by_split)):
            clips = sorted(by_split[split], key=lambda c: c["clip_id"])
            if max_clips is not None and len(clips) > max_clips:
                rng = np.random.default_rng([seed, 2, i])
                idx = np.sort(rng.choice(len(clips), size=max_clips, replace=False))
                clips = [clips[j] for j in idx]
            (tmp / split).mkdir()
            for c in clips:
                os.replace(pending / f"{c['clip_id']}.wav", tmp / split / f"{c['clip_id']}.wav")
                c["clip"] = f"{split}/{c['clip_id']}.wav"
                c["sha256"] = sha256_file(tmp / c["clip"])
            final.extend(clips)
        shutil.rmtree(pending)

        df = pd.DataFrame(final)[CLIP_COLUMNS].sort_values("clip", kind="stable").reset_index(drop=True)
        df.to_csv(tmp / "manifest.csv", index=False, lineterminator="\n")
        raw_summary = read_summary(raw_dir) if (raw_dir / SUMMARY_FILE).is_file() else None
        raw_table = sha256_file(raw_dir / "manifest.csv") if (raw_dir / "manifest.csv").is_file() else ""
        for split, rows in df.groupby("split", sort=True):
            rows.to_csv(tmp / split / "clips.csv", index=False, lineterminator="\n")
            summary = prepared_split_summary(tmp / split, rows, settings, raw_summary, raw_table, name=out_dir.name)
            write_summary(tmp / split / SUMMARY_FILE, summary)
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    return PrepareResult(
        manifest=df,
        skipped=skipped,
        skipped_files=skipped_files,
        n_tracks=int(df["track"].nunique()),
        n_clips=len(df),
        total_s=float(df["duration_s"].sum()),
        n_silent_segments=n_silent_segments,
        splits={k: int(v) for k, v in df["split"].value_counts().sort_index().items()},
        skip_log=log,
    )
