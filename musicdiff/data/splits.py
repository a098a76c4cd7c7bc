"""The splits of the prepare step (:func:`musicdiff.data.prepare.prepare_set`): tracks into ``train`` /
``heldout`` / ``floor`` (or ``ref``), at most ``max_clips`` clips per split, and the files of a prepared
set (each split's WAVs, ``clips.csv`` and ``manifest.json``; the set's ``manifest.csv``).

Deterministic: the track order is drawn with ``numpy.random.default_rng(seed)``, each split's cap with a
generator seeded with ``(seed, 2, index of the split in sorted order)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from musicdiff.data.hashing import sha256_file
from musicdiff.data.summary import SUMMARY_FILE, prepared_split_summary, read_summary, write_summary

__all__ = ["place_clips", "split_tracks", "write_tables"]


def split_tracks(tracks: list[str], heldout_fraction: float, floor_fraction: float, seed: int) -> dict[str, str]:
    """``{track: split}`` for ``tracks`` (sorted): every one ``"ref"`` when ``heldout_fraction`` is 0; else
    the first ``round(heldout_fraction * n)`` of a seeded permutation (at least 1 and at most n - 1 for two or
    more tracks) ``"heldout"``, the rest ``"train"``, and the first ``round(floor_fraction * n_heldout)`` of
    the held-out ones in that order (at least 1 and at most n_heldout - 1 for two or more) ``"floor"``."""
    split_of = {t: "ref" for t in tracks}
    if heldout_fraction <= 0:
        return split_of
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
    return split_of


def place_clips(per_track: dict[str, list[dict]], split_of: dict[str, str], tmp: Path, pending: Path,
                max_clips: int | None, seed: int) -> pd.DataFrame:
    """Move each kept clip's WAV from ``pending`` into ``tmp/<split>/`` and return the manifest (``clip``,
    ``sha256`` and ``split`` filled in), sorted by ``clip``; at most ``max_clips`` per split (a seeded
    uniform subset without replacement, in clip-id order), in the order placed: splits sorted, clip ids
    sorted within each."""
    by_split: dict[str, list[dict]] = {}
    for t in sorted(per_track):
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
    return pd.DataFrame(final)


def write_tables(df: pd.DataFrame, tmp: Path, raw_dir: Path, settings: dict, name: str) -> None:
    """Write ``tmp/manifest.csv`` (``df``) and, per split, ``tmp/<split>/clips.csv`` and its summary
    ``manifest.json`` (:func:`musicdiff.data.summary.prepared_split_summary`, with the raw set's summary and
    the SHA-256 of its ``manifest.csv`` when ``raw_dir`` has them)."""
    df.to_csv(tmp / "manifest.csv", index=False, lineterminator="\n")
    raw_summary = read_summary(raw_dir) if (raw_dir / SUMMARY_FILE).is_file() else None
    raw_table = sha256_file(raw_dir / "manifest.csv") if (raw_dir / "manifest.csv").is_file() else ""
    for split, rows in df.groupby("split", sort=True):
        rows.to_csv(tmp / split / "clips.csv", index=False, lineterminator="\n")
        summary = prepared_split_summary(tmp / split, rows, settings, raw_summary, raw_table, name=name)
        write_summary(tmp / split / SUMMARY_FILE, summary)
