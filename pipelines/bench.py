"""Stage bench: musicdiff against fadtk on the same inputs (fadtk's 23 shipped music clips and its
shipped FMA-Pop statistics). Logs one MLflow run; the report writes reports/tables/bench.md.

Metrics: ``frechet/<pair>/{ours,fadtk,abs_diff,rel_diff,ours_s,fadtk_s,ours_cached_s,factor_s,dim}``
for FAD from the same statistics (``ours_cached_s`` with the reference factored beforehand, ``factor_s``
the factoring, ``ours_s`` both); ``bootstrap1000/d512/{seconds,per_resample_s,direct_per_resample_s,
factor_s,clips,frames_per_clip}`` for a 1000-resample FAD bootstrap (:data:`BOOTSTRAP`);
``float16/{fad_float32,fad_float16}`` for fadtk's float16 storage of embeddings;
``throughput/<embedding>/{ours_x_realtime,fadtk_x_realtime,ours_s,fadtk_s,audio_s,clips}`` for the
same network embedded through both pipelines (and musicdiff's stages ``ours_decode_s``, ``ours_resample_s``
summed over its decoding threads, ``ours_embed_s`` the network) (MusiCNN runs in fadtk's pipeline as a fadtk
``ModelLoader``); an embedding whose weights are missing is tagged ``throughput/<embedding>/skipped``.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from musicdiff.evaluation.bench import FadtkCannotDecode, compare_frechet, compare_throughput, float16_effect, time_bootstrap
from musicdiff.data.reference_stats import fma_pop_stats
from musicdiff.evaluation.metrics.fad import gaussian_stats
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, load_params, record_path

# Pairs of shipped statistics of equal dimension: real covariances at the embedding sizes in use.
SHIPPED_PAIRS = {
    "vggish-vs-encodec": ("vggish", "encodec-emb"),
    "clap-audio-vs-clap-music": ("clap-laion-audio", "clap-laion-music"),
    "mert-layer4-vs-layer8": ("MERT-v1-95M-4", "MERT-v1-95M-8"),
    "clap2023-vs-dac": ("clap-2023", "dac-44kHz"),
}


def fadtk_clips() -> list[Path]:
    """The 23 ten-second music clips in the fadtk wheel (MIT; MusicGen, MusicLM, Mubert)."""
    folder = Path(str(resources.files("fadtk") / "test" / "samples"))
    clips = sorted(folder.glob("*.opus"))
    if not clips:
        raise FileNotFoundError(f"no fadtk sample clips under {folder}")
    return clips


# The timed FAD bootstrap: random clips against FMA-Pop's 512-d CLAP statistics, factored beforehand.
BOOTSTRAP = {"reference": "clap-laion-audio", "clips": 400, "frames_per_clip": 4, "n_bootstrap": 1000}


def bootstrap_metrics() -> dict[str, float]:
    """``bootstrap<n>/d<dim>/{seconds,per_resample_s,direct_per_resample_s,factor_s,clips,frames_per_clip}``
    for :data:`BOOTSTRAP` (see :func:`musicdiff.evaluation.bench.time_bootstrap`)."""
    ref = fma_pop_stats(BOOTSTRAP["reference"])
    start = time.perf_counter()
    ref.factor  # noqa: B018 -- factored once, as for a real reference; timed apart
    factor_s = time.perf_counter() - start
    t = time_bootstrap(ref, BOOTSTRAP["clips"], BOOTSTRAP["frames_per_clip"], BOOTSTRAP["n_bootstrap"])
    prefix = f"bootstrap{t.n_bootstrap}/d{t.dim}"
    return {f"{prefix}/{k}": float(v) for k, v in
            {"seconds": t.seconds, "per_resample_s": t.per_resample_s, "direct_per_resample_s": t.direct_per_resample_s,
             "factor_s": factor_s, "clips": t.clips, "frames_per_clip": t.frames_per_clip}.items()}


def main() -> None:
    params = load_params()
    settings = params.get("bench", {})
    repeats = int(settings.get("repeats", 5))
    clips = fadtk_clips()
    audio_s = float(sum(sf.info(c).duration for c in clips))
    with stage_run("bench", "fadtk", record_path("bench", "fadtk"), tags={"device": "cpu"}) as run:
        run.log_params({"repeats": repeats, "clips": len(clips), "threads": torch.get_num_threads(),
                        "throughput_embeddings": settings.get("throughput_embeddings", [])})
        metrics = {}
        from musicdiff.evaluation.engine import embed_files

        from pipelines.embedding import build_embedding  # the same builder as the scoring stages

        musicnn = build_embedding(params, "musicnn")
        embedded = embed_files(musicnn, clips, None, "fadtk clips", cache_dir=ROOT / "data" / "cache" / "embeddings",
                               progress=False)  # whole files, as fadtk embeds them
        groups = {}
        for path, frames in zip(embedded.names, embedded.clips):
            groups.setdefault(Path(path).name.split("-")[0], []).append(frames)
        mg, mubert = np.concatenate(groups["mg"]), np.concatenate(groups["mubert"])
        pairs = {"musicnn-musicgen-vs-mubert": (gaussian_stats(mg), gaussian_stats(mubert))}
        pairs.update({label: (fma_pop_stats(a), fma_pop_stats(b)) for label, (a, b) in SHIPPED_PAIRS.items()})
        for label, (ref, evl) in pairs.items():
            result = compare_frechet(label, ref, evl, repeats)
            metrics.update({f"frechet/{label}/{k}": v for k, v in
                            {"ours": result.ours, "fadtk": result.fadtk, "abs_diff": result.abs_diff,
                             "rel_diff": result.rel_diff, "ours_s": result.ours_s, "fadtk_s": result.fadtk_s,
                             "ours_cached_s": result.ours_cached_s, "factor_s": result.factor_s,
                             "dim": result.dim}.items()})
        metrics.update(bootstrap_metrics())
        exact, rounded = float16_effect(mg, mubert)
        metrics.update({"float16/fad_float32": exact, "float16/fad_float16": rounded,
                        "float16/abs_diff": abs(exact - rounded)})
        from musicdiff.evaluation.bench_models import fadtk_pair
        from musicdiff.weights.registry import MissingWeightsError

        wav_dir = ROOT / "data" / "bench" / "clips"  # the same 16-bit WAV inputs for both pipelines
        wav_dir.mkdir(parents=True, exist_ok=True)
        wavs = []
        for clip in clips:
            audio, rate = sf.read(clip, dtype="float32")
            wavs.append(wav_dir / f"{clip.stem}.wav")
            sf.write(wavs[-1], audio, rate, subtype="PCM_16")

        for name in settings.get("throughput_embeddings", []):
            try:
                embedding, loader, weights = fadtk_pair(name, lambda: build_embedding(params, "musicnn"))
            except MissingWeightsError as error:
                run.set_tags({f"throughput/{name}/skipped": str(error).splitlines()[0]})
                print(f"throughput of {name} skipped: weights missing")
                continue
            try:
                result = compare_throughput(embedding, loader, wavs, audio_s, repeats=min(repeats, 3))
            except FadtkCannotDecode as error:
                run.set_tags({f"throughput/{name}/skipped": str(error)})
                print(f"throughput of {name} skipped: {error}")
                continue
            metrics.update({f"throughput/{name}/{k}": v for k, v in
                            {"ours_x_realtime": result.ours_x_realtime, "fadtk_x_realtime": result.fadtk_x_realtime,
                             "ours_s": result.ours_s, "fadtk_s": result.fadtk_s, "audio_s": result.audio_s,
                             "clips": result.clips, "repeats": result.repeats,
                             "network_per_file_s": result.network_per_file_s,
                             "network_batched_s": result.network_batched_s, "ceiling": result.ceiling, **{f"ours_{k}": v for k, v in result.stages.items()}}.items()})
            run.set_tags({f"throughput/{name}/weights": weights})
        run.log_metrics(metrics)


if __name__ == "__main__":
    main()
