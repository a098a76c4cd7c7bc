"""Reference sets that exist only as statistics: FMA-Pop, as shipped in the fadtk wheel.

fadtk 1.1.0 ships ``fadtk/stats/fma_pop.npz``: for each embedding it covers, the mean
``<embedding>.mu`` (dim,) and covariance ``<embedding>.cov`` (dim, dim), float64, computed by the
fadtk authors (Gui et al. 2024) on their FMA-Pop subset of the Free Music Archive (4,839 tracks,
listed in ``datasets/fma_pop_tracks.csv`` of the fadtk repository, not in the wheel). The audio is
not needed, so FMA-Pop can be a reference set on a machine without network.

What statistics allow, and what they do not:

* FAD against them works (:func:`musicdiff.evaluation.metrics.fad.fad_score` takes a ``GaussianStats``), and so
  does FAD-inf (:func:`musicdiff.evaluation.metrics.kad.fad_inf` subsamples only the *evaluation* clips);
* KAD needs the reference embeddings themselves, and nothing can resample the reference (no
  bootstrap over reference clips, no split-half baseline);
* the number of embedding frames behind them is not shipped: :func:`fma_pop_stats` returns
  ``n=0`` (read it as "unknown"), so a result's ``n_ref`` is 0;
* they are only comparable with evaluation embeddings computed the way fadtk computes them (its
  model loaders, sample rates and windowing), not with this suite's MusiCNN embeddings.
"""

from __future__ import annotations

import base64
import importlib.util
import os
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np

from musicdiff.data.hashing import sha256_file
from musicdiff.evaluation.metrics.fad import GaussianStats

__all__ = ["FMA_POP_TRACKS", "SHIPPED_SOURCES", "fma_pop_embeddings", "fma_pop_manifest", "fma_pop_path",
           "fma_pop_stats", "shipped_statistics"]

FMA_POP_TRACKS = 4839  # fadtk README (package METADATA): "the subset of 4839 song IDs"
_MEMBER = "fadtk/stats/fma_pop.npz"


def fma_pop_path() -> Path:
    """Path of ``fma_pop.npz`` in the installed fadtk (found without importing fadtk, which is slow).

    Raises:
        FileNotFoundError: fadtk is not installed, or its wheel lacks the statistics.
    """
    spec = importlib.util.find_spec("fadtk")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("fadtk is not installed (pip install fadtk==1.1.0); it ships the FMA-Pop statistics")
    path = Path(list(spec.submodule_search_locations)[0]) / "stats" / "fma_pop.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: this fadtk ({_fadtk_version()}) does not ship FMA-Pop statistics")
    return path


def _fadtk_version() -> str:
    try:
        return metadata.version("fadtk")
    except metadata.PackageNotFoundError:
        return "unknown"


def _record_sha256() -> str | None:
    """The SHA-256 (hex) the wheel's RECORD lists for the npz, if the installed RECORD has it."""
    try:
        files = metadata.distribution("fadtk").files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.as_posix() == _MEMBER and f.hash is not None and f.hash.mode == "sha256":
            return base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4)).hex()
    return None


