"""Data sources: turn a declared set of audio into verified files plus a manifest.

A *set spec* is one entry of the parameters file and names one source kind by its key; each kind
is one module of this package, registered in :mod:`~musicdiff.data.sources.registry`:

* ``{"debian": [{"name", "version", "sha256", "include", ...}, ...]}`` -- real recordings shipped
  by Debian (:mod:`~musicdiff.data.sources.debian`, fetched and unpacked by
  :mod:`~musicdiff.data.sources.deb`);
* ``{"local": "/path/to/folder", "include": ["**/*.wav"]}`` -- a local folder
  (:mod:`~musicdiff.data.sources.local`);
* ``{"online": "song-describer", "folder": "/optional/local/copy"}`` -- an online set of the seed
  study (:mod:`~musicdiff.data.sources.online`);
* ``{"rendered": "bach-chorales", "limit": 20}`` -- a set rendered from scores with pip packages
  only (:mod:`~musicdiff.data.sources.rendered`);
* ``{"python_package": "fadtk", "path": "test/samples", "include": ["*.opus"]}`` -- audio files an
  installed Python package ships (:mod:`~musicdiff.data.sources.python_package`).

:func:`download_set` (:mod:`~musicdiff.data.sources.download`) fetches and verifies everything and
writes the set's folder: ``audio/``, ``licences/``, ``manifest.csv`` (one row per file, columns
:data:`MANIFEST_COLUMNS`), ``skipped.csv`` (matching entries that could not be used, with their
reason: :data:`SKIP_REASONS`), ``manifest.json`` (the summary, :mod:`musicdiff.data.summary`) and
``.download.json``.  Glob patterns and folder walking: :mod:`~musicdiff.data.sources.files`.

Adding a source kind is one new module that registers a
:class:`~musicdiff.data.sources.registry.SourceKind` (and is imported below, or by its user).
"""

from __future__ import annotations

# The built-in kinds register themselves on import; this order decides which key wins in a spec
# that holds several.
from musicdiff.data.sources import debian, online, rendered, local, python_package  # noqa: F401,I001
from musicdiff.data.sources.deb import extract_deb, extract_deb_python, fetch_deb, iter_ar_members
from musicdiff.data.sources.debian import DebianPackage
from musicdiff.data.sources.download import MANIFEST_COLUMNS, download_set, read_manifest, read_skipped
from musicdiff.data.sources.files import AUDIO_SUFFIXES, SKIP_REASONS, glob_match, skip_counts
from musicdiff.data.sources.registry import BuildContext, SourceKind, known_kinds, register, unregister
from musicdiff.data.hashing import sha256_file

__all__ = [
    "AUDIO_SUFFIXES",
    "MANIFEST_COLUMNS",
    "SKIP_REASONS",
    "BuildContext",
    "DebianPackage",
    "SourceKind",
    "download_set",
    "extract_deb",
    "extract_deb_python",
    "fetch_deb",
    "glob_match",
    "iter_ar_members",
    "known_kinds",
    "read_manifest",
    "read_skipped",
    "register",
    "sha256_file",
    "skip_counts",
    "unregister",
]
