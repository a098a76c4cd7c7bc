"""Stage speed: time every sampler of params.yaml on every trained variant (median of >= 5 interleaved runs).

One process times the variants one after the other (nothing else runs beside it under `dvc repro`),
with one MLflow run and JSON record (``metrics/speed/<variant>.json``) per variant. Torch's threads
are pinned first (``speed.threads``, default the physical cores; inter-op threads 1) and recorded.
Each sampler is also timed at ``speed.fit_fraction`` of its steps, interleaved with the rest, so the
run logs its fixed per-run overhead and per-step cost (the report's DDIM/DDPM ratio check reads
them). With CUDA, the study's [256, 256] mel UNet (``speed.gpu_paper``; untrained weights) is timed
as well (run ``speed@gpu-paper-mel-256x256``); without, that run only records that no CUDA device
was available.
"""

from __future__ import annotations

import torch
import yaml

from musicdiff.generation.speed import (FIT_SUFFIX, GPU_PAPER_INSTANCE, fit_steps, gpu_paper_record, pin_threads, sampler_metrics,
                             time_samplers)
from musicdiff.tracking import stage_run
from musicdiff.generation.trained import TrainedVariant

from pipelines.common import ROOT, load_params, parser, record_path


def main() -> None:
    parser(__doc__).parse_args()
    params = load_params()
    threads = pin_threads(params["speed"].get("threads"))  # before any torch work (inter-op threads)
    for variant in params["variants"]:
        time_variant(params, variant, threads)
    time_gpu_paper(params, threads)


def with_fits(samplers: dict, fraction: float | None, build) -> dict:
    """``samplers`` (name -> params.yaml sampler entry) as ``time_samplers`` entries, each followed by
    its ``<name>:fit`` entry at ``fit_steps`` of its steps; ``build`` makes a sampler from a scheduler name."""
    entries = {}
    for name, cfg in samplers.items():
        steps, eta = cfg["num_inference_steps"], cfg.get("eta", 0.0)
        entries[name] = (build(cfg["scheduler"]), steps, eta)
        other = fit_steps(steps, fraction)
        if other is not None:
            entries[name + FIT_SUFFIX] = (build(cfg["scheduler"]), other, eta)
    return entries


def _thread_record(threads: dict) -> tuple[dict, dict]:
    return ({"threads": threads["threads"], "interop_threads": threads["interop_threads"]},
            {"threads_source": threads["threads_source"], "interop_pinned": str(threads["interop_pinned"]).lower()})


def time_variant(params: dict, variant: str, threads: dict) -> None:
    """Time every sampler on ``variant``; logs one run and writes its record."""
    settings = params["speed"]
    family = params["variants"][variant]["family"]
    model_dir = ROOT / "data" / "models" / variant
    device = "cuda" if torch.cuda.is_available() else "cpu"
    thread_metrics, thread_tags = _thread_record(threads)
    with stage_run("speed", variant, record_path("speed", variant),
                   tags={"variant": variant, "family": family, "device": device, **thread_tags,
                         "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu"},
                   data_paths=[model_dir / "unet_ema"]) as run:
        run.log_params({"speed": settings, "samplers": params["samplers"]})
        trained = TrainedVariant.load(family, model_dir, decode=params.get("decode"))
        representation = trained.representation
        metrics = {**thread_metrics, "clip_seconds": representation.clip_seconds,
                   "batch_size": settings["batch_size"], "repeats": settings["repeats"]}
        samplers = with_fits(params["samplers"], settings.get("fit_fraction"), trained.sampler)
        results = time_samplers(trained.model, samplers, trained.decoder, representation.shape, representation.sample_rate,
                                batch_size=settings["batch_size"], warmup=settings["warmup"],
                                repeats=settings["repeats"], seed=settings["seed"], device=device,
                                condition=trained.text_condition(trained.default_captions(settings["batch_size"])))
        metrics.update(sampler_metrics(results))
        for name, result in results.items():
            for i, (den, dec) in enumerate(zip(result.denoise_seconds, result.decode_seconds)):
                run.log_metrics({f"{name}/run_denoise_seconds": den, f"{name}/run_decode_seconds": dec}, step=i)
        run.log_metrics(metrics)
        run.set_tags({"resolution": representation.resolution})


def paper_mel(params: dict):
    """The study's mel UNet of ``speed.gpu_paper`` (architecture and resolution from the paper
    profile's variant; untrained), its noise schedule and representation."""
    from musicdiff.features.mel import MelConfig
    from musicdiff.generation.models.registry import build_denoiser
    from musicdiff.generation.representation import Representation
    from musicdiff.generation.schedulers import build_noise_scheduler

    gpu = params["speed"]["gpu_paper"]
    profile = yaml.safe_load((ROOT / gpu["profile"]).read_text())
    variant = profile["variants"][gpu["variant"]]
    frames, mels = profile["features"][variant["data"].split("/", 1)[1]]["resolution"]
    sample_rate = params["audio"]["sample_rate"]
    config = MelConfig(sample_rate=sample_rate, n_mels=mels, **params["mel"], **(params.get("decode") or {}))
    representation = Representation("mel", sample_rate, (1, mels, frames), frames=frames, mel=config.to_dict())
    schedule = {**params["schedule"], "prediction_type": variant.get("prediction_type", "epsilon")}
    model = build_denoiser("mel", variant["model"], representation.shape, schedule["num_train_timesteps"])
    return model, build_noise_scheduler(schedule), representation


def time_gpu_paper(params: dict, threads: dict) -> None:
    """The GPU, paper size run: on CUDA, every sampler of ``speed.gpu_paper.samplers`` on the study's
    [256, 256] mel UNet beside the study's seconds per audio second; otherwise a run whose tag says
    that no CUDA device was available."""
    from musicdiff.generation.representation import Decoder
    from musicdiff.generation.schedulers import build_sampler

    settings, gpu = params["speed"], params["speed"]["gpu_paper"]
    cuda = torch.cuda.is_available()
    thread_metrics, thread_tags = _thread_record(threads)
    with stage_run("speed", GPU_PAPER_INSTANCE, record_path("speed", GPU_PAPER_INSTANCE),
                   tags={"variant": gpu["variant"], "family": "mel", **thread_tags}) as run:
        run.log_params({"speed": settings})
        results, device_name, extra = None, "", {}
        if cuda:
            model, noise, representation = paper_mel(params)
            samplers = {name: (build_sampler(cfg["scheduler"], noise), cfg["num_inference_steps"], cfg.get("eta", 0.0))
                        for name, cfg in gpu["samplers"].items()}
            results = time_samplers(model, samplers, Decoder(representation), representation.shape,
                                    representation.sample_rate, batch_size=settings["batch_size"],
                                    warmup=settings["warmup"], repeats=settings["repeats"], seed=settings["seed"],
                                    device="cuda")
            device_name = torch.cuda.get_device_name()
            extra = {"clip_seconds": representation.clip_seconds, "batch_size": settings["batch_size"],
                     "repeats": settings["repeats"], "params_millions": sum(p.numel() for p in model.parameters()) / 1e6}
            run.set_tags({"resolution": representation.resolution})
        study = {name: cfg["study_s_per_audio_s"] for name, cfg in gpu["samplers"].items()}
        metrics, tags = gpu_paper_record(cuda, results, study, device_name)
        run.log_metrics({**metrics, **extra, **thread_metrics})
        run.set_tags(tags)


if __name__ == "__main__":
    main()