@lru_cache(maxsize=1)
def _verified(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of the npz, checked against fadtk's RECORD (cached per file state)."""
    digest = sha256_file(path)
    listed = _record_sha256()
    if listed is not None and listed != digest:
        raise ValueError(f"{path}: SHA-256 {digest} differs from the {listed} that fadtk's RECORD lists; "
                         "the installation is damaged (reinstall fadtk)")
    return digest


def _load() -> tuple[Path, str, np.lib.npyio.NpzFile]:
    path = fma_pop_path()
    st = os.stat(path)
    return path, _verified(str(path), st.st_size, st.st_mtime_ns), np.load(path)


def fma_pop_embeddings() -> list[str]:
    """Names of the embeddings that the shipped FMA-Pop statistics cover (fadtk's names), sorted."""
    with np.load(fma_pop_path()) as npz:
        names = {k.rsplit(".", 1)[0] for k in npz.files if k.endswith(".mu")}
        return sorted(n for n in names if f"{n}.cov" in npz.files)


def fma_pop_stats(embedding: str) -> GaussianStats:
    """FMA-Pop mean (dim,) and covariance (dim, dim) of ``embedding``, float64, with ``n=0`` (unknown).

    ``embedding`` uses fadtk's names, e.g. ``vggish``, ``clap-laion-audio``, ``clap-laion-music``,
    ``encodec-emb``, ``MERT-v1-95M-4`` (see :func:`fma_pop_embeddings`). The file is checked against
    the SHA-256 in fadtk's RECORD before use.

    Raises:
        KeyError: the statistics do not cover ``embedding`` (the message lists those they cover).
        FileNotFoundError: fadtk or its statistics are not installed.
        ValueError: the file differs from fadtk's RECORD, or the arrays are malformed.
    """
    path, _, npz = _load()
    with npz:
        covered = sorted({k.rsplit(".", 1)[0] for k in npz.files if k.endswith(".mu")})
        if f"{embedding}.mu" not in npz.files or f"{embedding}.cov" not in npz.files:
            raise KeyError(f"the FMA-Pop statistics shipped with fadtk do not cover {embedding!r}; "
                           f"they cover: {', '.join(covered)}")
        mu = np.asarray(npz[f"{embedding}.mu"], dtype=np.float64)
        cov = np.asarray(npz[f"{embedding}.cov"], dtype=np.float64)
    if mu.ndim != 1 or cov.shape != (mu.size, mu.size) or not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise ValueError(f"{path}: {embedding} has mu {mu.shape} and cov {cov.shape}, expected (d,) and (d, d), finite")
    return GaussianStats(mu=mu, cov=cov, n=0)


def fma_pop_manifest() -> dict:
    """Summary of the shipped FMA-Pop statistics, in the spirit of a set's ``manifest.json``.

    Keys: ``schema``, ``kind`` (``"statistics"``), ``set`` (``"fma-pop"``), ``provenance`` (fadtk
    version, the npz's path inside the wheel and on disk, its SHA-256 and whether it matched the
    wheel's RECORD, the track list), ``licences``, ``embeddings`` (name -> ``{"dim"}``),
    ``n_tracks``, ``n_frames`` (``None``: not shipped) and ``metrics`` (what can and cannot be
    computed against statistics). Write it with :func:`musicdiff.data.summary.write_summary`.
    """
    from musicdiff.data.summary import SCHEMA

    path, digest, npz = _load()
    with npz:
        dims = {k.rsplit(".", 1)[0]: int(npz[k].shape[0]) for k in sorted(npz.files) if k.endswith(".mu")}
    return {
        "schema": SCHEMA,
        "kind": "statistics",
        "set": "fma-pop",
        "provenance": {
            "kind": "pip",
            "package": "fadtk",
            "version": _fadtk_version(),
            "path_in_wheel": _MEMBER,
            "path": str(path),
            "sha256": digest,
            "matches_wheel_record": _record_sha256() == digest,
            "track_list": f"FMA-Pop track list from fadtk ({FMA_POP_TRACKS} tracks, datasets/fma_pop_tracks.csv "
                          "in the fadtk repository; audio from the Free Music Archive, not included)",
            "url": "https://github.com/microsoft/fadtk",
        },
        "licences": {"fadtk": {"copyright_file": "", "licences": ["MIT"], "files_star": "MIT"}},
        "embeddings": {name: {"dim": d} for name, d in dims.items()},
        "n_tracks": FMA_POP_TRACKS,
        "n_frames": None,
        "metrics": {"possible": ["fad", "fad_inf (evaluation-side subsets)", "bootstrap over evaluation clips"],
                    "impossible": ["kad", "reference bootstrap or split-half", "n_ref (frame count not shipped)"]},
    }


#: Shipped statistics by source name (params.yaml ``reference_stats`` values, ``musicdiff fad --ref``):
#: ``(embeddings covered, loader of GaussianStats)``.
SHIPPED_SOURCES = {"fadtk/fma_pop": (fma_pop_embeddings, fma_pop_stats)}


def shipped_statistics(source: str, embedding: str) -> GaussianStats | None:
    """The statistics of ``embedding`` shipped as ``source`` (a key of :data:`SHIPPED_SOURCES`), or None
    when that source does not cover the embedding. Raises ``KeyError`` naming the known sources."""
    if source not in SHIPPED_SOURCES:
        raise KeyError(f"unknown shipped statistics {source!r}; known: {sorted(SHIPPED_SOURCES)}")
    covered, load = SHIPPED_SOURCES[source]
    return load(embedding) if embedding in covered() else None
