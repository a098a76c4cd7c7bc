"""Set summaries: one machine-readable ``manifest.json`` beside the audio of every set.

The per-file tables (``manifest.csv`` of a download, ``clips.csv`` of a prepared split) say where
each file came from; the summary says what the set *is*, in numbers a report or a reader can check
without opening the audio:

* ``provenance`` -- where the audio came from: for Debian packages the package name, version,
  SHA-256 of the .deb, the include/exclude globs and every path inside the package (an archive
  member is written ``a.pk3!member``, summed stems ``;``-joined); for a local folder its path; for
  an online set its URL, revision and downloaded files (see :mod:`musicdiff.data.online`); for a
  rendered set the package versions and SoundFont (see :mod:`musicdiff.data.rendered`); for files
  of an installed Python package its name, version and folder;
* ``licences`` -- per package, the licence short names of its kept ``copyright`` file when that
  file is in Debian's machine-readable format (DEP-5), else ``"see licences/<pkg>/copyright"``;
* ``audio`` -- clip count, sample rate(s), channel counts, total frames and seconds, and the
  minimum / median / mean / maximum clip duration (see :func:`audio_stats`);
* ``table`` -- path, SHA-256 and row count of the per-file table;
* ``skipped``, ``skipped_files`` (downloads only) -- the entries that matched the set's globs but
  could not be used, counted per reason and listed as ``{"path", "reason", "detail"}`` (see
  :mod:`musicdiff.data.sources.files`).

Nothing time- or machine-dependent is written (no timestamps, no timings), so the same input gives
the same bytes; files are replaced atomically (:func:`write_summary`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import soundfile as sf

from musicdiff.data.hashing import sha256_file

__all__ = [
    "SCHEMA",
    "SUMMARY_FILE",
    "audio_stats",
    "licence_names",
    "licence_entry",
    "prepared_split_summary",
    "raw_set_summary",
    "read_summary",
    "summary_metrics",
    "summary_tags",
    "write_summary",
]

SUMMARY_FILE = "manifest.json"
SCHEMA = "musicdiff.set-summary/1"
_DEP5 = re.compile(r"^Format:\s*\S*(copyright-format|dep5)", re.IGNORECASE | re.MULTILINE)


# -------------------------------------------------------------------------------------- licences


def licence_names(copyright_file: str | os.PathLike) -> tuple[list[str], str | None]:
    """Licence short names declared in a Debian ``copyright`` file.

    Only the machine-readable format (DEP-5, ``Format: .../copyright-format/1.0/``) is parsed: the
    first line of every ``License:`` field of the header and ``Files:`` paragraphs, in order of first
    appearance (an expression such as ``GPL-2+ or CC-BY-SA-3.0`` is kept as written). Free-form
    files are not guessed at.

    Returns:
        ``(names, files_star)``: the names (``[]`` for a free-form file) and the licence of the
        ``Files: *`` paragraph (the package's default; ``None`` if there is none).
    """
    text = Path(copyright_file).read_text(encoding="utf-8", errors="replace")
    if not _DEP5.search(text.split("\n\n", 1)[0]):
        return [], None
    names: list[str] = []
    files_star = None
    for para in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t"):
                if key is not None:
                    fields[key] += "\n" + line
                continue
            if ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "license" not in fields or not ("files" in fields or "format" in fields):
            continue  # a stand-alone License paragraph holds a licence text, not a declaration
        name = fields["license"].split("\n", 1)[0].strip()
        if name and name not in names:
            names.append(name)
        if fields.get("files", "").split() == ["*"] and files_star is None:
            files_star = name or None
    return names, files_star


def licence_entry(set_dir: str | os.PathLike, copyright_rel: str) -> dict:
    """Licence record of one package: ``{"copyright_file", "licences", "files_star"}``.

    ``licences`` is the list of :func:`licence_names`, or the string
    ``"see licences/<pkg>/copyright"`` when the file is free-form (or missing: then
    ``copyright_file`` is ``""`` and ``licences`` is ``"unknown"``).
    """
    if not copyright_rel:
        return {"copyright_file": "", "licences": "unknown", "files_star": None}
    names, star = licence_names(Path(set_dir) / copyright_rel)
    return {"copyright_file": copyright_rel, "licences": names or f"see {copyright_rel}", "files_star": star}


# ----------------------------------------------------------------------------------------- audio


def _round(x: float) -> float:
    return float(round(float(x), 6))


def audio_stats(files: Iterable[str | os.PathLike]) -> dict:
    """Size and duration statistics of audio files, read from their headers (libsndfile).

    Returns:
        ``{"n_clips", "n_unreadable", "sample_rate", "sample_rates", "channels", "total_frames",
        "total_s", "total_min", "duration_s": {"min", "median", "mean", "max"}}``.
        ``sample_rate`` is the common rate in Hz, or ``None`` when the files differ (then
        ``sample_rates`` maps each rate to its file count); ``total_frames`` is the sum of every
        file's frame count (samples per channel) at its own rate; durations are seconds. Files
        libsndfile cannot open are counted in ``n_unreadable`` and left out of every other number.
    """
    frames, durations, rates, chans, bad = [], [], {}, {}, 0
    for f in files:
        try:
            info = sf.info(str(f))
        except Exception:
            bad += 1
            continue
        frames.append(int(info.frames))
        durations.append(info.frames / float(info.samplerate))
        rates[int(info.samplerate)] = rates.get(int(info.samplerate), 0) + 1
        chans[int(info.channels)] = chans.get(int(info.channels), 0) + 1
    d = np.asarray(durations, dtype=np.float64)
    stats = {k: (_round(fn(d)) if d.size else None)
             for k, fn in (("min", np.min), ("median", np.median), ("mean", np.mean), ("max", np.max))}
    return {
        "n_clips": len(frames),
        "n_unreadable": bad,
        "sample_rate": next(iter(rates)) if len(rates) == 1 else None,
        "sample_rates": {str(k): v for k, v in sorted(rates.items())},
        "channels": {str(k): v for k, v in sorted(chans.items())},
        "total_frames": int(sum(frames)),
        "total_s": _round(d.sum()),
        "total_min": _round(d.sum() / 60.0),
        "duration_s": stats,
    }


# ------------------------------------------------------------------------------------- summaries


def _table(set_dir: Path, rel: str, rows: int) -> dict:
    return {"path": rel, "sha256": sha256_file(set_dir / rel), "rows": int(rows)}


def _package_licence(name: str, licence_file: Path) -> str:
    """The licence an installed distribution declares (``License-Expression``, ``License`` or its
    ``License ::`` classifiers), else the title line of its kept licence file, else ``"unknown"``."""
    from importlib import metadata

    meta = metadata.metadata(name)
    declared = meta.get("License-Expression") or meta.get("License")
    if declared and len(declared) < 80:
        return declared
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if classifiers:
        return "; ".join(classifiers)
    if licence_file.is_file():
        title = next((line.strip() for line in licence_file.read_text(errors="replace").splitlines() if line.strip()), "")
        if 0 < len(title) < 80:
            return f"{title} (title of {licence_file.name})"
    return "unknown"


def raw_set_summary(set_dir: str | os.PathLike, spec: dict, manifest: pd.DataFrame, *,
                    name: str | None = None, record: dict | None = None, kind: str | None = None,
                    skipped: Iterable[dict] = ()) -> dict:
    """Summary of a downloaded set (``data/raw/<set>``): see the module docstring.

    Args:
        set_dir: the set's folder (``manifest.csv`` and the files of ``manifest['path']`` inside).
        spec: the normalised set spec (:func:`musicdiff.data.sources.download_set`'s ``debian``,
            ``local``, ``online``, ``rendered`` or ``python_package`` form).
        manifest: the set's ``manifest.csv`` (columns :data:`musicdiff.data.sources.MANIFEST_COLUMNS`).
        name: the set's name (default: the folder's name).
        record: for an online or rendered set, what its loader recorded (URL, revisions, versions,
            checksums, ``licence``).
        kind: the spec's source kind (default: the first of ``debian``, ``online``, ``rendered``,
            ``python_package``, ``local`` in ``spec``, else its first key).  A kind other than those
            five is described like an online set: ``{"kind", "package": spec[kind], **record, "spec"}``.
        skipped: the matching entries the download could not use, ``{"path", "reason", "detail"}``
            each; written as ``skipped_files`` and counted per reason as ``skipped``.

    Raises:
        FileNotFoundError: ``manifest.csv`` or a listed file is missing.
    """
    set_dir = Path(set_dir)
    provenance: list[dict] = []
    licences: dict[str, dict] = {}
    skipped = list(skipped)
    if kind is None:
        kind = next((k for k in ("debian", "online", "rendered", "python_package", "local") if k in spec), None)
        kind = kind or next(iter(spec))
    if kind == "debian":
        for pkg in spec["debian"]:
            rows = manifest[manifest["package"] == pkg["name"]]
            paths = [p for cell in rows["path_in_package"] for p in str(cell).split(";")]
            provenance.append({
                "kind": "debian", "package": pkg["name"], "version": pkg["version"], "deb_sha256": pkg["sha256"],
                **{k: pkg.get(k) for k in ("include", "exclude", "archive_include", "archive_exclude", "sum_stems")},
                "n_files": int(len(rows)), "paths_in_package": sorted(paths),
            })
            lic = str(rows["licence"].iloc[0]) if len(rows) else ""
            licences[pkg["name"]] = licence_entry(set_dir, lic)
    elif kind not in ("python_package", "local"):  # online, rendered, or a kind registered elsewhere
        provenance.append({"kind": kind, "package": spec[kind], **(record or {}), "spec": spec})
        lic_rel = next((str(x) for x in manifest["licence"] if str(x)), "")
        licences[str(spec[kind])] = {"copyright_file": lic_rel,
                                     "licences": (record or {}).get("licence", "unknown"), "files_star": None}
    elif kind == "python_package":
        name = spec["python_package"]
        provenance.append({"kind": "python_package", "package": name, "version": spec["version"],
                           "path": spec["path"], "include": spec["include"], "exclude": spec["exclude"],
                           "n_files": int(len(manifest)), "paths_in_package": sorted(manifest["path_in_package"])})
        lic_rel = next((str(x) for x in manifest["licence"] if str(x)), "")
        licences[name] = {"copyright_file": lic_rel, "licences": _package_licence(name, set_dir / lic_rel),
                          "files_star": None}
    else:
        provenance.append({"kind": "local", "package": "local", "folder": spec["local"], "include": spec.get("include"),
                           "exclude": spec.get("exclude"), "n_files": int(len(manifest))})
        licences["local"] = {"copyright_file": "", "licences": "unknown (local folder)", "files_star": None}
    return {
        "schema": SCHEMA,
        "kind": "raw",
        "set": name or set_dir.name,
        "provenance": provenance,
        "licences": licences,
        "audio": audio_stats(set_dir / p for p in manifest["path"]),
        "table": _table(set_dir, "manifest.csv", len(manifest)),
        "skipped": dict(sorted(Counter(r["reason"] for r in skipped).items())),
        "skipped_files": skipped,
    }


def prepared_split_summary(split_dir: str | os.PathLike, clips: pd.DataFrame, settings: dict,
                           raw: dict | None, raw_table_sha256: str = "", *, name: str | None = None) -> dict:
    """Summary of one prepared split (``data/prepared/<set>/<split>``): see the module docstring.

    Args:
        split_dir: the split's folder; ``clips.csv`` (this split's rows of the prepared set's
            ``manifest.csv``; ``clip`` paths are relative to the *set* folder) must already be there.
        clips: those rows (columns :data:`musicdiff.data.prepare.CLIP_COLUMNS`).
        settings: the prepare arguments (sample rate, segment length, caps, seed, ...).
        raw: the summary of the download the clips were cut from (``None`` if it has none); its
            provenance and licences are narrowed to the packages this split draws on.
        raw_table_sha256: SHA-256 of the download's ``manifest.csv``.
        name: the prepared set's name (default: the name of the split folder's parent).
    """
    split_dir = Path(split_dir)
    set_dir = split_dir.parent
    used = sorted({str(p) for p in clips["package"]})
    per_pkg = {p: {"n_tracks": int(g["track"].nunique()), "n_clips": int(len(g))}
               for p, g in clips.groupby(clips["package"].astype(str))}
    provenance, licences = [], {}
    if raw is not None:
        for entry in raw.get("provenance", []):
            key = entry.get("package")
            if key not in used:
                continue
            slim = {k: v for k, v in entry.items() if k not in ("paths_in_package", "n_files")}
            provenance.append({**slim, **per_pkg.get(key, {})})
        licences = {k: v for k, v in raw.get("licences", {}).items() if k in used}
    else:
        provenance = [{"kind": "unknown", "package": p, **per_pkg[p]} for p in used]
    return {
        "schema": SCHEMA,
        "kind": "prepared",
        "set": name or set_dir.name,
        "split": split_dir.name,
        "source": {"raw_set": raw.get("set") if raw else None, "raw_manifest_sha256": raw_table_sha256},
        "provenance": provenance,
        "licences": licences,
        "prepare": settings,
        "n_tracks": int(clips["track"].nunique()),
        "audio": audio_stats(set_dir / c for c in clips["clip"]),
        "table": _table(split_dir, "clips.csv", len(clips)),
    }


# --------------------------------------------------------------------------------------- logging


def summary_metrics(summary: dict, suffix: str = "") -> dict:
    """The key numbers of a set summary as MLflow metrics: clip count, total frames and seconds,
    unreadable files, duration min/median/mean/max (seconds) and the sample rate when it is common;
    every name ends in ``suffix``."""
    audio = summary["audio"]
    out = {"clips": audio["n_clips"], "total_frames": audio["total_frames"], "total_s": audio["total_s"],
           "unreadable": audio["n_unreadable"],
           **{f"duration_{k}_s": v for k, v in audio["duration_s"].items() if v is not None}}
    if audio["sample_rate"] is not None:
        out["sample_rate"] = audio["sample_rate"]
    return {f"{k}{suffix}": v for k, v in out.items()}


def summary_tags(summary: dict, suffix: str = "") -> dict:
    """The per-file table's SHA-256 and the licence names (``"; "``-joined) of a set summary as MLflow
    tags; every name ends in ``suffix``."""
    names = []
    for entry in summary["licences"].values():
        lic = entry["licences"]
        names.extend(lic if isinstance(lic, list) else [lic])
    return {f"table_sha256{suffix}": summary["table"]["sha256"], f"licences{suffix}": "; ".join(dict.fromkeys(names))}


# ------------------------------------------------------------------------------------------- I/O


def write_summary(path: str | os.PathLike, summary: dict) -> Path:
    """Write ``summary`` as indented JSON to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(summary, fh, indent=1, sort_keys=False, default=_json_default)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_summary(path: str | os.PathLike) -> dict:
    """Read a summary written by :func:`write_summary` (a folder means its ``manifest.json``)."""
    path = Path(path)
    return json.loads((path / SUMMARY_FILE if path.is_dir() else path).read_text())


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (tuple, set)):
        return list(x)
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")
