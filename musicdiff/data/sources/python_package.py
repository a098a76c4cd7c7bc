"""Source kind ``python_package``: audio files that an installed Python package ships.

Spec (e.g. the 23 music clips in fadtk's wheel, the regression benchmark's data)::

    {"python_package": "fadtk", "path": "test/samples", "include": ["*.opus"]}

The installed version is part of the normalised spec, so another version downloads again; the spec
holds no absolute path, so the output is the same on every machine.  Each usable matching file
under ``<package folder>/<path>`` is copied to ``<out>/audio/<package>/<path below path>``; the
distribution's licence files are kept under ``<out>/licences/<package>/``.  Matching entries that
cannot be used are skipped with their reason (see :mod:`musicdiff.data.sources.files`).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from importlib import metadata
from pathlib import Path

from musicdiff.data.sources.files import Item, copy_matching, describe_skipped, include_exclude
from musicdiff.data.sources.registry import BuildContext, SourceKind, register

__all__ = ["build", "normalise"]


def _not_installed(name: str) -> FileNotFoundError:
    return FileNotFoundError(f"Python package {name!r} is not installed (pip install {name})")


def normalise(spec: dict) -> dict:
    """``{"python_package", "version" (installed), "path", "include", "exclude"}``.

    Raises:
        ValueError: keys other than ``python_package``, ``path``, ``include``, ``exclude``.
        FileNotFoundError: the package is not installed.
    """
    extra = set(spec) - {"python_package", "path", "include", "exclude"}
    if extra:
        raise ValueError(f"set spec: unexpected keys {sorted(extra)} beside 'python_package'")
    name = spec["python_package"]
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        raise _not_installed(name) from None
    inc, exc = include_exclude(spec)
    return {"python_package": name, "version": version, "path": str(spec.get("path", ".")).strip("/"),
            "include": inc, "exclude": exc}


def _package_folder(name: str) -> Path:
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise _not_installed(name)
    return Path(next(iter(found.submodule_search_locations)))


def _keep_licences(name: str, tmp_out: Path) -> str:
    """Copy the distribution's licence files to ``licences/<name>/``; the last one's relative path, or ''."""
    licence = ""
    for f in metadata.distribution(name).files or []:
        if re.search(r"LICEN[CS]E|COPYING", f.name, re.IGNORECASE) and ".dist-info" in str(f):
            dest = tmp_out / "licences" / name / f.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f.locate(), dest)
            licence = f"licences/{name}/{f.name}"
    return licence


def build(norm: dict, tmp_out: Path, ctx: BuildContext) -> list[Item]:
    """Copy the package's usable matching files to ``tmp_out/audio/<package>/``.

    Raises:
        FileNotFoundError: the package is not installed or has no folder ``path``.
        RuntimeError: no usable file matches (the message lists the skipped entries).
    """
    name = norm["python_package"]
    folder = _package_folder(name) / norm["path"]
    if not folder.is_dir():
        raise FileNotFoundError(f"{name} {norm['version']} has no folder {norm['path']!r} ({folder})")
    licence = _keep_licences(name, tmp_out)
    copied = copy_matching(folder, norm["include"], norm["exclude"], tmp_out, f"audio/{name}", ctx.skipped,
                           prefix=name)
    if not copied:
        raise RuntimeError(f"{name} {norm['version']}: no file under {norm['path']!r} matches {norm['include']}"
                           + describe_skipped(ctx.skipped))
    return [Item(dest, name, norm["version"], f"{norm['path']}/{rel}", "", licence) for rel, dest in copied]


KIND = register(SourceKind("python_package", normalise, build))
