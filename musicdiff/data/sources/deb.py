"""A Debian binary package as a file: fetch it with apt, unpack it with dpkg-deb or in Python.

The .deb files are fetched with ``apt-get download NAME=VERSION`` through the system's configured
apt sources, so no host name appears in this code, and verified against the SHA-256 of the spec.
Unpacking uses ``dpkg-deb -x`` when it is installed, else reads the ``ar`` container and its
``data.tar.*`` member here (:func:`extract_deb_python`), refusing members that would land outside
the destination.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator

from musicdiff.data.hashing import sha256_file

__all__ = ["extract_deb", "extract_deb_python", "fetch_deb", "iter_ar_members"]

_CHUNK = 1 << 20
_APT_UNKNOWN = re.compile(
    r"Unable to locate package|Can't find a source to download|Version '.*' for '.*' was not found"
    r"|No packages found|has no installation candidate",
    re.IGNORECASE,
)
apt_updated = False  # `apt-get update` is run at most once per process (tests reset it)


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
    global apt_updated
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
            if not apt_updated:
                upd = subprocess.run([apt, "update"], capture_output=True, text=True)
                apt_updated = True
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
    """Extract a .deb's files into ``dest``: ``dpkg-deb -x`` if present, else :func:`extract_deb_python`.

    Raises:
        RuntimeError: ``dpkg-deb -x`` failed (it refuses members with ``..``, for one).
        ValueError: as :func:`extract_deb_python`, when dpkg-deb is missing.
    """
    Path(dest).mkdir(parents=True, exist_ok=True)
    dpkg = shutil.which("dpkg-deb")
    if dpkg is None:
        extract_deb_python(deb, dest)
        return
    proc = subprocess.run([dpkg, "-x", str(deb), str(dest)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`dpkg-deb -x {deb}` failed:\n{proc.stderr.strip()}")
