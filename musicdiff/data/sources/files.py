"""Files of a source: glob patterns, walking a folder, copying, and the records of what was skipped.

Glob patterns are matched against POSIX paths relative to the package root (or the local
folder): ``*``, ``?`` and ``[...]`` never cross ``/``; ``**`` matches any number of whole
directories (including none).

Walking a folder (:func:`select_files`) keeps the regular files, and links to regular files inside
the folder, whose path matches an include glob and no exclude glob.  An entry that matches but
cannot be used is *skipped with its reason* (one of :data:`SKIP_REASONS`), never dropped silently:

* ``dangling_link`` -- a symbolic link whose target does not exist;
* ``not_a_file`` -- a directory or other non-regular file whose path matches (a folder named
  ``x.wav``); a matching directory is reported only when no entry below it matches the include
  globs (so ``**/*`` does not report every folder it walks through);
* ``link_outside`` -- a link that points out of the folder;
* ``no_permission`` -- the file (or a folder that might hold matches) cannot be read:
  ``PermissionError`` on listing, opening or copying (:func:`copy_file`).

A skip is recorded as a dict ``{"path", "reason", "detail"}`` (:func:`skip_record`): ``path`` is
the entry's POSIX path where the set's ``audio/`` folder would have held it (relative to the local
folder; ``<package>/<path>`` for a package), ``detail`` a short message without absolute paths of
the output side.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Iterable

from musicdiff.data.audio import AUDIO_SUFFIXES

__all__ = [
    "AUDIO_SUFFIXES",
    "RECORD_FILE",
    "SKIPPED_COLUMNS",
    "SKIP_REASONS",
    "Item",
    "copy_file",
    "copy_matching",
    "describe_skipped",
    "glob_match",
    "include_exclude",
    "read_source_record",
    "select_files",
    "skip_counts",
    "skip_record",
    "write_source_record",
]

#: Why a matching entry of a walked folder was skipped (see the module docstring).
SKIP_REASONS = ("dangling_link", "not_a_file", "link_outside", "no_permission")
SKIPPED_COLUMNS = ["path", "reason", "detail"]  # of a set's skipped.csv
RECORD_FILE = "source.json"  # what an online or rendering loader did (URL, revisions, versions, licence)


@dataclass
class Item:
    """One audio file produced by a source, before hashing (the fields of a manifest row)."""

    dest: str  # relative to the set's output folder (POSIX)
    package: str
    package_version: str
    path_in_package: str
    source_sha256: str
    licence: str


# ------------------------------------------------------------------------------------------ globs


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern:
    pattern = pattern.strip()
    pattern = pattern[2:] if pattern.startswith("./") else pattern.lstrip("/")
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append(r"(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(r".*")
            i += 2
        elif c == "*":
            out.append(r"[^/]*")
            i += 1
        elif c == "?":
            out.append(r"[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(path: str, patterns: str | Iterable[str]) -> bool:
    """True if the POSIX relative ``path`` matches any of the glob ``patterns``.

    ``*``/``?``/``[...]`` stay within one path component; ``**/`` spans any
    number of directories (also none); a leading ``./`` or ``/`` is ignored.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    path = path[2:] if path.startswith("./") else path.lstrip("/")
    return any(_glob_regex(p).match(path) for p in patterns)


def include_exclude(spec: dict) -> tuple[list[str], list[str]]:
    """``(include, exclude)`` glob lists of a spec; include defaults to ``["**/*"]``, exclude to ``[]``."""
    inc = spec.get("include") or ["**/*"]
    exc = spec.get("exclude") or []
    return ([inc] if isinstance(inc, str) else list(inc)), ([exc] if isinstance(exc, str) else list(exc))


# ------------------------------------------------------------------------------------ skip records


def skip_record(path: str, reason: str, detail: str) -> dict:
    """The record of one skipped entry: ``{"path", "reason", "detail"}``.

    Raises:
        ValueError: ``reason`` is not one of :data:`SKIP_REASONS`.
    """
    if reason not in SKIP_REASONS:
        raise ValueError(f"unknown skip reason {reason!r}; known: {list(SKIP_REASONS)}")
    return {"path": str(path), "reason": reason, "detail": str(detail)}


def skip_counts(records: Iterable[dict]) -> dict[str, int]:
    """Number of skipped entries per reason: every one of :data:`SKIP_REASONS`, zeros included."""
    counts = Counter(r["reason"] for r in records)
    return {reason: int(counts.get(reason, 0)) for reason in SKIP_REASONS}


def describe_skipped(records: list[dict], limit: int = 20) -> str:
    """``""`` for no records, else ``"; N matching entries skipped:"`` and one line per record
    (``path: reason (detail)``), at most ``limit`` of them, then ``"... and N more"``."""
    if not records:
        return ""
    lines = [f"  {r['path']}: {r['reason']} ({r['detail']})" for r in records[:limit]]
    if len(records) > limit:
        lines.append(f"  ... and {len(records) - limit} more")
    return f"; {len(records)} matching entries skipped:\n" + "\n".join(lines)


# ---------------------------------------------------------------------------------------- walking


def _joined(prefix: str, rel: str) -> str:
    return f"{prefix}/{rel}" if prefix else rel


