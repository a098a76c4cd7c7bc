"""One track of the prepare step (:func:`musicdiff.data.prepare.prepare_set`, steps 4-6 of its list):
padding a short track, cutting it into segments, dropping silent ones, choosing at most a given number,
and the clip rows of what is kept (the WAVs are written by the caller).

Deterministic: the only random choice is drawn from a generator seeded with ``(seed, 1, track SHA-256)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicdiff.data.audio import rms_dbfs

__all__ = ["Cutting", "clip_row", "cut_segments", "pad_track", "select_segments", "track_base"]


@dataclass(frozen=True)
class Cutting:
    """How tracks are cut: segment and hop in samples at ``sample_rate`` Hz, the silence threshold (dBFS),
    padding (``pad_short``, ``pad_mode``) and the per-track cap (``max_segments``, ``selection``)."""

    sample_rate: int
    seg_n: int
    hop_n: int
    silence_dbfs: float
    pad_short: bool
    pad_mode: str
    max_segments: int | None
    selection: str
    seed: int


def track_base(track: str, sha: str) -> str:
    """The clip id stem of a track: a slug of its file name (at most 48 characters) and 8 hex digits of its
    SHA-256."""
    slug = re.sub(r"[^a-z0-9]+", "_", Path(track).stem.lower()).strip("_")[:48] or "track"
    return f"{slug}-{sha[:8]}"


def pad_track(x: np.ndarray, cut: Cutting) -> tuple[np.ndarray, bool] | None:
    """``(audio, padded)``: ``x`` itself when it holds at least one segment; shorter, padded to exactly one
    segment when ``cut.pad_short`` (repeated from its start, or followed by zeros), else None (too short)."""
    if len(x) >= cut.seg_n:
        return x, False
    if not cut.pad_short:
        return None
    if cut.pad_mode == "repeat":
        return np.resize(x, cut.seg_n), True  # repeats x from its start
    return np.pad(x, (0, cut.seg_n - len(x))), True


def cut_segments(x: np.ndarray, cut: Cutting) -> tuple[list[tuple[int, int]], int]:
    """``(kept, n_silent)``: ``(index, start sample)`` of the segments that start every ``hop_n`` samples from
    0 (the incomplete tail dropped) and are not silent (RMS at or above ``silence_dbfs``), and the number of
    silent ones dropped."""
    kept, silent = [], 0
    for k, start in enumerate(range(0, len(x) - cut.seg_n + 1, cut.hop_n)):
        if rms_dbfs(x[start : start + cut.seg_n]) < cut.silence_dbfs:
            silent += 1
        else:
            kept.append((k, start))
    return kept, silent


def select_segments(kept: list[tuple[int, int]], sha: str, cut: Cutting) -> list[tuple[int, int]]:
    """At most ``cut.max_segments`` of ``kept``: the first ones (``selection="first"``) or a uniform subset
    without replacement, in order, drawn by a generator seeded with ``(seed, 1, track SHA-256)``."""
    if cut.max_segments is None or len(kept) <= cut.max_segments:
        return kept
    if cut.selection == "first":
        return kept[: cut.max_segments]
    rng = np.random.default_rng([cut.seed, 1, int(sha[:15], 16)])
    idx = np.sort(rng.choice(len(kept), size=cut.max_segments, replace=False))
    return [kept[i] for i in idx]


def clip_row(clip_id: str, row: dict, track: str, sha: str, screened, segment: np.ndarray, start: int,
             padded: bool, cut: Cutting) -> dict:
    """The manifest row of one clip (``musicdiff.data.prepare.CLIP_COLUMNS`` but ``clip``, ``sha256`` and
    ``split``, set when the clip is placed): ``row`` is the download manifest's, ``screened`` the track's
    :class:`~musicdiff.data.screening.ScreenedAudio`, ``segment`` the clip's samples."""
    return {
        "clip_id": clip_id,
        "track": track,
        "track_sha256": sha,
        "package": row.get("package", ""),
        "path_in_package": row.get("path_in_package", ""),
        "source_sha256": row.get("source_sha256", ""),
        "offset_s": start / cut.sample_rate,
        "duration_s": cut.seg_n / cut.sample_rate,
        "padded": padded,
        "source_sample_rate": screened.source_sample_rate,
        "source_channels": screened.channels,
        "peak": round(screened.peak, 6),
        "track_rms_dbfs": round(screened.rms_dbfs, 3),
        "rms_dbfs": round(rms_dbfs(segment), 3),
        "clipped_fraction": round(screened.clipped_fraction, 6),
        "dc_offset": round(screened.dc_offset, 6),
        "flags": ";".join(screened.flags),
    }
