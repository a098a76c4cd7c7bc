"""Stage sample@<set>: generate one evaluation set (``samples.<set>`` in params.yaml: a variant, a
sampler and the number of clips) from the variant's EMA weights, decode it and write WAV.

Output ``data/samples/<set>/``: ``<set>_<i>.wav`` (float32) and ``levels.csv`` (each clip's RMS level
in dBFS, integrated loudness in LUFS and peak in dBFS, read by the noisy-sample filter). Metrics: clip
count and length, denoising and decoding time (seconds, and seconds per second of audio), and the
levels' mean, median and max.
"""

from __future__ import annotations

from pathlib import Path

import torch

from musicdiff.data.audio import write_float_wav
from musicdiff.tracking import stage_run
from musicdiff.generation.trained import TrainedVariant

from pipelines.common import ROOT, atomic_dir, load_params, parser, record_path, sample_spec, upstream_run_tags


def write_clips(out_dir, prefix: str, audio: torch.Tensor, sample_rate: int, levels: bool = False) -> None:
    """Write clips (n, samples) as ``<prefix>_<i:04d>.wav`` (float32) into ``out_dir``, atomically; with
    ``levels`` also ``levels.csv`` (file, rms_dbfs, lufs, peak_dbfs)."""
    with atomic_dir(out_dir) as tmp:
        rows = []
        for i, clip in enumerate(audio):
            name = f"{prefix}_{i:04d}.wav"
            write_float_wav(tmp / name, clip.numpy(), sample_rate)
            if levels:
                from musicdiff.evaluation.metrics.loudness import clip_level

                rows.append({"file": name, **clip_level(clip.double().numpy(), sample_rate).to_dict()})
        if levels:
            import pandas as pd

            pd.DataFrame(rows).to_csv(tmp / "levels.csv", index=False, float_format="%.4f", lineterminator="\n")


def main() -> None:
    import pandas as pd

    args = parser(__doc__, "--set").parse_args()
    params = load_params()
    settings = params["sample"]
    spec = sample_spec(params, args.set)
    sampler_cfg = params["samplers"][spec["sampler"]]
    model_dir = ROOT / "data" / "models" / spec["variant"]
    out_dir = ROOT / "data" / "samples" / args.set
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tags = {"variant": spec["variant"], "sampler": spec["sampler"], "family": spec["family"], "device": device,
            "evaluation_set": args.set, "headline": str(bool(spec.get("headline"))).lower(),
            **upstream_run_tags(train=spec["variant"])}
    with stage_run("sample", args.set, record_path("sample", args.set), tags=tags,
                   data_paths=[model_dir / "unet_ema"]) as run:
        run.log_params({"sampler": sampler_cfg, "n_samples": spec["n_samples"], "batch_size": settings["batch_size"],
                        "seed": settings["seed"], "variant": spec["variant"]})
        trained = TrainedVariant.load(spec["family"], model_dir, decode=params.get("decode"))
        representation = trained.representation
        audio, result, decode_seconds = trained.generate_audio(sampler_cfg, int(spec["n_samples"]), settings["seed"],
                                                               settings["batch_size"], device)
        write_clips(out_dir, args.set, audio, representation.sample_rate, levels=True)
        audio_seconds = audio.shape[0] * audio.shape[-1] / representation.sample_rate
        levels = pd.read_csv(out_dir / "levels.csv")
        run.log_metrics({
            "clips": audio.shape[0], "clip_seconds": audio.shape[-1] / representation.sample_rate,
            "denoise_seconds": result.denoise_seconds, "decode_seconds": decode_seconds,
            "denoise_s_per_audio_s": result.denoise_seconds / audio_seconds,
            "decode_s_per_audio_s": decode_seconds / audio_seconds,
            "num_inference_steps": sampler_cfg["num_inference_steps"], "threads": torch.get_num_threads(),
            **{f"{stat}_{column}": float(getattr(levels[column], stat)()) for column in ("rms_dbfs", "lufs", "peak_dbfs")
               for stat in ("mean", "median", "max") if levels[column].notna().any()},
        })
        run.set_tags({"resolution": representation.resolution})
        log_examples(run, out_dir, settings.get("examples", 3), representation.sample_rate)


def log_examples(run, folder, count: int, sample_rate: int) -> None:
    """Attach the first ``count`` WAVs of ``folder`` and a spectrogram image of each to the MLflow run."""
    import tempfile

    import soundfile as sf

    from musicdiff.report.plotting import spectrogram_figure

    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(folder.glob("*.wav"))[:count]:
            run.log_artifact(path, "examples")
            audio, _ = sf.read(path, dtype="float32")
            run.log_artifact(spectrogram_figure(audio, sample_rate, Path(tmp) / f"{path.stem}.png", path.stem), "examples")


if __name__ == "__main__":
    main()
