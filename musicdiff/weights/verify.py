"""Finding and checking the registered weights: where each entry is looked for, SHA-256 checks (with a
memo of digests), and, per embedding, what was found (:func:`resolve`) or each entry's state (:func:`status`).

Lookup order for a file or folder entry: ``$MUSICDIFF_WEIGHTS/<subdir>/`` (default
``~/.cache/musicdiff/weights``, filled by ``musicdiff weights import``), then the standard caches the
upstream loaders write to: torch hub (``$TORCH_HOME/hub``), fadtk's ``<fadtk>/.model-checkpoints/``,
laion_clap's package folder, and the Hugging Face hub cache. The first place that holds the file is
used; a file there that fails its check is an error, never silently skipped. Digests of large files are
remembered in ``$MUSICDIFF_WEIGHTS/.sha256-memo.json`` keyed by path, size, mtime, ctime and inode,
so a file is hashed again only when it changed.

Nothing here downloads: a missing entry raises :class:`~musicdiff.weights.registry.MissingWeightsError`
whose message names the file, every place searched, the download URL and the command that provides it
(:func:`missing_message`; it lives beside :func:`resolve`, which raises it, and lists the places
searched; :mod:`musicdiff.weights.fetch` builds on this module, so it cannot hold it without a cycle).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from musicdiff.data.hashing import sha256_file
from musicdiff.weights.registry import (
    DEFAULT_WEIGHTS_DIR,
    IMPORT_COMMAND,
    OPTIONAL,
    REGISTRY,
    REQUIREMENTS,
    WEIGHTS_ENV,
    MissingWeightsError,
    WeightEntry,
    WeightsMismatchError,
)

MEMO_NAME = ".sha256-memo.json"


def weights_dir() -> Path:
    """``$MUSICDIFF_WEIGHTS``, default ``~/.cache/musicdiff/weights`` (read at each call)."""
    return Path(os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS_DIR).expanduser()


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, by huggingface_hub's rule, read from the environment at each call:
    ``$HF_HUB_CACHE``, else ``$HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub`` (``$HF_HOME`` defaulting
    to ``$XDG_CACHE_HOME/huggingface``, ``~/.cache/huggingface``)."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def torch_hub_dir() -> Path:
    """torch hub's folder (``$TORCH_HOME/hub``, default ``~/.cache/torch/hub``), as ``torch.hub.get_dir``."""
    import torch.hub

    return Path(torch.hub.get_dir())


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # locates without importing
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def hf_snapshot(repo_id: str) -> Path:
    """The snapshot folder ``<HF cache>/models--<org>--<name>/snapshots/<revision of main>`` (the revision
    is read from ``refs/main``; ``<main>`` stands in when the repository was never cached)."""
    repo = hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    revision = ref.read_text().strip() if ref.is_file() else "<main>"
    return repo / "snapshots" / revision


@dataclass(frozen=True)
class Place:
    """A path that would hold an entry (``unpacked``: it would hold the entry's unpacked form)."""

    path: Path
    label: str
    unpacked: bool = False


def search_places(entry: WeightEntry) -> list[Place]:
    """Every place :func:`resolve` looks for ``entry``, in order."""
    if entry.kind == "hf-repo":
        return [Place(hf_snapshot(entry.filename), "Hugging Face hub cache")]
    own = weights_dir() / entry.subdir
    places = [Place(own / entry.filename, f"${WEIGHTS_ENV}")]
    if entry.unpacked:
        places.append(Place(own / entry.unpacked[0], f"${WEIGHTS_ENV}, unpacked", unpacked=True))
    for cache in entry.caches:
        if cache == "torch-hub-checkpoints":
            places.append(Place(torch_hub_dir() / "checkpoints" / entry.filename, "torch hub checkpoints"))
        elif cache == "torch-hub":
            places.append(Place(torch_hub_dir() / entry.filename, "torch hub code cache"))
        elif cache in ("fadtk", "laion_clap"):
            root = _package_dir(cache)
            if root is not None:
                folder = root / ".model-checkpoints" if cache == "fadtk" else root
                places.append(Place(folder / entry.filename, f"{cache}'s checkpoint folder"))
        elif cache.startswith("hf:"):
            places.append(Place(hf_snapshot(cache[3:]) / entry.filename, f"Hugging Face hub cache ({cache[3:]})"))
        elif cache == "dvc-musicnn" and entry.unpacked:
            places.append(Place(Path.cwd() / "data" / "weights" / "musicnn" / entry.unpacked[0],
                                "output of the weights@musicnn DVC stage (data/weights/musicnn)", unpacked=True))
    return places


# ============================================================================ hashing
def _memo_path() -> Path:
    return weights_dir() / MEMO_NAME


def stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read_memo() -> dict:
    try:
        memo = json.loads(_memo_path().read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def remember(path: Path, key: list[int], digest: str) -> None:
    """Store ``digest`` for ``path`` in the memo (atomically; silently skipped when unwritable)."""
    memo_file = _memo_path()
    memo = _read_memo()
    memo[str(path)] = {"stat": key, "sha256": digest}
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=memo_file.parent, prefix=f".{MEMO_NAME}.")
        with os.fdopen(fd, "w") as fh:
            json.dump(memo, fh, indent=0, sort_keys=True)
        os.replace(tmp, memo_file)
    except OSError:
        pass


