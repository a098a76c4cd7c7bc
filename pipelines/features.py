"""Stage features: scaled log-mel spectrograms [frames, mels] of the training split, as one tensor."""

from __future__ import annotations

import pandas as pd
import torch
from safetensors.torch import save_file

from musicdiff.features.dataset import mel_dataset, spectral_convergence
from musicdiff.features.mel import MelConfig, MelTransform
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, load_params, record_path


def main() -> None:
    params = load_params()
    dataset = params["train_dataset"]
    mel_params = dict(params["mel"])
    frames = mel_params.pop("frames")
    config = MelConfig(sample_rate=params["audio"]["sample_rate"], **mel_params)
    prepared = ROOT / "data" / "prepared" / dataset
    out = ROOT / "data" / "features" / "mel" / "train.safetensors"
    with stage_run("features", "mel", record_path("features", "mel"), tags={"dataset": dataset},
                   data_paths=[prepared / "manifest.csv"]) as run:
        run.log_params({"mel": config.to_dict(), "frames": frames, "dataset": dataset})
        manifest = pd.read_csv(prepared / "manifest.csv")
        clips = [prepared / c for c in manifest.loc[manifest["split"] == "train", "clip"]]
        transform = MelTransform(config)
        mels = mel_dataset(clips, transform, frames)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        save_file({"mel": mels.contiguous()}, str(tmp), metadata={"frames": str(frames), "n_mels": str(config.n_mels)})
        tmp.replace(out)
        # Griffin-Lim round trip on a few clips: how much the decoder alone loses.
        with torch.no_grad():
            probe = mels[: min(4, len(mels)), 0]
            again = transform(transform.inverse(probe))[..., :frames]
            power = transform.to_power(probe).sqrt()
            error = spectral_convergence(power[..., : frames - 1], transform.to_power(again).sqrt()[..., : frames - 1])
        run.log_metrics({"examples": len(mels), "seconds_per_example": config.frames_to_seconds(frames),
                         "mel_mean": float(mels.mean()), "mel_std": float(mels.std()),
                         "griffin_lim_spectral_convergence": error})


if __name__ == "__main__":
    main()
