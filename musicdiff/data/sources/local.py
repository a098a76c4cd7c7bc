"""Source kind ``local``: audio files already in a folder of this machine.

Spec::

    {"local": "/path/to/folder", "include": ["**/*.wav", "**/*.flac"], "exclude": [...]}

``include`` defaults to ``["**/*"]``, ``exclude`` to none (globs: see
:mod:`musicdiff.data.sources.files`).  The normalised spec holds the folder's absolute path.  Each
usable matching file is copied to ``<out>/audio/<path in folder>`` (package ``"local"``, no version,
no licence); matching entries that cannot be used (dangling links, folders named like audio,
links out of the folder, unreadable files) are skipped with their reason.
"""

from __future__ import annotations

from pathlib import Path

from musicdiff.data.sources.files import Item, copy_matching, describe_skipped, include_exclude
from musicdiff.data.sources.registry import BuildContext, SourceKind, register

__all__ = ["build", "normalise"]


def normalise(spec: dict) -> dict:
    """``{"local": absolute folder, "include": [...], "exclude": [...]}``.

    Raises:
        ValueError: keys other than ``local``, ``include``, ``exclude``.
    """
    extra = set(spec) - {"local", "include", "exclude"}
    if extra:
        raise ValueError(f"set spec: unexpected keys {sorted(extra)} beside 'local'")
    inc, exc = include_exclude(spec)
    return {"local": str(Path(spec["local"]).expanduser().resolve()), "include": inc, "exclude": exc}


def build(norm: dict, tmp_out: Path, ctx: BuildContext) -> list[Item]:
    """Copy the folder's usable matching files to ``tmp_out/audio/``.

    Raises:
        FileNotFoundError: the folder does not exist.
        RuntimeError: no usable file matches (the message lists the skipped entries).
    """
    folder, include = Path(norm["local"]), norm["include"]
    if not folder.is_dir():
        raise FileNotFoundError(f"local source folder {folder} does not exist")
    copied = copy_matching(folder, include, norm["exclude"], tmp_out, "audio", ctx.skipped)
    if not copied:
        raise RuntimeError(f"local source {folder}: no file matches include={include}" + describe_skipped(ctx.skipped))
    return [Item(dest, "local", "", rel, "", "") for rel, dest in copied]


KIND = register(SourceKind("local", normalise, build))
