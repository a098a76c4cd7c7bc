"""The registry of the weights each embedding needs: what each entry is and where it comes from.

Terms. A *registry entry* (:class:`WeightEntry`) is one thing an embedding needs besides code we ship:
a weight file, a folder of model code (the torch-hub repository of VGGish), or a Hugging Face
repository read from the HF cache (the tokenizers and text model laion_clap builds). Each embedding
(:data:`REQUIREMENTS`) needs one *main* weight file, whose SHA-256 goes into every result and cache
key as the embedding's ``weight_sha256``, plus zero or more other entries.

Checks. ``sha256``: the full SHA-256 published for the file must match. ``sha256-prefix+size``: torch
hub names a checkpoint ``<name>-<first 8 hex digits of its SHA-256>.pth`` (what ``torch.hub``'s
``check_hash`` compares); we check that prefix and the published byte size, and record the full
SHA-256 found. ``unverified``: nothing is published to check against (``630k-audioset-best.pt``, the
torch-hub code folder, the HF repositories); the SHA-256 found is recorded (it is the weight hash of
every result computed with it) and the status says *unverified*.

This module is data only (it imports no network code): finding and checking a copy is
:mod:`musicdiff.weights.verify`, importing and downloading one :mod:`musicdiff.weights.fetch`.
"""

from __future__ import annotations

from dataclasses import dataclass

WEIGHTS_ENV = "MUSICDIFF_WEIGHTS"
DEFAULT_WEIGHTS_DIR = "~/.cache/musicdiff/weights"
IMPORT_COMMAND = "musicdiff weights import"

# The MusiCNN checkpoint: the MSD_musicnn TensorFlow-1 bundle inside the PyPI wheel musicnn==0.1.0,
# used only as data (fetched by :func:`musicdiff.weights.fetch.fetch_musicnn_checkpoint`).
MUSICNN_WHEEL = "musicnn==0.1.0"
MUSICNN_WHEEL_FILENAME = "musicnn-0.1.0-py3-none-any.whl"
MUSICNN_WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
MUSICNN_DATA_SHA256 = "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6"
MUSICNN_MODEL = "MSD_musicnn"
DATA_FILE = ".data-00000-of-00001"  # the bundle's files have an empty basename: the folder is the prefix
INDEX_FILE = ".index"


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
        WeightEntry(
            key="musicnn", filename=MUSICNN_WHEEL_FILENAME, subdir="musicnn", caches=("dvc-musicnn",),
            description="MusiCNN MSD_musicnn checkpoint inside the musicnn 0.1.0 wheel (fetched by the "
                        "weights@musicnn DVC stage / fetch_musicnn_checkpoint)",
            url="https://pypi.org/project/musicnn/0.1.0/ (python -m pip download --no-deps musicnn==0.1.0)",
            licence="ISC as declared by the wheel; the authors also distribute converted models under CC BY-NC-SA",
            sha256=MUSICNN_WHEEL_SHA256,
            unpacked=(f"{MUSICNN_MODEL}/{DATA_FILE}", MUSICNN_DATA_SHA256),
        ),
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


def entry_named(name: str) -> WeightEntry:
    """The registry entry called ``name``; raises :class:`UnknownWeightsError` naming the known ones."""
    if name not in REGISTRY:
        raise UnknownWeightsError(f"no registry entry {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name]
