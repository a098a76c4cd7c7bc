"""Stage variation@<variant>: variations of real clips at the study's start timesteps, measured.

The first ``variation.n_sources`` clips (sorted by name) of the prepared set ``variation.source``
(``<dataset>/<split>``; by default the ``floor`` split: held-out tracks that are not in the held-out
reference set)
are varied with ``musicdiff.generation.creative.vary`` from each timestep in ``variation.timesteps`` (the
study's T = 950, 750, 500, 250 of 1000; strength = T / 1000) with the sampler ``variation.sampler``;
clip ``i`` uses seed ``variation.seed + i``. For each T the variations are embedded with
``variation.embedding`` and scored:

* FAD (bootstrap CI) and KAD against every set in ``variation.reference_sets``;
* distance to the source: the Euclidean distance between the mean embedding of a variation and that
  of its source (trimmed to the same length), averaged over clips, and the mean absolute difference
  of their scaled log-mels (units of the [-1, 1] scale; 2 is the full 80 dB range).

T = 0 is the sources themselves (distance 0), scored the same way, and ``decoded`` the sources
encoded and decoded without diffusion (``musicdiff.generation.creative.round_trip``): the distance the decoder
alone (Griffin-Lim, the VAE) puts between a clip and its source. Every set is cut by the evaluation
protocol and scored by ``musicdiff.evaluation.score`` (FAD with CI, KAD, the adequacy flag). Audio
goes to ``data/variation/<variant>/T_<T>/`` (and ``decoded/``); metrics are
``T_<T>/<embedding>/<reference>/fad`` (and CI, KAD), ``T_<T>/embedding_distance`` and
``T_<T>/mel_distance`` (``decoded/...`` likewise).
"""

from __future__ import annotations

import numpy as np
import torch

from musicdiff.generation import creative
from musicdiff.data.audio import write_float_wav
from musicdiff.features.mel import MelTransform
from musicdiff.tracking import stage_run
from musicdiff.generation.trained import TrainedVariant

from pipelines import embedding as em
from pipelines import evaluation as ev
from pipelines.common import (ROOT, atomic_dir, load_params, parser, record_path, run_stage, upstream_run_tags, variant_settings)


def main() -> None:
    args = parser(__doc__, "--variant").parse_args()
    params = load_params()
    settings = params["variation"]
    variant, _, _ = variant_settings(params, args.variant)
    sampler_cfg = params["samplers"][settings["sampler"]]
    sampler = creative.SamplerSettings(sampler_cfg["scheduler"], sampler_cfg["num_inference_steps"],
                                       sampler_cfg.get("eta", 0.0))
    model_dir = ROOT / "data" / "models" / args.variant
    out_dir = ROOT / "data" / "variation" / args.variant
    timesteps = sorted({int(t) for t in settings["timesteps"]}, reverse=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sources = sorted((ROOT / "data" / "prepared" / settings["source"]).rglob("*.wav"))[: settings["n_sources"]]
    if not sources:
        raise FileNotFoundError(f"no WAV clips in data/prepared/{settings['source']}")
    tags = {"variant": args.variant, "family": variant["family"], "sampler": settings["sampler"],
            "embedding": settings["embedding"], "source": settings["source"], "device": device,
            "reference_sets": ",".join(settings["reference_sets"]), **upstream_run_tags(train=args.variant)}
    with stage_run("variation", args.variant, record_path("variation", args.variant), tags=tags,
                   data_paths=[model_dir / "unet_ema", *sources]) as run:
        run.log_params({"variation": settings, "sampler_config": sampler_cfg, "evaluation": params["evaluation"],
                        "n_sources": len(sources)})
        trained = TrainedVariant.load(variant["family"], model_dir, decode=params.get("decode"))
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
        embedding = em.build_embedding(params, settings["embedding"])
        refs = ev.references(params, settings["embedding"], settings["reference_sets"], shipped=False)
        source_set = em.embed_folder(params, embedding, out_dir / "T_0", f"{args.variant}@T_0")
        source_means = _file_means(source_set)
        metrics = {}
        for t in [0, "decoded", *timesteps]:
            folder = t if t == "decoded" else f"T_{t}"
            evaluation = source_set if t == 0 else em.embed_folder(params, embedding, out_dir / folder,
                                                                   f"{args.variant}@{folder}")
            means = _file_means(evaluation)
            values = {"embedding_distance": float(np.mean([np.linalg.norm(means[f] - source_means[f]) for f in means])),
                      "strength": 0 if t == "decoded" else t / trained.noise_scheduler.config.num_train_timesteps}
            if mel is not None:
                values["mel_distance"] = _mel_distance(mel, out_dir, folder, rate)
            scores, flags = ev.score_all(evaluation, refs, ev.settings(params), fad_inf=False)
            values.update(scores)
            if flags:
                run.set_tags({f"{folder}/{k}": v for k, v in flags.items()})
            if t != "decoded":
                run.log_metrics({k: v for k, v in scores.items() if k.endswith("/fad")}, step=t)
                run.log_metrics({"embedding_distance": values["embedding_distance"]}, step=t)
            metrics.update({f"{folder}/{k}": v for k, v in values.items()})
        run.log_metrics(metrics)


def _file_means(embedded) -> dict:
    """``{file name: mean embedding of its evaluation clips}`` (the clips of one file, ``<file>#<k>``)."""
    groups = {}
    for name, clip in zip(embedded.names, embedded.clips):
        groups.setdefault(name.split("#")[0].rsplit("/", 1)[-1], []).append(clip)
    return {f: np.concatenate(c).mean(axis=0) for f, c in groups.items()}


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
    run_stage(main)
