"""The registry of source kinds: which key of a set spec selects which builder.

A *set spec* names exactly one source kind by one of its keys (``{"debian": [...]}``,
``{"local": "/folder", ...}``, ...).  Each kind lives in its own module of this package and
registers a :class:`SourceKind` when imported; :func:`musicdiff.data.sources.download_set` looks
the kind up here, normalises the spec with it and lets it build the set's files.  Adding a source
kind is one new module that calls :func:`register` (and is imported by the package, or by the
caller before :func:`~musicdiff.data.sources.download_set`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from musicdiff.data.sources.files import Item, skip_record

__all__ = ["BuildContext", "SourceKind", "known_kinds", "lookup", "register", "unregister"]


@dataclass
class BuildContext:
    """What a builder may use beside its normalised spec, and where it reports back.

    Attributes:
        cache_dir: folder to keep downloads in between runs (``None``: none kept).
        progress: show tqdm progress bars.
        timings: per package fetched, ``{"download_s", "extract_s", "deb_bytes"}`` (seconds, bytes);
            filled by builders that fetch packages, returned as the manifest's ``attrs["timings"]``.
        skipped: one record ``{"path", "reason", "detail"}`` per matching entry that could not be
            used (see :mod:`musicdiff.data.sources.files`), in the order found.
    """

    cache_dir: Path | None = None
    progress: bool = True
    timings: dict = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)

    def skip(self, path: str, reason: str, detail: str) -> None:
        """Record that ``path`` (relative POSIX path) was skipped for ``reason``."""
        self.skipped.append(skip_record(path, reason, detail))


@dataclass(frozen=True)
class SourceKind:
    """One kind of source.

    Attributes:
        key: the spec key that selects it (``"debian"``, ``"local"``, ...).
        normalise: ``spec -> dict``: the spec as canonical plain JSON data (stored in
            ``.download.json``: a previous download is reused only when it equals the new one); must
            keep ``key`` and raise ``ValueError`` for a malformed spec.
        build: ``(norm, tmp_out, ctx) -> list[Item]``: write the set's audio under
            ``tmp_out/audio/`` (and licences, metadata) and return one :class:`Item` per audio file;
            ``ctx`` is a :class:`BuildContext`.  Raise ``RuntimeError`` when nothing usable matched.
    """

    key: str
    normalise: Callable[[dict], dict]
    build: Callable[[dict, Path, BuildContext], list[Item]]


_KINDS: dict[str, SourceKind] = {}  # in registration order: the first key found in a spec wins


def register(kind: SourceKind, *, replace: bool = False) -> SourceKind:
    """Make ``kind`` available to :func:`~musicdiff.data.sources.download_set`; returns it.

    Raises:
        ValueError: ``kind.key`` is already registered (and ``replace`` is False).
    """
    if kind.key in _KINDS and not replace:
        raise ValueError(f"source kind {kind.key!r} is already registered")
    _KINDS[kind.key] = kind
    return kind


def unregister(key: str) -> None:
    """Remove the kind registered as ``key`` (no error if there is none)."""
    _KINDS.pop(key, None)


def known_kinds() -> list[str]:
    """The registered keys, in registration order."""
    return list(_KINDS)


def lookup(spec: dict) -> SourceKind:
    """The kind whose key ``spec`` holds (the first registered one if it holds several).

    Raises:
        ValueError: ``spec`` holds no registered key; the message lists the known keys.
    """
    for key, kind in _KINDS.items():
        if key in spec:
            return kind
    known = ", ".join(repr(k) for k in _KINDS)
    raise ValueError(f"set spec must have one of the keys {known}, got {sorted(spec)}")
