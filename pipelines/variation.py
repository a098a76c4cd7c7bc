"""Stage variation@<variant>: variations of real clips at the study's start timesteps, measured.

The first ``variation.n_sources`` clips (sorted by name) of the reference set ``variation.source_set``
are varied with ``musicdiff.creative.vary`` from each timestep in ``variation.timesteps`` (the
study's T = 950, 750, 500, 250 of 1000; strength = T / 1000) with the sampler ``variation.sampler``;
clip ``i`` uses seed ``variation.seed + i``. For each T the variations are embedded with
``variation.embedding`` and scored:

* FAD (bootstrap CI) and KAD against every set in ``variation.reference_sets``;
* distance to the source: the Euclidean distance between the mean embedding of a variation and that
  of its source (trimmed to the same length), averaged over clips, and the mean absolute difference
  of their scaled log-mels (units of the [-1, 1] scale; 2 is the full 80 dB range).

T = 0 is the sources themselves (distance 0), scored the same way, and ``decoded`` the sources
encoded and decoded without diffusion (``musicdiff.creative.round_trip``): the distance the decoder
alone (Griffin-Lim, the VAE) puts between a clip and its source. Audio goes to
``data/variation/<variant>/T_<T>/`` (and ``decoded/``); metrics are ``T_<T>/<reference>/fad`` (and
CI, KAD), ``T_<T>/embedding_distance`` and ``T_<T>/mel_distance`` (``decoded/...`` likewise).
"""

from __future__ import annotations

import numpy as np
import torch

from musicdiff import creative
from musicdiff.data.audio import write_float_wav
from musicdiff.features.mel import MelTransform
from musicdiff.metrics.embeddings import EmbeddedSet
from musicdiff.metrics.fad import fad_score
from musicdiff.metrics.kad import kad_score
from musicdiff.tracking import stage_run
from musicdiff.trained import TrainedVariant

from pipelines.common import ROOT, atomic_dir, load_params, parser, record_path, variant_settings
from pipelines.embed import embed_folder


def main() -> None:
    args = parser(__doc__, "--variant").parse_args()
    params = load_params()
    settings, fad_settings = params["variation"], params["fad"]
    variant, _, _ = variant_settings(params, args.variant)
    sampler_cfg = params["samplers"][settings["sampler"]]
    sampler = creative.SamplerSettings(sampler_cfg["scheduler"], sampler_cfg["num_inference_steps"],
                                       sampler_cfg.get("eta", 0.0))
    model_dir = ROOT / "data" / "models" / args.variant
    out_dir = ROOT / "data" / "variation" / args.variant
    timesteps = sorted({int(t) for t in settings["timesteps"]}, reverse=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sources = sorted((ROOT / params["reference_sets"][settings["source_set"]]).rglob("*.wav"))[: settings["n_sources"]]
    if not sources:
        raise FileNotFoundError(f"no WAV clips in reference set {settings['source_set']!r}")
    tags = {"variant": args.variant, "family": variant["family"], "sampler": settings["sampler"],
            "embedding": settings["embedding"], "source_set": settings["source_set"], "device": device,
            "reference_sets": ",".join(settings["reference_sets"])}
    with stage_run("variation", args.variant, record_path("variation", args.variant), tags=tags,
                   data_paths=[model_dir / "unet_ema", *sources]) as run:
        run.log_params({"variation": settings, "sampler_config": sampler_cfg, "fad": fad_settings,
                        "n_sources": len(sources)})
        trained = TrainedVariant.load(variant["family"], model_dir)
        rate = trained.representation.sample_rate
        mel = MelTransform(trained.representation.mel_config) if trained.representation.mel else None
        with atomic_dir(out_dir) as tmp:
            for i, path in enumerate(sources):
                audio = creative.load_wav(path, trained)
                for t in timesteps:
                    varied = creative.vary(trained, audio, timestep=t, seed=settings["seed"] + i, sampler=sampler,
                                           device=device, progress=False)
                    (tmp / f"T_{t}").mkdir(exist_ok=True)
                    write_float_wav(tmp / f"T_{t}" / f"{path.stem}.wav", varied.numpy(), rate)
                    if t == timesteps[0]:  # the source, cut to the length the variations cover, and its round trip
                        for folder, clip in (("T_0", audio[: len(varied)]), ("decoded", creative.round_trip(trained, audio))):
                            (tmp / folder).mkdir(exist_ok=True)
                            write_float_wav(tmp / folder / f"{path.stem}.wav", clip.numpy(), rate)
        source_set = embed_folder(params, settings["embedding"], out_dir / "T_0")
        if source_set.skipped:
            run.set_tags({"skipped": source_set.skipped})
            print(f"skipped the scores of variation@{args.variant}: {source_set.skipped}")
            return
        references = {ref: EmbeddedSet.load(ROOT / "data" / "embeddings" / settings["embedding"] / "reference" /
                                             f"{ref}.npz").frames for ref in settings["reference_sets"]}
        source_means = [c.mean(axis=0) for c in source_set.clips]
        metrics = {}
        for t in [0, "decoded", *timesteps]:
            folder = t if t == "decoded" else f"T_{t}"
            evaluation = source_set if t == 0 else embed_folder(params, settings["embedding"], out_dir / folder)
            values = {"embedding_distance": float(np.mean([np.linalg.norm(c.mean(axis=0) - s)
                                                           for c, s in zip(evaluation.clips, source_means)])),
                      "strength": 0 if t == "decoded" else t / trained.noise_scheduler.config.num_train_timesteps}
            if mel is not None:
                values["mel_distance"] = _mel_distance(mel, out_dir, folder, rate)
            for ref, frames in references.items():
                fad = fad_score(frames, evaluation.clips, n_bootstrap=fad_settings["n_bootstrap"],
                                seed=fad_settings["seed"], ci=fad_settings["ci"])
                kad = kad_score(frames, evaluation.clips, ci=fad_settings["ci"])
                values.update({f"{ref}/fad": fad.fad, f"{ref}/fad_ci_low": fad.ci_low, f"{ref}/fad_ci_high": fad.ci_high,
                               f"{ref}/kad": kad.kad})
                if t != "decoded":
                    run.log_metrics({f"{ref}/fad": fad.fad}, step=t)
            if t != "decoded":
                run.log_metrics({"embedding_distance": values["embedding_distance"]}, step=t)
            metrics.update({f"{folder}/{k}": v for k, v in values.items()})
        run.log_metrics(metrics)


def _mel_distance(mel: MelTransform, out_dir, folder: str, rate: int) -> float:
    """Mean |scaled log-mel difference| between each clip of ``folder`` and its source in ``T_0``."""
    from musicdiff.data.audio import load_audio

    distances = []
    for path in sorted((out_dir / folder).glob("*.wav")):
        a = torch.from_numpy(load_audio(path, rate))
        b = torch.from_numpy(load_audio(out_dir / "T_0" / path.name, rate))
        n = min(len(a), len(b))
        distances.append(float((mel(a[:n]) - mel(b[:n])).abs().mean()))
    return float(np.mean(distances))


if __name__ == "__main__":
    main()
