"""Captioned training tensors of the text-conditioned variant: clips of several prepared sets, each
with a caption taken from package-level metadata.

Captions describe what a whole source is (a Debian package of orchestral game music, of drum kits,
...), not each clip: they are genre/mood labels written once per package in ``params.yaml``
(``captions:``, keyed by the prepared manifest's ``package`` column), with a label-level fallback
(a ``captions`` key equal to the label name) for clips whose package is not listed (a ``local``
folder has no Debian package). The empty caption is reserved for the unconditional input of
classifier-free guidance and is rejected here.

A label names the clips of one prepared set and split (``"wesnoth/train"``: the rows of
``<prepared>/wesnoth/manifest.csv`` whose ``split`` is ``train``); ``max_clips_per_label`` keeps a
seeded subset per label (NumPy ``default_rng([seed, crc32(label)])``, without replacement, in
manifest order), so a large set does not drown the others and one label's subset does not depend on
the other labels.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from musicdiff.features.dataset import mel_dataset
from musicdiff.features.mel import MelTransform

TENSORS = "train.safetensors"
CAPTIONS = "captions.json"


@dataclass(frozen=True)
class CaptionedClip:
    """One prepared clip (``path``) with its ``label``, its source ``package`` and its ``caption``."""

    path: Path
    label: str
    package: str
    caption: str


def caption_of(package: str, label: str, captions: dict[str, str]) -> str:
    """The caption of a clip from ``package`` under ``label``: ``captions[package]``, else
    ``captions[label]``. Raises ``ValueError`` naming the package, the label and ``captions`` in
    params.yaml when neither is there, and for an empty caption (reserved for the unconditional
    input)."""
    key = package if package in captions else label if label in captions else None
    if key is None:
        raise ValueError(f"no caption for package {package!r} (label {label!r}): add `{package}: \"...\"` to "
                         f"`captions` in params.yaml, or a label-level fallback `{label}: \"...\"`")
    caption = captions[key]
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"captions.{key} in params.yaml must be a non-empty string (the empty caption is the "
                         f"unconditional input), got {caption!r}")
    return caption


def captioned_clips(prepared_root: Path, labels: dict[str, str], captions: dict[str, str],
                    max_clips_per_label: int | None = None, seed: int = 0) -> list[CaptionedClip]:
    """The clips of every label, labels in sorted order, each label's clips in manifest order.

    ``labels`` maps a label to ``"<set>/<split>"`` of a prepared set under ``prepared_root`` (a
    folder holding ``manifest.csv`` with columns ``clip`` (path relative to the set folder),
    ``split`` and ``package``). Raises ``ValueError`` for a malformed ``"<set>/<split>"``, a split
    with no clips, ``max_clips_per_label < 1`` or a clip without a caption (see :func:`caption_of`),
    and ``FileNotFoundError`` naming a missing manifest or clip.
    """
    if max_clips_per_label is not None and int(max_clips_per_label) < 1:
        raise ValueError(f"max_clips_per_label must be at least 1 (or absent), got {max_clips_per_label}")
    if not labels:
        raise ValueError("no labels: text_features.<name>.labels must map a label to a prepared '<set>/<split>'")
    out = []
    for label in sorted(labels):
        source = labels[label]
        parts = str(source).split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"label {label!r}: expected '<set>/<split>' of a prepared set, got {source!r}")
        set_name, split = parts
        manifest_path = Path(prepared_root) / set_name / "manifest.csv"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"label {label!r}: {manifest_path} does not exist (prepare the set "
                                    f"{set_name!r} first: stage prepare@{set_name})")
        manifest = pd.read_csv(manifest_path, dtype={"clip": str, "split": str, "package": str})
        rows = manifest[manifest["split"] == split].sort_values("clip", kind="stable")
        if rows.empty:
            raise ValueError(f"label {label!r}: {manifest_path} has no clips in split {split!r} "
                             f"(splits there: {sorted(manifest['split'].unique())})")
        if max_clips_per_label is not None and len(rows) > int(max_clips_per_label):
            rng = np.random.default_rng([int(seed), zlib.crc32(label.encode())])
            rows = rows.iloc[np.sort(rng.choice(len(rows), size=int(max_clips_per_label), replace=False))]
        for clip, package in zip(rows["clip"], rows["package"].fillna("")):
            path = manifest_path.parent / clip
            if not path.is_file():
                raise FileNotFoundError(f"label {label!r}: {path} is listed in {manifest_path} but missing")
            out.append(CaptionedClip(path, label, package, caption_of(package, label, captions)))
    return out


@dataclass
class TextFeatures:
    """The training tensor of a text-conditioned variant and its captions.

    ``x``: float32 (examples, 1, n_mels, frames) scaled log-mels in [-1, 1]; ``caption_index``: long
    (examples,), each example's position in ``captions`` (0-based; the train stage adds 1 for the
    empty caption's row); ``captions``: the unique captions, sorted; ``labels``: label -> its
    captions (sorted); ``examples_per_label`` and ``clips_per_label``: counts.
    """

    x: torch.Tensor
    caption_index: torch.Tensor
    captions: list[str]
    labels: dict[str, list[str]]
    examples_per_label: dict[str, int]
    clips_per_label: dict[str, int]

    def save(self, folder: Path) -> None:
        """Write ``train.safetensors`` (``x``, ``caption_index``) and ``captions.json`` into ``folder``
        (the caller makes the folder atomic, as the stage's ``atomic_dir``)."""
        folder = Path(folder)
        save_file({"x": self.x.contiguous(), "caption_index": self.caption_index.contiguous()}, str(folder / TENSORS))
        (folder / CAPTIONS).write_text(json.dumps(
            {"captions": self.captions, "labels": self.labels, "examples_per_label": self.examples_per_label,
             "clips_per_label": self.clips_per_label}, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> TextFeatures:
        """Read what :meth:`save` wrote. Raises ``FileNotFoundError`` for a missing file."""
        folder = Path(folder)
        tensors = load_file(str(folder / TENSORS))
        meta = json.loads((folder / CAPTIONS).read_text())
        return cls(tensors["x"], tensors["caption_index"], meta["captions"], meta["labels"],
                   meta["examples_per_label"], meta.get("clips_per_label", {}))


def text_mel_dataset(clips: list[CaptionedClip], transform: MelTransform, frames: int, crops_per_clip: int = 1,
                     progress: bool = True) -> TextFeatures:
    """Scaled log-mels of ``frames`` frames of every clip (as ``mel_dataset``: up to
    ``crops_per_clip`` consecutive windows per clip, every crop keeps its clip's caption), in the
    order of ``clips``. Raises ``ValueError`` for no clips, and ``mel_dataset``'s ``ValueError``
    naming a clip too short for one window.
    """
    if not clips:
        raise ValueError("no captioned clips")
    captions = sorted({c.caption for c in clips})
    row = {caption: i for i, caption in enumerate(captions)}
    xs, index = [], []
    examples: dict[str, int] = {}
    for clip in tqdm(clips, desc="text mel", disable=not progress):
        x = mel_dataset([clip.path], transform, frames, progress=False, crops_per_clip=crops_per_clip)
        xs.append(x)
        index += [row[clip.caption]] * len(x)
        examples[clip.label] = examples.get(clip.label, 0) + len(x)
    examples = {label: examples[label] for label in sorted(examples)}
    labels = {label: sorted({c.caption for c in clips if c.label == label}) for label in examples}
    n_clips = {label: sum(c.label == label for c in clips) for label in labels}
    return TextFeatures(torch.cat(xs), torch.tensor(index, dtype=torch.long), captions, labels, examples, n_clips)
