"""Stage sample@<variant>-<sampler>: generate clips from the EMA weights, decode them, write WAV."""

from __future__ import annotations

import time

import torch
from diffusers import DDPMScheduler

from musicdiff.data.audio import write_float_wav
from musicdiff.models.registry import load_denoiser
from musicdiff.representation import Decoder, Representation
from musicdiff.sampling import generate
from musicdiff.schedulers import build_sampler
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, atomic_dir, load_params, parser, record_path


def main() -> None:
    args = parser(__doc__, "--variant", "--sampler").parse_args()
    params = load_params()
    settings = params["sample"]
    sampler_cfg = params["samplers"][args.sampler]
    family = params["variants"][args.variant]["family"]
    model_dir = ROOT / "data" / "models" / args.variant
    instance = f"{args.variant}-{args.sampler}"
    out_dir = ROOT / "data" / "samples" / instance
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with stage_run("sample", instance, record_path("sample", instance),
                   tags={"variant": args.variant, "sampler": args.sampler, "family": family, "device": device},
                   data_paths=[model_dir / "unet_ema"]) as run:
        run.log_params({"sampler": sampler_cfg, "n_samples": settings["n_samples"],
                        "batch_size": settings["batch_size"], "seed": settings["seed"]})
        representation = Representation.load(model_dir)
        model = load_denoiser(family, model_dir / "unet_ema")
        sampler = build_sampler(sampler_cfg["scheduler"], DDPMScheduler.from_pretrained(model_dir / "scheduler"))
        result = generate(model, sampler, settings["n_samples"], representation.shape,
                          sampler_cfg["num_inference_steps"], seed=settings["seed"],
                          batch_size=settings["batch_size"], device=device, eta=sampler_cfg.get("eta", 0.0))
        decode = Decoder(representation, model_dir)
        began = time.perf_counter()
        audio = decode(result.samples)
        decode_seconds = time.perf_counter() - began
        with atomic_dir(out_dir) as tmp:
            for i, clip in enumerate(audio):
                write_float_wav(tmp / f"{instance}_{i:04d}.wav", clip.numpy(), representation.sample_rate)
        audio_seconds = audio.shape[0] * audio.shape[-1] / representation.sample_rate
        run.log_metrics({
            "clips": audio.shape[0], "clip_seconds": audio.shape[-1] / representation.sample_rate,
            "denoise_seconds": result.denoise_seconds, "decode_seconds": decode_seconds,
            "denoise_s_per_audio_s": result.denoise_seconds / audio_seconds,
            "decode_s_per_audio_s": decode_seconds / audio_seconds,
            "num_inference_steps": sampler_cfg["num_inference_steps"], "threads": torch.get_num_threads(),
        })
        run.set_tags({"resolution": representation.resolution})


if __name__ == "__main__":
    main()