def _problem(full: str, root_real: str) -> tuple[str, str] | None:
    """``(reason, detail)`` if the entry at ``full`` cannot be used as a file, else ``None``."""
    if os.path.islink(full):
        target = os.readlink(full)
        real = os.path.realpath(full)
        if not (real == root_real or real.startswith(root_real + os.sep)):
            return "link_outside", f"link to {target}, outside the folder"
        if not os.path.exists(real):
            return "dangling_link", f"link to {target}, which does not exist"
    if os.path.isdir(full):
        return "not_a_file", "a directory"
    if not os.path.isfile(full):
        return "not_a_file", "not a regular file"
    return None


def select_files(root: str | os.PathLike, include: Iterable[str], exclude: Iterable[str] = (),
                 skipped: list[dict] | None = None, prefix: str = "") -> list[str]:
    """POSIX paths (relative to ``root``) of the usable files that match the globs, in walk order.

    The walk is top-down with names sorted and does not follow links to folders.  Matching entries
    that cannot be used are appended to ``skipped`` (when given) as :func:`skip_record` records
    whose path is ``<prefix>/<relative path>`` (see the module docstring for the reasons);
    folders that cannot be listed are recorded as ``no_permission`` unless excluded.
    """
    include, exclude = list(include), list(exclude)
    skipped = [] if skipped is None else skipped
    root_real = os.path.realpath(root)

    def excluded(rel: str) -> bool:
        return bool(exclude) and glob_match(rel, exclude)

    def unlistable(err: OSError) -> None:
        rel = PurePosixPath(os.path.relpath(err.filename or root, root)).as_posix()
        if not (excluded(rel) or excluded(rel + "/")):
            reason = "no_permission" if isinstance(err, PermissionError) else "not_a_file"
            skipped.append(skip_record(_joined(prefix, rel), reason, f"cannot list folder: {err.strerror or err}"))

    selected: list[str] = []
    matched: list[str] = []  # every entry matching include (excluded or not): decides which folders to report
    folders: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable):
        dirnames.sort()
        for name, listed_as_folder in [(f, False) for f in sorted(filenames)] + [(d, True) for d in dirnames]:
            full = os.path.join(dirpath, name)
            rel = PurePosixPath(os.path.relpath(full, root)).as_posix()
            if not glob_match(rel, include):
                continue
            matched.append(rel)
            if excluded(rel):
                continue
            if listed_as_folder:  # a folder, or a link to one (not followed): reported below if nothing matched in it
                folders.append((rel, full))
                continue
            problem = _problem(full, root_real)
            if problem is None:
                selected.append(rel)
            else:
                skipped.append(skip_record(_joined(prefix, rel), *problem))
    above = {str(parent) for rel in matched for parent in PurePosixPath(rel).parents}
    for rel, full in folders:
        if rel not in above:
            skipped.append(skip_record(_joined(prefix, rel), *_problem(full, root_real)))
    return selected


# ---------------------------------------------------------------------------------------- copying


def copy_file(src: str | os.PathLike, dst: str | os.PathLike, path: str, skipped: list[dict],
              stop: str | os.PathLike) -> bool:
    """Copy ``src`` to ``dst`` (creating its folders); True if copied.

    On ``PermissionError`` (``no_permission``), ``IsADirectoryError`` (``not_a_file``) or
    ``FileNotFoundError`` (``dangling_link`` for a link, else ``not_a_file``) a record for ``path``
    is appended to ``skipped``, no partial file is left and folders made empty below ``stop`` are
    removed; False is returned.  Other errors propagate.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(src, dst)
        return True
    except (PermissionError, IsADirectoryError, FileNotFoundError) as e:
        if isinstance(e, PermissionError):
            reason = "no_permission"
        elif isinstance(e, FileNotFoundError) and os.path.islink(src):
            reason = "dangling_link"
        else:
            reason = "not_a_file"
        skipped.append(skip_record(path, reason, e.strerror or str(e) or type(e).__name__))
    dst.unlink(missing_ok=True)
    stop, folder = Path(stop), dst.parent
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty
            break
        folder = folder.parent
    return False


def copy_matching(folder: Path, include: list[str], exclude: list[str], out_dir: Path, dest_base: str,
                  skipped: list[dict], prefix: str = "") -> list[tuple[str, str]]:
    """Copy each usable matching file ``folder/<rel>`` to ``out_dir/<dest_base>/<rel>``.

    Returns:
        ``(rel, dest)`` per copied file, in walk order (``dest`` relative to ``out_dir``).  Skips
        (:func:`select_files`, :func:`copy_file`) go to ``skipped`` with paths ``<prefix>/<rel>``.
    """
    copied = []
    for rel in select_files(folder, include, exclude, skipped, prefix):
        dest = f"{dest_base}/{rel}"
        if copy_file(folder / rel, out_dir / dest, _joined(prefix, rel), skipped, stop=out_dir):
            copied.append((rel, dest))
    return copied


# ------------------------------------------------------------------------------- loader's record


def write_source_record(set_dir: Path, record: dict) -> None:
    """Write what an online or rendering loader did as ``<set_dir>/source.json`` (sorted keys)."""
    (set_dir / RECORD_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def read_source_record(set_dir: Path) -> dict | None:
    """The record written by :func:`write_source_record` (``None`` for other sources)."""
    f = set_dir / RECORD_FILE
    return json.loads(f.read_text()) if f.is_file() else None
