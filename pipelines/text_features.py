"""Stage text_features@<name>: the captioned mel training tensor of a text-conditioned variant.

Reads the prepared sets named by ``text_features.<name>.labels`` (``label: <set>/<split>``) and the
package-level ``captions``; writes ``data/text_features/<name>/``: ``train.safetensors`` (``x``
(examples, 1, n_mels, frames), ``caption_index`` (examples,)), ``captions.json`` and
``representation.json`` (musicdiff.features.captions).
"""

from __future__ import annotations

import torch

from musicdiff.features.captions import captioned_clips, text_mel_dataset
from musicdiff.features.mel import MelConfig, MelTransform
from musicdiff.generation.representation import Representation
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, atomic_dir, load_params, parser, record_path


def main() -> None:
    args = parser(__doc__, "--name").parse_args()
    params = load_params()
    spec = params["text_features"][args.name]
    sample_rate = params["audio"]["sample_rate"]
    prepared = ROOT / "data" / "prepared"
    out_dir = ROOT / "data" / "text_features" / args.name
    manifests = sorted({prepared / source.split("/")[0] / "manifest.csv" for source in spec["labels"].values()})
    with stage_run("text_features", args.name, record_path("text_features", args.name),
                   tags={"labels": ",".join(sorted(spec["labels"]))}, data_paths=manifests) as run:
        clips = captioned_clips(prepared, spec["labels"], params.get("captions") or {},
                                spec.get("max_clips_per_label"), seed=params["seed"])
        frames, n_mels = spec["resolution"]
        config = MelConfig(sample_rate=sample_rate, n_mels=n_mels, **params["mel"])  # decode knobs: `decode`
        features = text_mel_dataset(clips, MelTransform(config), frames, int(spec.get("crops_per_clip", 1)))
        representation = Representation("mel", sample_rate, tuple(features.x.shape[1:]), frames=frames,
                                         mel=config.to_dict())
        run.log_params({"text_features": spec, "captions": features.labels,
                        "representation": representation.to_dict()})
        with atomic_dir(out_dir) as tmp:
            features.save(tmp)
            representation.save(tmp)
        counts = torch.bincount(features.caption_index, minlength=len(features.captions))
        run.log_metrics({"examples": len(features.x), "clips": len(clips), "captions": len(features.captions),
                         "min_examples_per_caption": int(counts.min()), "mean": float(features.x.mean()),
                         "std": float(features.x.std()), "seconds_per_example": representation.clip_seconds,
                         **{f"{label}/examples": n for label, n in features.examples_per_label.items()},
                         **{f"{label}/clips": n for label, n in features.clips_per_label.items()}})
        run.set_tags({"resolution": representation.resolution})


if __name__ == "__main__":
    main()