def file_sha256(path: Path) -> str:
    """SHA-256 of ``path``, remembered in ``$MUSICDIFF_WEIGHTS/.sha256-memo.json`` under its absolute path,
    size, mtime, ctime and inode: an unchanged file is not read again, a changed one always is. A memo
    that cannot be read or written is ignored."""
    path = Path(path).resolve()
    key = stat_key(path.stat())
    hit = _read_memo().get(str(path))
    if isinstance(hit, dict) and hit.get("stat") == key and isinstance(hit.get("sha256"), str):
        return hit["sha256"]
    digest = sha256_file(path)
    if stat_key(path.stat()) == key:  # do not remember a digest of a file that changed while being read
        remember(path, key, digest)
    return digest


def tree_sha256(folder: Path) -> str:
    """SHA-256 over the relative names and bytes of the ``*.py`` files under ``folder`` (sorted)."""
    digest = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*.py") if p.is_file() and ".git" not in p.parts):
        digest.update(str(f.relative_to(folder)).encode() + b"\0")
        digest.update(bytes.fromhex(sha256_file(f)))
    return digest.hexdigest()


# ============================================================================ checking
@dataclass(frozen=True)
class Found:
    """An entry found at ``path`` and checked.

    ``sha256``: SHA-256 of the file (of the unpacked file for an unpacked form; :func:`tree_sha256` of a
    code folder; None for an HF repository, whose ``note`` gives the revision). ``check``: how it was
    checked (``sha256``, ``sha256-prefix+size``, ``unverified``).
    """

    entry: WeightEntry
    path: Path
    where: str
    sha256: str | None
    check: str
    note: str = ""

    @property
    def verified(self) -> bool:
        return self.check != "unverified"


def _mismatch(entry: WeightEntry, path: Path, expected: str, found: str) -> WeightsMismatchError:
    return WeightsMismatchError(
        f"{path} is not the registered {entry.filename} ({entry.description}): expected {expected}, found "
        f"{found}. Remove or replace it; the genuine file is at {entry.url} (`{IMPORT_COMMAND} FILE` checks "
        "and installs a download).")


def check_file(entry: WeightEntry, path: Path, where: str = "", unpacked: bool = False) -> Found:
    """Check the file ``path`` against ``entry`` (or its unpacked form); raise :class:`WeightsMismatchError`."""
    path = Path(path)
    if unpacked:
        digest = file_sha256(path)
        if digest != entry.unpacked[1]:
            raise _mismatch(entry, path, f"SHA-256 {entry.unpacked[1]}", f"SHA-256 {digest}")
        return Found(entry, path, where, digest, "sha256", note=f"unpacked {entry.unpacked[0]}")
    if entry.size is not None and path.stat().st_size != entry.size:
        raise _mismatch(entry, path, f"{entry.size:,} bytes", f"{path.stat().st_size:,} bytes")
    digest = file_sha256(path)
    if entry.sha256 and digest != entry.sha256:
        raise _mismatch(entry, path, f"SHA-256 {entry.sha256}", f"SHA-256 {digest}")
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        raise _mismatch(entry, path, f"a SHA-256 starting {entry.sha256_prefix}", f"SHA-256 {digest}")
    return Found(entry, path, where, digest, entry.check)


def check_hub_repo(entry: WeightEntry, folder: Path, where: str = "") -> Found:
    """Check that ``folder`` is a torch-hub repository whose hubconf.py defines ``vggish``; unverified
    (no published hash of the code), its :func:`tree_sha256` is recorded."""
    hubconf = Path(folder) / "hubconf.py"
    if not hubconf.is_file() or "def vggish(" not in hubconf.read_text(errors="replace"):
        raise WeightsMismatchError(
            f"{folder} is not a torch-hub checkout of {entry.url}: it has no hubconf.py defining vggish(). "
            f"Get it with: {entry.get}")
    return Found(entry, Path(folder), where, tree_sha256(folder), "unverified", note="code folder")


def _find_hf(entry: WeightEntry, place: Place) -> tuple[Found | None, list[str]]:
    """(Found, []) when every needed file of the HF repo is cached, else (None, missing file names)."""
    missing = [" or ".join(alts) for alts in entry.hf_files if not any((place.path / f).is_file() for f in alts)]
    if missing:
        return None, missing
    return Found(entry, place.path, place.label, None, "unverified", note=f"revision {place.path.name}"), []


def find(entry: WeightEntry) -> Found | None:
    """The first copy of ``entry`` in :func:`search_places`, checked; None when there is none.
    Raises :class:`WeightsMismatchError` when the first copy found fails its check."""
    for place in search_places(entry):
        if entry.kind == "hf-repo":
            return _find_hf(entry, place)[0]
        if entry.kind == "hub-repo":
            if place.path.is_dir():
                return check_hub_repo(entry, place.path, place.label)
        elif place.path.is_file():
            return check_file(entry, place.path, place.label, unpacked=place.unpacked)
    return None


