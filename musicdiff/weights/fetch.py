"""Getting the registered weights onto this machine: importing a local copy (checked, then copied
atomically into ``$MUSICDIFF_WEIGHTS``) and fetching MusiCNN's checkpoint (the PyPI wheel
``musicnn==0.1.0``, downloaded with ``pip download --no-deps``, pinned by SHA-256, its ``MSD_musicnn``
folder extracted atomically), with the message that says how to provide it by hand when offline.

Finding and checking copies is :mod:`musicdiff.weights.verify`; what each entry is,
:mod:`musicdiff.weights.registry`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from musicdiff.data.hashing import sha256_file
from musicdiff.weights.registry import (
    DATA_FILE,
    IMPORT_COMMAND,
    INDEX_FILE,
    MUSICNN_DATA_SHA256,
    MUSICNN_MODEL,
    MUSICNN_WHEEL,
    MUSICNN_WHEEL_FILENAME,
    MUSICNN_WHEEL_SHA256,
    REGISTRY,
    WEIGHTS_ENV,
    UnknownWeightsError,
    WeightEntry,
    WeightsMismatchError,
    entry_named,
)
from musicdiff.weights.verify import Found, check_file, check_hub_repo, file_sha256, remember, stat_key, weights_dir

OFFLINE_ENV = "MUSICDIFF_OFFLINE"  # set (not "0"): never download weights at run time
_BUNDLE_FILES = (DATA_FILE, INDEX_FILE)


# ============================================================================ import a local copy
def _entry_for(path: Path, name: str | None) -> WeightEntry:
    if name is not None:
        entry = entry_named(name)
        if entry.kind == "hf-repo":
            raise UnknownWeightsError(f"{name!r} is a Hugging Face repository read from the HF cache; "
                                      f"{IMPORT_COMMAND} takes weight files and the torch-hub code folder")
        if (entry.kind == "hub-repo") != path.is_dir():
            raise UnknownWeightsError(f"{name!r} is a {'folder' if entry.kind == 'hub-repo' else 'file'}; got {path}")
        return entry
    if path.is_dir():
        return next(e for e in REGISTRY.values() if e.kind == "hub-repo")
    by_name = [e for e in REGISTRY.values() if e.kind == "file" and e.filename == path.name]
    if by_name:
        return by_name[0]
    digest = file_sha256(path)
    by_hash = [e for e in REGISTRY.values() if e.kind == "file" and e.sha256 == digest]
    if by_hash:
        return by_hash[0]
    known = sorted(e.filename for e in REGISTRY.values() if e.kind == "file")
    raise UnknownWeightsError(f"{path} matches no registry entry by name or SHA-256 ({digest}); known files: "
                              f"{known}; name the entry with --name if the file was renamed")


def _copy_file_atomically(src: Path, dest: Path, expected_sha256: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        digest = hashlib.sha256()
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            while chunk := fin.read(1 << 20):
                digest.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        if digest.hexdigest() != expected_sha256:
            raise WeightsMismatchError(f"{src} changed while being copied (SHA-256 {expected_sha256} before, "
                                       f"{digest.hexdigest()} during the copy); nothing was installed")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        remember(dest.resolve(), stat_key(dest.stat()), expected_sha256)  # its bytes were just hashed
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _copy_tree_atomically(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    old = None
    try:
        shutil.copytree(src, tmp / "tree", ignore=shutil.ignore_patterns(".git", "__pycache__"))
        if dest.exists():
            old = dest.parent / f"{tmp.name}.old"
            os.replace(dest, old)
        os.replace(tmp / "tree", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def import_weights(path: str | os.PathLike, name: str | None = None) -> Found:
    """Check a local copy and install it into ``$MUSICDIFF_WEIGHTS/<subdir>/`` atomically.

    The entry is ``name`` or, when None, the one whose file name is ``path``'s name (a folder is the
    torch-hub code of VGGish), else the one whose SHA-256 equals the file's. The file is checked as
    :func:`check_file` does, copied to a temporary file in the destination folder while hashed again,
    and renamed into place. Returns the installed copy as :class:`Found`.

    Raises ``FileNotFoundError``, :class:`UnknownWeightsError` (no entry matches) and
    :class:`WeightsMismatchError` (the file fails its entry's check).
    """
    src = Path(path).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"no such file: {src}")
    entry = _entry_for(src, name)
    dest = weights_dir() / entry.subdir / entry.filename
    if entry.kind == "hub-repo":
        check_hub_repo(entry, src)
        if src.resolve() != dest.resolve():
            _copy_tree_atomically(src, dest)
        return check_hub_repo(entry, dest, f"${WEIGHTS_ENV}")
    checked = check_file(entry, src)
    if src.resolve() != dest.resolve():
        _copy_file_atomically(src, dest, checked.sha256)
    return check_file(entry, dest, f"${WEIGHTS_ENV}")


# ============================================================================ MusiCNN's wheel
class MusicnnWeightsUnavailable(RuntimeError):
    """The MSD_musicnn checkpoint is neither present locally nor downloadable."""


def _check_model_dir(folder: Path) -> Path | None:
    """Return the bundle prefix if ``folder`` holds a verified MSD_musicnn bundle."""
    data = folder / DATA_FILE
    if not (data.is_file() and (folder / INDEX_FILE).is_file()):
        return None
    digest = sha256_file(data)
    if digest != MUSICNN_DATA_SHA256:
        raise RuntimeError(
            f"SHA-256 mismatch for {data}: got {digest}, expected {MUSICNN_DATA_SHA256}. "
            "Delete this folder and provide the genuine musicnn 0.1.0 checkpoint."
        )
    # The bundle files have an empty basename ("<folder>/.index"): the folder is the prefix.
    return folder


def _extract_model_from_wheel(wheel: Path, dest: Path) -> Path:
    """Verify ``wheel`` and atomically extract its MSD_musicnn folder to ``dest``."""
    digest = sha256_file(wheel)
    if digest != MUSICNN_WHEEL_SHA256:
        raise RuntimeError(
            f"SHA-256 mismatch for {wheel}: got {digest}, expected {MUSICNN_WHEEL_SHA256} "
            f"({MUSICNN_WHEEL}). Remove the file and provide the genuine wheel."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".musicnn-extract-", dir=dest.parent))
    try:
        member_prefix = f"musicnn/{MUSICNN_MODEL}/"
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.startswith(member_prefix) and not m.endswith("/")]
            if not members:
                raise RuntimeError(f"{wheel} does not contain {member_prefix}")
            for m in members:
                name = m[len(member_prefix) :]
                if "/" in name or name in ("", ".", ".."):
                    continue
                with zf.open(m) as src, open(tmp / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if _check_model_dir(tmp) is None:
            raise RuntimeError(f"{wheel}: {member_prefix} lacks {_BUNDLE_FILES}")
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700 folders
        if dest.exists():
            shutil.rmtree(dest)
        try:
            os.replace(tmp, dest)
        except OSError:
            # another process may have completed the same extraction meanwhile
            if _check_model_dir(dest) is None:
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    prefix = _check_model_dir(dest)
    assert prefix is not None
    return prefix


def _find_wheel(folder: Path) -> Path | None:
    cands = sorted(folder.glob("musicnn-0.1.0-*.whl")) if folder.is_dir() else []
    return cands[0] if cands else None


def fetch_musicnn_checkpoint(cache_dir: Path | None = None) -> Path:
    """Locate or download the MSD_musicnn checkpoint; return its bundle prefix.

    Search order:

    1. ``$MUSICDIFF_WEIGHTS/musicnn/`` (filled by hand): either an extracted ``MSD_musicnn/``
       folder (holding ``.index`` and ``.data-00000-of-00001``), those two files directly, or
       the wheel ``musicnn-0.1.0-py3-none-any.whl`` (extracted into the cache dir).
    2. ``cache_dir`` (default ``~/.cache/musicdiff/weights/musicnn``), folder ``MSD_musicnn/``.
    3. ``python -m pip download --no-deps musicnn==0.1.0`` into a temporary folder, then
       extraction of the ``MSD_musicnn`` folder into the cache (temporary folder + rename); one line on
       stderr says what is fetched, from where, to where. With ``$MUSICDIFF_OFFLINE`` set (not ``0``)
       nothing is downloaded: :class:`MusicnnWeightsUnavailable` names the command that fetches them.

    The wheel and the data shard are always checked against :data:`MUSICNN_WHEEL_SHA256` and
    :data:`MUSICNN_DATA_SHA256`.

    Returns the bundle prefix, which is the ``MSD_musicnn`` folder itself: its files have an
    empty basename (``.index``, ``.data-00000-of-00001``) and ``read_tf_bundle`` treats a
    directory prefix as ``"<folder>/"``.  The folder's ``checkpoint`` file names an absolute
    path on the authors' machine and is ignored.

    Raises ``RuntimeError`` on a SHA-256 mismatch, and :class:`MusicnnWeightsUnavailable` (a
    ``RuntimeError``) when the checkpoint can be neither found nor downloaded (the message says
    how to provide it by hand).
    """
    cache = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache/musicdiff/weights/musicnn"
    cache_model = cache / MUSICNN_MODEL

    env = os.environ.get("MUSICDIFF_WEIGHTS")
    if env:
        user = Path(env).expanduser() / "musicnn"
        for folder in (user / MUSICNN_MODEL, user):
            prefix = _check_model_dir(folder)
            if prefix is not None:
                return prefix
        wheel = _find_wheel(user)
        if wheel is not None:
            return _extract_model_from_wheel(wheel, cache_model)

    prefix = _check_model_dir(cache_model)
    if prefix is not None:
        return prefix
    wheel = _find_wheel(cache)
    if wheel is not None:
        return _extract_model_from_wheel(wheel, cache_model)

    fetch = (f"python -m pip download --no-deps --only-binary=:all: {MUSICNN_WHEEL} -d DIR && "
             f"musicdiff weights import DIR/{MUSICNN_WHEEL_FILENAME}")
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise MusicnnWeightsUnavailable(f"MusiCNN weights ({MUSICNN_WHEEL_FILENAME}) are not here and {OFFLINE_ENV} "
                                        f"is set, so nothing is downloaded; fetch them once with: {fetch}")
    print(f"musicdiff: fetching the MusiCNN weights: {MUSICNN_WHEEL_FILENAME} (the MSD_musicnn checkpoint) from "
          f"PyPI (pip download {MUSICNN_WHEEL}) into {cache_model}; {OFFLINE_ENV}=1 forbids this", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="musicnn-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               MUSICNN_WHEEL, "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            failure = None if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()[-800:]
        except (OSError, subprocess.TimeoutExpired) as exc:
            failure = repr(exc)
        wheel = _find_wheel(Path(tmp))
        if failure is not None or wheel is None:
            raise MusicnnWeightsUnavailable(
                "MusiCNN weights (MSD_musicnn checkpoint from the PyPI wheel "
                f"{MUSICNN_WHEEL}) are not available and could not be downloaded.\n"
                f"Download the wheel on a machine with network access:\n"
                f"    python -m pip download --no-deps {MUSICNN_WHEEL} -d DIR\n"
                f"and put {MUSICNN_WHEEL_FILENAME} (SHA-256 {MUSICNN_WHEEL_SHA256}) into "
                "$MUSICDIFF_WEIGHTS/musicnn/ (or into "
                f"{cache}).\npip said: {failure or 'no wheel file was written'}"
            )
        return _extract_model_from_wheel(wheel, cache_model)
