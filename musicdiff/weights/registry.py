"""The weights each embedding needs: where they come from, where they are looked up, how they are checked.

Terms. A *registry entry* (:class:`WeightEntry`) is one thing an embedding needs besides code we ship:
a weight file, a folder of model code (the torch-hub repository of VGGish), or a Hugging Face
repository read from the HF cache (the tokenizers and text model laion_clap builds). Each embedding
(:data:`REQUIREMENTS`) needs one *main* weight file, whose SHA-256 goes into every result and cache
key as the embedding's ``weight_sha256``, plus zero or more other entries.

Lookup order for a file or folder entry: ``$MUSICDIFF_WEIGHTS/<subdir>/`` (default
``~/.cache/musicdiff/weights``, filled by ``musicdiff weights import``), then the standard caches the
upstream loaders write to: torch hub (``$TORCH_HOME/hub``), fadtk's ``<fadtk>/.model-checkpoints/``,
laion_clap's package folder, and the Hugging Face hub cache. The first place that holds the file is
used; a file there that fails its check is an error, never silently skipped.

Checks. ``sha256``: the full SHA-256 published for the file must match. ``sha256-prefix+size``: torch
hub names a checkpoint ``<name>-<first 8 hex digits of its SHA-256>.pth`` (what ``torch.hub``'s
``check_hash`` compares); we check that prefix and the published byte size, and record the full
SHA-256 found. ``unverified``: nothing is published to check against (``630k-audioset-best.pt``, the
torch-hub code folder, the HF repositories); the SHA-256 found is recorded (it is the weight hash of
every result computed with it) and the status says *unverified*. Digests of large files are
remembered in ``$MUSICDIFF_WEIGHTS/.sha256-memo.json`` keyed by path, size, mtime, ctime and inode,
so a file is hashed again only when it changed.

Nothing here downloads: a missing entry raises :class:`MissingWeightsError` whose message names the
file, every place searched, the download URL and the command that provides it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from musicdiff.data.hashing import sha256_file

WEIGHTS_ENV = "MUSICDIFF_WEIGHTS"
DEFAULT_WEIGHTS_DIR = "~/.cache/musicdiff/weights"
MEMO_NAME = ".sha256-memo.json"
IMPORT_COMMAND = "musicdiff weights import"


class MissingWeightsError(RuntimeError):
    """Weights an embedding needs are in none of the places searched (the message says how to add them)."""


class WeightsMismatchError(RuntimeError):
    """A weight file was found but is not the registered one (the message gives expected and found)."""


class UnknownWeightsError(LookupError):
    """``musicdiff weights import`` got a file that matches no registry entry."""


@dataclass(frozen=True)
class WeightEntry:
    """One registry entry.

    ``kind``: ``"file"`` (one file), ``"hub-repo"`` (a torch-hub code folder; ``filename`` is the
    folder name torch hub gives it) or ``"hf-repo"`` (a Hugging Face repository in the HF cache;
    ``filename`` is the repo id and ``hf_files`` lists the files needed, each tuple a set of
    alternatives of which one must be cached). ``subdir`` is the folder under ``$MUSICDIFF_WEIGHTS``.
    ``caches`` names the standard caches searched after it (see :func:`search_places`).
    ``unpacked``: (relative path, SHA-256) of a file extracted from this one that counts as present.
    """

    key: str
    filename: str
    description: str
    url: str
    licence: str
    kind: str = "file"
    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None
    subdir: str = ""
    caches: tuple[str, ...] = ()
    hf_files: tuple[tuple[str, ...], ...] = ()
    unpacked: tuple[str, str] | None = None
    get: str = ""  # how to obtain a folder / HF repo (files say: download the URL)

    @property
    def check(self) -> str:
        """How a found copy is checked: sha256 | sha256-prefix+size | unverified."""
        if self.sha256:
            return "sha256"
        if self.sha256_prefix and self.size is not None:
            return "sha256-prefix+size"
        return "unverified"


_CLAP_REPO = "lukewys/laion_clap"
_CLAP_URL = f"https://huggingface.co/{_CLAP_REPO}/resolve/main/"
_CLAP_LICENCE = "CC0-1.0 (as declared on the hub page huggingface.co/lukewys/laion_clap)"
_TVGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"


def _musicnn_entry() -> WeightEntry:
    from musicdiff.evaluation.embeddings import musicnn as mn  # constants only; the module imports no model at import

    return WeightEntry(
        key="musicnn", filename=mn.MUSICNN_WHEEL_FILENAME, subdir="musicnn", caches=("dvc-musicnn",),
        description="MusiCNN MSD_musicnn checkpoint inside the musicnn 0.1.0 wheel (fetched by the "
                    "weights@musicnn DVC stage / fetch_musicnn_checkpoint)",
        url="https://pypi.org/project/musicnn/0.1.0/ (python -m pip download --no-deps musicnn==0.1.0)",
        licence="ISC as declared by the wheel; the authors also distribute converted models under CC BY-NC-SA",
        sha256=mn.MUSICNN_WHEEL_SHA256,
        unpacked=(f"{mn.MUSICNN_MODEL}/{mn.DATA_FILE}", mn.MUSICNN_DATA_SHA256),
    )


REGISTRY: dict[str, WeightEntry] = {
    e.key: e
    for e in (
        WeightEntry(
            key="vggish", filename="vggish-10086976.pth", subdir="vggish", caches=("torch-hub-checkpoints",),
            description="VGGish checkpoint (torchvggish port of the TensorFlow AudioSet model)",
            url=_TVGGISH_URL + "vggish-10086976.pth", licence="Apache-2.0",
            sha256_prefix="10086976", size=288_567_937,
        ),
        WeightEntry(
            key="vggish-pca", filename="vggish_pca_params-970ea276.pth", subdir="vggish",
            caches=("torch-hub-checkpoints",),
            description="VGGish PCA/whitening parameters (only for PCA-postprocessed embeddings; musicdiff uses none)",
            url=_TVGGISH_URL + "vggish_pca_params-970ea276.pth", licence="Apache-2.0",
            sha256_prefix="970ea276", size=181_358,
        ),
        WeightEntry(
            key="vggish-hub", kind="hub-repo", filename="harritaylor_torchvggish_master", subdir="vggish",
            caches=("torch-hub",),
            description="torch-hub code of harritaylor/torchvggish (hubconf.py, VGGish model, vggish_input "
                        "preprocessing); loaded from the local folder, never from GitHub",
            url="https://github.com/harritaylor/torchvggish", licence="Apache-2.0",
            get="git clone https://github.com/harritaylor/torchvggish  (or unpack "
                "https://github.com/harritaylor/torchvggish/archive/refs/heads/master.zip)",
        ),
        WeightEntry(
            key="clap-laion-music", filename="music_audioset_epoch_15_esc_90.14.pt", subdir="clap",
            caches=("fadtk", f"hf:{_CLAP_REPO}"),
            description="LAION CLAP music checkpoint (HTSAT-base audio encoder)",
            url=_CLAP_URL + "music_audioset_epoch_15_esc_90.14.pt", licence=_CLAP_LICENCE,
            sha256="fae3e9c087f2909c28a09dc31c8dfcdacbc42ba44c70e972b58c1bd1caf6dedd",
        ),
        WeightEntry(
            key="clap-laion-audio", filename="630k-audioset-best.pt", subdir="clap",
            caches=("fadtk", f"hf:{_CLAP_REPO}", "laion_clap"),
            description="LAION CLAP 630k+AudioSet checkpoint (HTSAT-tiny audio encoder); no SHA-256 is "
                        "published, so the one found is recorded and reported as unverified",
            url=_CLAP_URL + "630k-audioset-best.pt", licence=_CLAP_LICENCE,
        ),
        WeightEntry(
            key="roberta-base", kind="hf-repo", filename="roberta-base",
            description="RoBERTa tokenizer and model: laion_clap builds its text branch from them (the CLAP "
                        "checkpoint then overwrites the model's weights)",
            url="https://huggingface.co/roberta-base", licence="MIT (as declared on the hub page)",
            hf_files=(("config.json",), ("vocab.json",), ("merges.txt",), ("model.safetensors", "pytorch_model.bin")),
        ),
        WeightEntry(
            key="bert-base-uncased", kind="hf-repo", filename="bert-base-uncased",
            description="BERT tokenizer vocabulary: laion_clap loads it when imported (laion_clap/training/data.py)",
            url="https://huggingface.co/bert-base-uncased", licence="Apache-2.0 (as declared on the hub page)",
            hf_files=(("vocab.txt",),),
        ),
        WeightEntry(
            key="bart-base", kind="hf-repo", filename="facebook/bart-base",
            description="BART tokenizer vocabulary: laion_clap loads it when imported (laion_clap/training/data.py)",
            url="https://huggingface.co/facebook/bart-base", licence="Apache-2.0 (as declared on the hub page)",
            hf_files=(("vocab.json",), ("merges.txt",)),
        ),
        _musicnn_entry(),
    )
}

_LAION_CLAP_HF = ("roberta-base", "bert-base-uncased", "bart-base")
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    # embedding -> registry keys it needs; the first is its main weight file (its weight_sha256)
    "vggish": ("vggish", "vggish-hub"),
    "clap-laion-audio": ("clap-laion-audio", *_LAION_CLAP_HF),
    "clap-laion-music": ("clap-laion-music", *_LAION_CLAP_HF),
    "musicnn": ("musicnn",),
}
OPTIONAL: dict[str, tuple[str, ...]] = {"vggish": ("vggish-pca",)}


# ============================================================================ places
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


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read_memo() -> dict:
    try:
        memo = json.loads(_memo_path().read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _remember(path: Path, key: list[int], digest: str) -> None:
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
    key = _stat_key(path.stat())
    hit = _read_memo().get(str(path))
    if isinstance(hit, dict) and hit.get("stat") == key and isinstance(hit.get("sha256"), str):
        return hit["sha256"]
    digest = sha256_file(path)
    if _stat_key(path.stat()) == key:  # do not remember a digest of a file that changed while being read
        _remember(path, key, digest)
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


# ============================================================================ import
def _entry_for(path: Path, name: str | None) -> WeightEntry:
    if name is not None:
        if name not in REGISTRY:
            raise UnknownWeightsError(f"no registry entry {name!r}; known: {sorted(REGISTRY)}")
        entry = REGISTRY[name]
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
        _remember(dest.resolve(), _stat_key(dest.stat()), expected_sha256)  # its bytes were just hashed
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
