"""Stage train@<variant>: train a variant's denoiser with EMA and checkpoints (resumable).

Reads ``data/<variants.<name>.data>/`` (a features, latents or text_features folder), writes
``data/models/<name>/``: ``unet/``, ``unet_ema/``, ``scheduler/``, ``checkpoints/``,
``representation.json`` and, for latent variants, a copy of the ``vae/`` the latents came from, so
the folder alone can generate audio. A text-conditioned variant (family ``mel-text``) encodes its
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

import musicdiff
from musicdiff.data.hashing import sha256_file, sha256_tree
from musicdiff.generation.models.registry import build_denoiser, count_parameters
from musicdiff.generation.representation import Representation
from musicdiff.generation.schedulers import build_noise_scheduler
from musicdiff.generation.models.text_encoder import load_text_encoder, text_conditioning
from musicdiff.tracking import stage_run
from musicdiff.generation.training import train_diffusion

from pipelines.common import ROOT, atomic_dir, load_params, parser, record_path, variant_settings

CODE = Path(musicdiff.__file__).resolve().parent  # the installed library whose training code keys a resume


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
        key = {"features": sha256_file(features), "variant": variant, "schedule": schedule, "train": train,
               "code": sha256_tree([CODE / "training.py", *sorted((CODE / "models").glob("*.py"))])}
        if variant["family"] == "mel-text":
            captions = json.loads((data_dir / "captions.json").read_text())
            encoder = load_text_encoder(variant["text_encoder"], int(variant.get("max_tokens", 32)))
            conditioning = text_conditioning(encoder, captions["captions"], tensors["caption_index"],
                                             float(variant["uncond_prob"]))
            model_config = {**variant["model"], "cross_attention_dim": encoder.dim}
            text = {"text_encoder": encoder.name, "weights_sha256": encoder.weights_sha256,
                    "max_tokens": encoder.max_tokens, "guidance_scale": float(variant["guidance_scale"]),
                    "uncond_prob": conditioning.uncond_prob, "captions": captions["labels"]}
            key.update(text_encoder=encoder.weights_sha256, captions=sha256_file(data_dir / "captions.json"),
                       code=sha256_tree([CODE / "training.py", CODE / "text.py",
                                         *sorted((CODE / "models").glob("*.py"))]))
            run.log_params({"text_encoder": encoder.name, "text_encoder_sha256": encoder.weights_sha256,
                            "cross_attention_dim": encoder.dim})
            run.set_tags({"text_encoder": encoder.name, "text_encoder_sha256": encoder.weights_sha256})
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
