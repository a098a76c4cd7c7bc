"""Download one declared set: dispatch to its source kind, hash the files, write the manifest.

:func:`download_set` looks the spec's kind up in :mod:`musicdiff.data.sources.registry`, lets it
write the audio into a temporary folder beside ``<out>``, then writes

* ``<out>/manifest.csv`` -- one row per audio file, columns :data:`MANIFEST_COLUMNS`, sorted by path;
* ``<out>/skipped.csv`` -- one row per matching entry that could not be used, columns
  ``path,reason,detail`` (:data:`~musicdiff.data.sources.files.SKIPPED_COLUMNS`; header only when
  none was skipped);
* ``<out>/manifest.json`` -- the set's summary: provenance, licences, clip count, durations and the
  skipped entries (see :mod:`musicdiff.data.summary`);
* ``<out>/.download.json`` -- the normalised spec and the manifest's SHA-256, so that a later call
  with the same spec reuses the download (after checking the files) instead of fetching again;

and renames the folder to ``<out>`` (the old one is replaced atomically).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from musicdiff.data.sources.files import SKIPPED_COLUMNS, read_source_record
from musicdiff.data.sources.registry import BuildContext, lookup
from musicdiff.data.summary import SUMMARY_FILE, raw_set_summary, write_summary
from musicdiff.data.hashing import replace_folder, sha256_file

__all__ = ["MANIFEST_COLUMNS", "SKIPPED_FILE", "STATE_FILE", "download_set", "read_manifest", "read_skipped"]

MANIFEST_COLUMNS = [
    "path",  # relative to the set's output folder (POSIX)
    "sha256",  # of that file
    "package",  # Debian package name, or "local"
    "package_version",  # Debian version, or "" for a local folder
    "path_in_package",  # path inside the .deb ("a.pk3!member" inside an archive; ";"-joined stems)
    "source_sha256",  # of the .deb ("" for a local folder)
    "licence",  # relative path of the copyright file ("" if none)
    "duration_s",  # seconds (NaN if libsndfile cannot read the header)
    "sample_rate",  # Hz
    "channels",
]
STATE_FILE = ".download.json"  # spec + manifest hash of a finished download, for quick re-runs
SKIPPED_FILE = "skipped.csv"


def _audio_info(path: Path) -> tuple[float, float, float]:
    """(duration_s, sample_rate, channels) from the header; NaNs if unreadable."""
    try:
        info = sf.info(str(path))
        return info.frames / float(info.samplerate), float(info.samplerate), float(info.channels)
    except Exception:
        return float("nan"), float("nan"), float("nan")


def _normalise_spec(spec: dict) -> dict:
    """The spec as canonical plain data (used to decide whether a previous download still fits)."""
    return lookup(spec).normalise(spec)


def _manifest_hash(path: Path) -> str:
    return sha256_file(path)


def _previous_is_valid(out_dir: Path, norm: dict, verify: bool) -> pd.DataFrame | None:
    state_file, manifest_file = out_dir / STATE_FILE, out_dir / "manifest.csv"
    if not (state_file.is_file() and manifest_file.is_file()):
        return None
    try:
        state = json.loads(state_file.read_text())
        if state.get("spec") != norm or state.get("manifest_sha256") != _manifest_hash(manifest_file):
            return None
        df = read_manifest(manifest_file)
        for rel, sha in zip(df["path"], df["sha256"]):
            f = out_dir / rel
            if not f.is_file() or (sha256_file(f) != sha if verify else False):
                return None
        return df
    except Exception:
        return None


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``manifest.csv`` written by :func:`download_set` (strings stay strings, '' not NaN)."""
    return pd.read_csv(path, dtype={"package_version": str, "path_in_package": str, "source_sha256": str,
                                    "licence": str, "sha256": str, "path": str, "package": str},
                       keep_default_na=False, na_values={"duration_s": [""], "sample_rate": [""], "channels": [""]})


def read_skipped(path: str | os.PathLike) -> list[dict]:
    """The records of a ``skipped.csv`` written by :func:`download_set`: ``{"path", "reason", "detail"}``
    each (strings); ``[]`` if the file does not exist (a download made before skips were recorded)."""
    if not Path(path).is_file():
        return []
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return [{c: str(row[c]) for c in SKIPPED_COLUMNS} for _, row in df.iterrows()]


def _write_skipped(path: Path, records: list[dict]) -> None:
    pd.DataFrame(records, columns=SKIPPED_COLUMNS).to_csv(path, index=False, lineterminator="\n")


def _write_manifest(tmp_out: Path, items: list, progress: bool) -> None:
    rows = []
    for it in tqdm(sorted(items, key=lambda i: i.dest), desc="hashing", unit="file", disable=not progress):
        f = tmp_out / it.dest
        dur, sr, ch = _audio_info(f)
        rows.append({"path": it.dest, "sha256": sha256_file(f), "package": it.package,
                     "package_version": it.package_version, "path_in_package": it.path_in_package,
                     "source_sha256": it.source_sha256, "licence": it.licence, "duration_s": dur,
                     "sample_rate": sr, "channels": ch})
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    df["sample_rate"] = df["sample_rate"].astype("Int64")
    df["channels"] = df["channels"].astype("Int64")
    df.to_csv(tmp_out / "manifest.csv", index=False, lineterminator="\n")


