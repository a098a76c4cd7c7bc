"""Source kind ``debian``: real recordings shipped in Debian packages.

Spec::

    {"debian": [
        {"name": "wesnoth-1.16-music", "version": "1:1.16.9-1",
         "sha256": "f9bc...",                       # of the .deb file
         "include": ["usr/share/games/wesnoth/1.16/data/core/music/*.ogg"],
         "exclude": [...],                          # optional
         "archive_include": ["sound/cdtracks/*.ogg"],  # optional: members of matched .pk3/.zip
         "archive_exclude": ["sound/cdtracks/thunder.ogg"],  # optional
         "sum_stems": false},                       # optional: one track per folder of stems
        ...]}

Each package is fetched and unpacked (:mod:`musicdiff.data.sources.deb`); the globs are matched
against paths inside the package (:func:`~musicdiff.data.sources.files.glob_match`); a matched
.pk3/.zip is expanded into its members matching ``archive_include``.  The audio is copied to
``<out>/audio/<package>/<path in package>`` (an archive member ``a.pk3!m`` to ``a.pk3/m``); with
``sum_stems`` the files of each folder are mixed into one ``<folder>.flac``.  The package's
``usr/share/doc/<pkg>/copyright`` is kept as ``<out>/licences/<pkg>/copyright``.  Matching entries
that cannot be used (links to other packages' files, ...) are skipped with their reason.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from musicdiff.data.sources.deb import extract_deb, fetch_deb
from musicdiff.data.sources.files import Item, copy_file, describe_skipped, glob_match, select_files
from musicdiff.data.sources.registry import BuildContext, SourceKind, register

__all__ = ["DebianPackage", "build", "normalise"]

_CHUNK = 1 << 20


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
        """The package of one entry of a ``debian`` list.

        Raises:
            ValueError: an unknown or missing key, or a sha256 that is not 64 hex digits.
        """
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


def normalise(spec: dict) -> dict:
    """``{"debian": [package dicts with every field filled in]}``.

    Raises:
        ValueError: keys beside ``debian``, or a malformed package entry.
    """
    extra = set(spec) - {"debian"}
    if extra:
        raise ValueError(f"set spec: unexpected keys {sorted(extra)} beside 'debian'")
    pkgs = [DebianPackage.from_spec(p) for p in spec["debian"]]
    return {"debian": [{k: list(v) if isinstance(v, tuple) else v for k, v in p.__dict__.items()} for p in pkgs]}


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


def _keep_copyright(pkg: DebianPackage, root: Path, tmp_out: Path) -> str:
    """Copy the package's copyright file to ``licences/<pkg>/copyright``; its relative path, or ''."""
    cr = root / "usr/share/doc" / pkg.name / "copyright"
    if not cr.is_file():
        return ""
    (tmp_out / "licences" / pkg.name).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cr, tmp_out / "licences" / pkg.name / "copyright")
    return f"licences/{pkg.name}/copyright"


def _package_files(pkg: DebianPackage, root: Path, work: Path, skipped: list[dict]) -> list[tuple[str, Path]]:
    """``(path_in_package, file)`` of every matching file, archives (.pk3/.zip) expanded into their
    matching members (``a.pk3!member``, extracted under ``work``)."""
    files: list[tuple[str, Path]] = []
    for rel in select_files(root, pkg.include, pkg.exclude, skipped, prefix=pkg.name):
        full = root / rel
        if not (pkg.archive_include and zipfile.is_zipfile(full)):
            files.append((rel, full))
            continue
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
    return files


def _write_files(pkg: DebianPackage, files: list[tuple[str, Path]], tmp_out: Path, licence: str,
                 skipped: list[dict]) -> list[Item]:
    """Copy (or, with ``sum_stems``, mix per folder) the package's files into ``audio/<pkg>/``."""
    base, items = f"audio/{pkg.name}", []
    if pkg.sum_stems:
        groups: dict[str, list[tuple[str, Path]]] = {}
        for pip, f in files:
            groups.setdefault(pip.rsplit("/", 1)[0] if "/" in pip else ".", []).append((pip, f))
        for folder, stems in sorted(groups.items()):
            dest = f"{base}/{folder}.flac"
            (tmp_out / dest).parent.mkdir(parents=True, exist_ok=True)
            _sum_stems([f for _, f in stems], tmp_out / dest)
            items.append(Item(dest, pkg.name, pkg.version, ";".join(p for p, _ in stems), pkg.sha256, licence))
        return items
    for pip, f in files:
        dest = f"{base}/{pip.replace('!', '/')}"
        if copy_file(f, tmp_out / dest, f"{pkg.name}/{pip}", skipped, stop=tmp_out):
            items.append(Item(dest, pkg.name, pkg.version, pip, pkg.sha256, licence))
    return items


def build(norm: dict, tmp_out: Path, ctx: BuildContext) -> list[Item]:
    """Fetch, verify and unpack each package, then copy its matching audio (see the module docstring).

    Per package, ``ctx.timings[name]`` gets ``{"download_s", "extract_s", "deb_bytes"}`` (seconds,
    bytes); the .deb is kept in ``ctx.cache_dir`` when given.

    Raises:
        ValueError: a package listed twice, or a .deb whose SHA-256 differs from the spec.
        RuntimeError: apt-get missing, package version unavailable, or no usable file matched in a
            package (the message lists the entries skipped there).
    """
    pkgs = [DebianPackage.from_spec(p) for p in norm["debian"]]
    names = [p.name for p in pkgs]
    if len(set(names)) != len(names):
        raise ValueError(f"set spec lists a package twice: {names}")
    items: list[Item] = []
    for pkg in tqdm(pkgs, desc="debian packages", unit="pkg", disable=not ctx.progress):
        with tempfile.TemporaryDirectory(dir=tmp_out.parent, prefix=f".{pkg.name}-work-") as work:
            work = Path(work)
            t0 = time.perf_counter()
            deb = fetch_deb(pkg.name, pkg.version, pkg.sha256,
                            ctx.cache_dir if ctx.cache_dir is not None else work / "deb")
            t1 = time.perf_counter()
            root = work / "root"
            extract_deb(deb, root)
            t2 = time.perf_counter()
            ctx.timings[pkg.name] = {"download_s": round(t1 - t0, 2), "extract_s": round(t2 - t1, 2),
                                     "deb_bytes": deb.stat().st_size}
            licence = _keep_copyright(pkg, root, tmp_out)
            first_skip = len(ctx.skipped)
            files = _package_files(pkg, root, work, ctx.skipped)
            pkg_items = _write_files(pkg, files, tmp_out, licence, ctx.skipped)
            if not pkg_items:
                raise RuntimeError(
                    f"{pkg.name} {pkg.version}: no file matches include={list(pkg.include)}"
                    + (f" / archive_include={list(pkg.archive_include)}" if pkg.archive_include else "")
                    + describe_skipped(ctx.skipped[first_skip:])
                )
            items += pkg_items
    return items


KIND = register(SourceKind("debian", normalise, build))