def _how_to_get(entry: WeightEntry) -> str:
    if entry.kind == "hf-repo":
        files = " ".join(alts[0] for alts in entry.hf_files)
        return (f"  get it on a machine with network access:  huggingface-cli download {entry.filename} {files}\n"
                f"  then copy the folder models--{entry.filename.replace('/', '--')} from that machine's Hugging Face "
                f"cache into this machine's ({hf_hub_cache()}); `{IMPORT_COMMAND}` does not take Hugging Face "
                "repositories.")
    if entry.kind == "hub-repo":
        return f"  get it on a machine with network access:  {entry.get}\n  then run:  {IMPORT_COMMAND} PATH/TO/torchvggish"
    size = f"{entry.size:,} bytes, " if entry.size else ""
    check = (f"SHA-256 {entry.sha256}" if entry.sha256 else
             f"SHA-256 starting {entry.sha256_prefix}" if entry.sha256_prefix else "no published SHA-256")
    return (f"  download it on a machine with network access ({size}{check}):  {entry.url}\n"
            f"  then run:  {IMPORT_COMMAND} PATH/TO/{entry.filename}")


def missing_message(embedding: str, entries: list[WeightEntry]) -> str:
    """The text of a :class:`MissingWeightsError`: per entry, its name, the places searched and how to add it."""
    lines = [f"embedding {embedding!r} cannot load: {len(entries)} required item(s) missing "
             "(nothing is downloaded; `musicdiff weights` lists every entry)."]
    for entry in entries:
        lines.append(f"- {entry.filename}: {entry.description}; licence {entry.licence}")
        lines.append("  searched:")
        for place in search_places(entry):
            lines.append(f"    {place.path}  ({place.label})")
        if entry.kind == "hf-repo":
            _, absent = _find_hf(entry, search_places(entry)[0])
            lines.append(f"  files not cached there: {', '.join(absent)}")
        lines.append(_how_to_get(entry))
    return "\n".join(lines)


@dataclass(frozen=True)
class ResolvedWeights:
    """What :func:`resolve` found for an embedding: ``found[key]`` for each registry key it needs."""

    embedding: str
    found: dict[str, Found] = field(default_factory=dict)

    @property
    def main(self) -> Found:
        return self.found[REQUIREMENTS[self.embedding][0]] if self.embedding in REQUIREMENTS else next(iter(self.found.values()))

    @property
    def checkpoint(self) -> Path:
        """The main weight file."""
        return self.main.path

    @property
    def weight_sha256(self) -> str:
        """SHA-256 of the main weight file (goes into results and embedding-cache keys)."""
        return self.main.sha256

    @property
    def verified(self) -> bool:
        """Whether the main weight file was checked against a published hash."""
        return self.main.verified

    def path(self, key: str) -> Path:
        return self.found[key].path


def resolve(embedding: str) -> ResolvedWeights:
    """Find and check everything ``embedding`` needs (:data:`REQUIREMENTS`).

    Raises ``KeyError`` for an embedding without registered weights, :class:`WeightsMismatchError` when
    a copy found fails its check, and :class:`MissingWeightsError` naming every missing item, each
    place searched, the URL and the command that provides it.
    """
    if embedding not in REQUIREMENTS:
        raise KeyError(f"no registered weights for {embedding!r}; known: {sorted(REQUIREMENTS)}")
    found, missing = {}, []
    for key in REQUIREMENTS[embedding]:
        hit = find(REGISTRY[key])
        if hit is None:
            missing.append(REGISTRY[key])
        else:
            found[key] = hit
    if missing:
        raise MissingWeightsError(missing_message(embedding, missing))
    return ResolvedWeights(embedding, found)


# ============================================================================ listing
@dataclass(frozen=True)
class WeightStatus:
    """One row of :func:`status`: an entry an embedding needs (or may use), and what was found."""

    embedding: str
    entry: WeightEntry
    required: bool
    found: Found | None
    problem: str | None = None

    @property
    def state(self) -> str:
        return "mismatch" if self.problem else "present" if self.found else "missing"


def status() -> list[WeightStatus]:
    """Every (embedding, entry) pair of the registry with what was found; never raises for a bad file
    (its row carries the mismatch in ``problem``). Each entry is looked up once."""
    seen: dict[str, tuple[Found | None, str | None]] = {}
    rows = []
    for embedding, keys in REQUIREMENTS.items():
        for key, required in [(k, True) for k in keys] + [(k, False) for k in OPTIONAL.get(embedding, ())]:
            if key not in seen:
                try:
                    seen[key] = (find(REGISTRY[key]), None)
                except WeightsMismatchError as error:
                    seen[key] = (None, str(error))
            hit, problem = seen[key]
            rows.append(WeightStatus(embedding, REGISTRY[key], required, hit, problem))
    return rows