def download_set(
    spec: dict,
    out_dir: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    verify_existing: bool = True,
) -> pd.DataFrame:
    """Fetch, verify and unpack one declared set; write ``<out_dir>/manifest.csv``.

    Args:
        spec: a set spec naming one registered source kind (see :mod:`musicdiff.data.sources`):
            ``{"debian": [...]}``, ``{"local": folder, "include": [...], "exclude": [...]}``,
            ``{"online": name, ...}``, ``{"rendered": name, ...}`` or
            ``{"python_package": name, "path": ..., "include": [...]}``.
        out_dir: the set's folder; replaced atomically (built in a temporary
            folder beside it, then renamed).  Layout: ``audio/...``,
            ``licences/<pkg>/copyright``, ``manifest.csv``, ``skipped.csv``, ``manifest.json``
            (the summary, :func:`musicdiff.data.summary.raw_set_summary`) and
            ``.download.json`` (the normalised spec and the manifest's SHA-256).
        cache_dir: optional folder to keep downloaded .deb files in (reused when
            their SHA-256 matches); by default they are deleted after extraction.
            Online sets keep their downloads under it too (see
            :func:`musicdiff.data.online.fetch_online`).
        progress: show tqdm progress bars.
        verify_existing: if ``out_dir`` already holds a download of the same spec,
            re-hash its files (True) or only check that they exist (False) and,
            if they verify, return its manifest without downloading again.

    Returns:
        the manifest, one row per audio file, columns :data:`MANIFEST_COLUMNS`,
        sorted by ``path``.  ``df.attrs["timings"]`` maps each package fetched
        in this call to ``{"download_s", "extract_s", "deb_bytes"}`` (seconds, bytes; empty when
        a previous download was reused); ``df.attrs["skipped"]`` lists the matching entries that
        could not be used, ``{"path", "reason", "detail"}`` each, sorted by path (read back from
        ``skipped.csv`` when a previous download is reused).

    Raises:
        ValueError: malformed spec, a spec with no registered kind's key (the message lists them),
            or a .deb whose SHA-256 differs from the spec.
        RuntimeError: apt-get missing, package version unavailable, no usable file matched (the
            message lists the skipped entries); :class:`~musicdiff.data.online.OnlineSourceError`
            (a RuntimeError) when an online set cannot be fetched and no local copy was given.
        FileNotFoundError: a local folder that does not exist, a Python package that is not
            installed or lacks ``path``.
    """
    out_dir = Path(out_dir)
    norm = _normalise_spec(spec)
    kind = lookup(norm)
    previous = _previous_is_valid(out_dir, norm, verify_existing)
    if previous is not None:
        return _reuse(previous, out_dir, norm, kind.key)
    ctx = BuildContext(cache_dir=Path(cache_dir) if cache_dir else None, progress=progress)
    skipped = _build(kind, norm, out_dir, ctx)
    df = read_manifest(out_dir / "manifest.csv")
    df.attrs["timings"] = ctx.timings
    df.attrs["skipped"] = skipped
    return df


def _reuse(previous: pd.DataFrame, out_dir: Path, norm: dict, kind: str) -> pd.DataFrame:
    """A previous download of the same spec, verified: its manifest with the skips of its ``skipped.csv``
    and no timings; writes its summary when it was made before summaries existed."""
    skipped = read_skipped(out_dir / SKIPPED_FILE)
    if not (out_dir / SUMMARY_FILE).is_file():  # a download made before summaries existed
        summary = raw_set_summary(out_dir, norm, previous, record=read_source_record(out_dir), kind=kind,
                                  skipped=skipped)
        write_summary(out_dir / SUMMARY_FILE, summary)
    previous.attrs["timings"] = {}
    previous.attrs["skipped"] = skipped
    return previous


def _build(kind, norm: dict, out_dir: Path, ctx: BuildContext) -> list[dict]:
    """Let the source kind write the audio into a temporary folder beside ``out_dir``, write the manifest,
    ``skipped.csv``, the state file and the summary there, and rename it to ``out_dir``; returns the skipped
    entries sorted by path. On any error the temporary folder is removed and ``out_dir`` left as it was."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_out, 0o777 & ~umask)  # mkdtemp makes it private; the final folder should not be
    try:
        items = kind.build(norm, tmp_out, ctx)
        _write_manifest(tmp_out, items, ctx.progress)
        skipped = sorted(ctx.skipped, key=lambda r: (r["path"], r["reason"]))
        _write_skipped(tmp_out / SKIPPED_FILE, skipped)
        # Only deterministic content goes into the output folder (no timings).
        state = {"spec": norm, "manifest_sha256": _manifest_hash(tmp_out / "manifest.csv")}
        (tmp_out / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
        summary = raw_set_summary(tmp_out, norm, read_manifest(tmp_out / "manifest.csv"), name=out_dir.name,
                                  record=read_source_record(tmp_out), kind=kind.key, skipped=skipped)
        write_summary(tmp_out / SUMMARY_FILE, summary)
        replace_folder(tmp_out, out_dir)
    except BaseException:
        shutil.rmtree(tmp_out, ignore_errors=True)
        raise
    return skipped
