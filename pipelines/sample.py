"""Stage sample@<variant>-<sampler>: generate clips from the EMA weights, decode them, write WAV."""

from __future__ import annotations

import torch

from musicdiff.data.audio import write_float_wav
from musicdiff.tracking import stage_run
from musicdiff.trained import TrainedVariant

from pipelines.common import ROOT, atomic_dir, load_params, parser, record_path


def write_clips(out_dir, prefix: str, audio: torch.Tensor, sample_rate: int) -> None:
    """Write clips (n, samples) as ``<prefix>_<i:04d>.wav`` (float32) into ``out_dir``, atomically."""
    with atomic_dir(out_dir) as tmp:
        for i, clip in enumerate(audio):
            write_float_wav(tmp / f"{prefix}_{i:04d}.wav", clip.numpy(), sample_rate)


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
        trained = TrainedVariant.load(family, model_dir)
        representation = trained.representation
        audio, result, decode_seconds = trained.generate_audio(sampler_cfg, settings["n_samples"], settings["seed"],
                                                               settings["batch_size"], device)
        write_clips(out_dir, instance, audio, representation.sample_rate)
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
