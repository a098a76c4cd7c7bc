"""Stage sample@<variant>-<sampler>: generate clips from the EMA weights, decode with Griffin-Lim, write WAV."""

from __future__ import annotations

import os
import shutil
import time

import torch
from diffusers import DDPMScheduler, UNet2DModel

from musicdiff.data.audio import write_float_wav
from musicdiff.features.mel import MelConfig, MelTransform
from musicdiff.sampling import generate
from musicdiff.schedulers import build_sampler
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, load_params, parser, record_path


def main() -> None:
    args = parser(__doc__, "--variant", "--sampler").parse_args()
    params = load_params()
    settings = params["sample"]
    sampler_cfg = settings["samplers"][args.sampler]
    model_dir = ROOT / "data" / "models" / args.variant
    instance = f"{args.variant}-{args.sampler}"
    out_dir = ROOT / "data" / "samples" / instance
    mel_params = {k: v for k, v in params["mel"].items() if k != "frames"}
    config = MelConfig(sample_rate=params["audio"]["sample_rate"], **mel_params)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with stage_run("sample", instance, record_path("sample", instance),
                   tags={"variant": args.variant, "sampler": args.sampler, "device": device},
                   data_paths=[model_dir / "unet_ema"]) as run:
        run.log_params({"sampler": args.sampler, **sampler_cfg, "n_samples": settings["n_samples"],
                        "batch_size": settings["batch_size"], "seed": settings["seed"]})
        model = UNet2DModel.from_pretrained(model_dir / "unet_ema")
        sampler = build_sampler(args.sampler, DDPMScheduler.from_pretrained(model_dir / "scheduler"))
        shape = (1, *model.config.sample_size)
        result = generate(model, sampler, settings["n_samples"], shape, sampler_cfg["num_inference_steps"],
                          seed=settings["seed"], batch_size=settings["batch_size"], device=device,
                          eta=sampler_cfg.get("eta", 0.0))
        transform = MelTransform(config)
        began = time.perf_counter()
        with torch.no_grad():
            audio = transform.inverse(result.samples[:, 0])
        decode_seconds = time.perf_counter() - began
        tmp = out_dir.with_name(f".tmp_{out_dir.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for i, clip in enumerate(audio):
            write_float_wav(tmp / f"{instance}_{i:04d}.wav", clip.numpy(), config.sample_rate)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
        audio_seconds = audio.shape[0] * audio.shape[-1] / config.sample_rate
        run.log_metrics({
            "clips": audio.shape[0], "clip_seconds": audio.shape[-1] / config.sample_rate,
            "denoise_seconds": result.denoise_seconds, "decode_seconds": decode_seconds,
            "denoise_s_per_audio_s": result.denoise_seconds / audio_seconds,
            "decode_s_per_audio_s": decode_seconds / audio_seconds,
            "total_s_per_audio_s": (result.denoise_seconds + decode_seconds) / audio_seconds,
            "num_inference_steps": sampler_cfg["num_inference_steps"], "threads": torch.get_num_threads(),
        })


if __name__ == "__main__":
    main()
