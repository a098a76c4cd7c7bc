"""Stage speed: time every sampler of params.yaml on every trained variant (median of >= 3 interleaved runs).

One process times the variants one after the other (nothing else runs beside it under `dvc repro`),
with one MLflow run and JSON record (``metrics/speed/<variant>.json``) per variant.
"""

from __future__ import annotations

import torch

from musicdiff.speed import time_samplers
from musicdiff.tracking import stage_run
from musicdiff.trained import TrainedVariant

from pipelines.common import ROOT, load_params, parser, record_path


def main() -> None:
    parser(__doc__).parse_args()
    params = load_params()
    for variant in params["variants"]:
        time_variant(params, variant)


def time_variant(params: dict, variant: str) -> None:
    """Time every sampler on ``variant``; logs one run and writes its record."""
    settings = params["speed"]
    family = params["variants"][variant]["family"]
    model_dir = ROOT / "data" / "models" / variant
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with stage_run("speed", variant, record_path("speed", variant),
                   tags={"variant": variant, "family": family, "device": device,
                         "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu"},
                   data_paths=[model_dir / "unet_ema"]) as run:
        run.log_params({"speed": settings, "samplers": params["samplers"]})
        trained = TrainedVariant.load(family, model_dir, decode=params.get("decode"))
        representation = trained.representation
        metrics = {"threads": torch.get_num_threads(), "clip_seconds": representation.clip_seconds,
                   "batch_size": settings["batch_size"], "repeats": settings["repeats"]}
        samplers = {name: (trained.sampler(cfg["scheduler"]), cfg["num_inference_steps"], cfg.get("eta", 0.0))
                    for name, cfg in params["samplers"].items()}
        results = time_samplers(trained.model, samplers, trained.decoder, representation.shape, representation.sample_rate,
                                batch_size=settings["batch_size"], warmup=settings["warmup"],
                                repeats=settings["repeats"], seed=settings["seed"], device=device,
                                condition=trained.text_condition(trained.default_captions(settings["batch_size"])))
        for name, result in results.items():
            metrics.update({f"{name}/denoise_s_per_audio_s": result.denoise_rtf,
                            f"{name}/decode_s_per_audio_s": result.decode_rtf,
                            f"{name}/s_per_step": result.seconds_per_step,
                            f"{name}/num_inference_steps": result.num_inference_steps})
            for i, (den, dec) in enumerate(zip(result.denoise_seconds, result.decode_seconds)):
                run.log_metrics({f"{name}/run_denoise_seconds": den, f"{name}/run_decode_seconds": dec}, step=i)
        run.log_metrics(metrics)
        run.set_tags({"resolution": representation.resolution})


if __name__ == "__main__":
    main()
