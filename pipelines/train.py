"""Stage train@<variant>: train the denoiser on the mel features with EMA and checkpoints (resumable)."""

from __future__ import annotations

import hashlib
import json

import torch
from safetensors.torch import load_file

from musicdiff.hashing import sha256_file, sha256_tree
from musicdiff.models.mel import build_mel_unet
from musicdiff.schedulers import build_noise_scheduler
from musicdiff.tracking import stage_run
from musicdiff.training import train_diffusion

from pipelines.common import ROOT, load_params, parser, record_path


def main() -> None:
    args = parser(__doc__, "--variant").parse_args()
    params = load_params()
    variant = params["variants"][args.variant]
    features = ROOT / "data" / "features" / "mel" / "train.safetensors"
    out_dir = ROOT / "data" / "models" / args.variant
    torch.manual_seed(params["train"]["seed"])
    with stage_run("train", args.variant, record_path("train", args.variant), tags={"variant": args.variant},
                   data_paths=[features]) as run:
        data = load_file(str(features))["mel"]
        n_mels, frames = data.shape[-2], data.shape[-1]
        model = build_mel_unet(variant["model"], n_mels=n_mels, frames=frames)
        scheduler = build_noise_scheduler(params["schedule"])
        n_params = sum(p.numel() for p in model.parameters())
        run.log_params({"model": variant["model"], "schedule": params["schedule"], "train": params["train"],
                        "resolution": f"[{frames}, {n_mels}]"})
        resume_key = hashlib.sha256(json.dumps(
            {"features": sha256_file(features), "model": variant["model"], "schedule": params["schedule"],
             "train": params["train"], "code": sha256_tree(
                 [ROOT / "musicdiff" / "training.py", *sorted((ROOT / "musicdiff" / "models").glob("*.py"))])},
            sort_keys=True).encode()).hexdigest()
        result = train_diffusion(model, scheduler, data, params["train"], out_dir, log_metrics=run.log_metrics,
                                 resume_key=resume_key)
        run.log_metrics({
            "params_millions": n_params / 1e6, "size_mb": n_params * 4 / 2**20, "examples": len(data),
            "train_s_per_step": result.seconds_per_step, "steps_timed": result.steps_timed,
            "final_loss": result.final_loss, "steps": result.step, "resumed_from": result.resumed_from,
            "threads": torch.get_num_threads(),
        })
        run.set_tags({"device": result.device, "mixed_precision": result.mixed_precision,
                      "resolution": f"[{frames}, {n_mels}]"})


if __name__ == "__main__":
    main()
