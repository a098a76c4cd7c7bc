"""Stage features@<name>: the training tensor of one representation (mel [frames, mels] or waveform)."""

from __future__ import annotations

import pandas as pd
import torch
from safetensors.torch import save_file

from musicdiff.features.dataset import mel_dataset, spectral_convergence, waveform_dataset
from musicdiff.features.mel import MelConfig, MelTransform
from musicdiff.generation.representation import Representation
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, atomic_dir, load_params, parser, record_path


def main() -> None:
    args = parser(__doc__, "--name").parse_args()
    params = load_params()
    spec = params["features"][args.name]
    dataset = params["train_dataset"]
    sample_rate = params["audio"]["sample_rate"]
    prepared = ROOT / "data" / "prepared" / dataset
    out_dir = ROOT / "data" / "features" / args.name
    crops = int(spec.get("crops_per_clip", 1))
    with stage_run("features", args.name, record_path("features", args.name),
                   tags={"dataset": dataset, "kind": spec["kind"]}, data_paths=[prepared / "manifest.csv"]) as run:
        manifest = pd.read_csv(prepared / "manifest.csv")
        clips = [prepared / c for c in manifest.loc[manifest["split"] == "train", "clip"]]
        metrics = {}
        if spec["kind"] == "mel":
            frames, n_mels = spec["resolution"]
            config = MelConfig(sample_rate=sample_rate, n_mels=n_mels, **params["mel"])  # decode knobs: `decode`
            transform = MelTransform(config)
            data = mel_dataset(clips, transform, frames, crops_per_clip=crops)
            representation = Representation("mel", sample_rate, tuple(data.shape[1:]), frames=frames,
                                             mel=config.to_dict())
            with torch.no_grad():  # Griffin-Lim round trip on a few examples: what the decoder alone loses
                probe = data[: min(4, len(data)), 0]
                again = transform(transform.inverse(probe))[..., :frames]
                metrics["griffin_lim_spectral_convergence"] = spectral_convergence(
                    transform.to_power(probe).sqrt()[..., : frames - 1],
                    transform.to_power(again).sqrt()[..., : frames - 1])
        elif spec["kind"] == "waveform":
            data = waveform_dataset(clips, sample_rate, int(spec["samples"]), crops_per_clip=crops)
            representation = Representation("waveform", sample_rate, tuple(data.shape[1:]), samples=int(spec["samples"]))
        else:
            raise ValueError(f"features.{args.name}.kind must be mel or waveform, got {spec['kind']!r}")
        run.log_params({"features": spec, "representation": representation.to_dict(), "dataset": dataset})
        with atomic_dir(out_dir) as tmp:
            save_file({"x": data.contiguous()}, str(tmp / "train.safetensors"))
            representation.save(tmp)
        run.log_metrics({"examples": len(data), "clips": len(clips), "seconds_per_example": representation.clip_seconds,
                         "mean": float(data.mean()), "std": float(data.std()), **metrics})
        run.set_tags({"resolution": representation.resolution})


if __name__ == "__main__":
    main()
