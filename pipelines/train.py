"""Stage train@<variant>: train a variant's denoiser with EMA and checkpoints (resumable).

Reads ``data/<variants.<name>.data>/`` (a features, latents or text_features folder), writes
``data/models/<name>/``: ``unet/``, ``unet_ema/``, ``scheduler/``, ``checkpoints/``,
``representation.json`` and, for latent variants, a copy of the ``vae/`` the latents came from, so
the folder alone can generate audio. A text-conditioned variant (family ``mel_text``) encodes its
captions once with its frozen ``text_encoder`` and also writes ``conditioning.json`` (encoder name,
weight SHA-256, max_tokens, guidance scale, uncond_prob, captions per label).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from musicdiff.data.hashing import sha256_file, sha256_tree
from musicdiff.generation.models.registry import build_denoiser, count_parameters, family_file, prepare_training
from musicdiff.generation.representation import Representation
from musicdiff.generation.schedulers import build_noise_scheduler
from musicdiff.generation import training
from musicdiff.generation.models import unet2d
from musicdiff.generation.training import train_diffusion
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, atomic_dir, load_params, parser, record_path, variant_settings



class _Untracked:
    """Stands in for the MLflow run on processes other than rank 0."""

    def log_params(self, *args, **kwargs) -> None:
        pass

    log_metrics = set_tags = log_params


def main() -> None:
    args = parser(__doc__, "--variant").parse_args()
    params = load_params()
    variant, schedule, train = variant_settings(params, args.variant)
    data_dir = ROOT / "data" / variant["data"]
    features = data_dir / "train.safetensors"
    out_dir = ROOT / "data" / "models" / args.variant
    torch.manual_seed(train["seed"])
    # Under `accelerate launch` (params `launcher`) every process trains; only rank 0 tracks and writes.
    main_process = int(os.environ.get("RANK", "0")) == 0
    tracked = stage_run("train", args.variant, record_path("train", args.variant),
                        tags={"variant": args.variant, "family": variant["family"]}, data_paths=[features])
    with tracked if main_process else contextlib.nullcontext(_Untracked()) as run:
        representation = Representation.load(data_dir)
        tensors = load_file(str(features))
        data = tensors["x"]
        model_config, conditioning, text = variant["model"], None, None
        # a resume continues only the same data, settings and code (the loop, the shared UNet, the family)
        code = [Path(training.__file__), Path(unet2d.__file__), family_file(variant["family"])]
        key = {"features": sha256_file(features), "variant": variant, "schedule": schedule, "train": train,
               "code": sha256_tree(code)}
        setup = prepare_training(variant["family"], variant, data_dir, tensors)  # None unless text-conditioned
        if setup is not None:
            conditioning, model_config, text = setup.conditioning, setup.model_config, setup.record
            key.update(setup.key)
            run.log_params(setup.params)
            run.set_tags(setup.tags)
        model = build_denoiser(variant["family"], model_config, tuple(data.shape[1:]),
                               schedule["num_train_timesteps"])
        scheduler = build_noise_scheduler(schedule)
        n_params = count_parameters(model)
        run.log_params({"family": variant["family"], "model": variant["model"], "schedule": schedule, "train": train,
                        "data": variant["data"], "resolution": representation.resolution})
        resume_key = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        result = train_diffusion(model, scheduler, data, train, out_dir, log_metrics=run.log_metrics,
                                 resume_key=resume_key, conditioning=conditioning)
        if not main_process:
            return
        representation.save(out_dir)
        if text is not None:
            _write_json_atomically(out_dir / "conditioning.json", text)
        if (data_dir / "vae").exists():
            with atomic_dir(out_dir / "vae") as tmp:
                shutil.copytree(data_dir / "vae", tmp, dirs_exist_ok=True)
        run.log_metrics({
            "params_millions": n_params / 1e6, "size_mb": n_params * 4 / 2**20, "examples": len(data),
            "train_s_per_step": result.seconds_per_step, "steps_timed": result.steps_timed,
            "final_loss": result.final_loss, "steps": result.step, "resumed_from": result.resumed_from,
            "threads": torch.get_num_threads(), "clip_seconds": representation.clip_seconds,
        })
        run.set_tags({"device": result.device, "mixed_precision": result.mixed_precision,
                      "resolution": representation.resolution, "prediction_type": schedule["prediction_type"]})


def _write_json_atomically(path: Path, value: dict) -> None:
    tmp = path.with_name(f".tmp_{path.name}")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
