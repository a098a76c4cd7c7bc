"""Stage sensitivity: do the metrics respond to what they should? Held-out real music under graded
degradations, scored by every embedding with FAD and KAD (``musicdiff.evaluation.degradations``).

``sensitivity.n_clips`` real clips of ``sensitivity.source`` (a prepared ``<dataset>/<split>``; by default
the training set's ``floor`` split: held-out tracks outside the held-out reference set), cut like every
evaluation clip, are degraded by each kind of ``sensitivity.degradations`` at each level (white noise at
an SNR in dB, low-pass at a cut-off in Hz, the Griffin-Lim round trip with a number of iterations),
written to ``data/sensitivity/<kind>_<level>/`` (``clean/`` for the clips themselves), embedded and
scored against ``sensitivity.reference_sets``. Metrics: ``<embedding>/<reference>/<kind>/<level>/<name>``
(FAD with CI, KAD with CI, adequacy) and ``<embedding>/<reference>/<kind>/{fad_rho,kad_rho}``: Spearman's
rank correlation of the score with the degradation's strength, the clean clips included as the mildest.
"""

from __future__ import annotations

from musicdiff.data.audio import write_float_wav
from musicdiff.evaluation.degradations import degrade, rank_correlation, strength
from musicdiff.evaluation.floors import real_clips
from musicdiff.tracking import stage_run

from pipelines import embedding as em
from pipelines import evaluation as ev
from pipelines.common import ROOT, atomic_dir, load_params, parser, record_path, run_stage


def level_name(kind: str, level) -> str:
    return f"{kind}_{level:g}"


def main() -> None:
    parser(__doc__).parse_args()
    params = load_params()
    settings = params["sensitivity"]
    source = ROOT / "data" / "prepared" / settings["source"]
    out_dir = ROOT / "data" / "sensitivity"
    rate = params["audio"]["sample_rate"]
    kinds = {kind: [float(v) for v in levels] for kind, levels in settings["degradations"].items()}
    with stage_run("sensitivity", "all", record_path("sensitivity", "all"),
                   tags={"source": settings["source"], "reference_sets": ",".join(settings["reference_sets"])},
                   data_paths=[source]) as run:
        run.log_params({"sensitivity": settings, "evaluation": params["evaluation"], "embeddings": ev.embeddings(params)})
        audio, names = real_clips(em.audio_files(source), ev.protocol(params).clip_samples, rate,
                                  settings["n_clips"], settings.get("seed", 0))
        folders = {"clean": audio}
        for kind, levels in kinds.items():
            for level in levels:
                folders[level_name(kind, level)] = degrade(audio, rate, kind, level, seed=settings.get("seed", 0),
                                                           **({"mel": {**params["mel"], **params.get("decode", {})}}
                                                              if kind == "griffin_lim" else {}))
        with atomic_dir(out_dir) as tmp:
            for folder, clips in folders.items():
                (tmp / folder).mkdir()
                for name, clip in zip(names, clips):
                    write_float_wav(tmp / folder / f"{name.replace('#', '_')}.wav", clip, rate)
        metrics = {}
        for embedding_name in ev.embeddings(params):
            embedding = em.build_embedding(params, embedding_name)
            refs = ev.references(params, embedding_name, settings["reference_sets"], shipped=False)
            scored = {folder: ev.score_all(em.embed_folder(params, embedding, out_dir / folder, f"sensitivity/{folder}"),
                                           refs, ev.settings(params), fad_inf=False)[0] for folder in folders}
            for ref in refs:
                base = f"{embedding_name}/{ref}"
                for kind, levels in kinds.items():
                    series = [("clean", float("-inf"))] + [(level_name(kind, v), strength(kind, v)) for v in levels]
                    for folder, _ in series[1:]:
                        metrics.update({f"{base}/{kind}/{folder[len(kind) + 1:]}/{k.rsplit('/', 1)[1]}": v
                                        for k, v in scored[folder].items() if k.startswith(f"{base}/")})
                    for metric in ("fad", "kad"):
                        values = [scored[folder][f"{base}/{metric}"] for folder, _ in series]
                        metrics[f"{base}/{kind}/{metric}_rho"] = rank_correlation([s for _, s in series], values)
                metrics.update({f"{base}/clean/{k.rsplit('/', 1)[1]}": v for k, v in scored["clean"].items()
                                if k.startswith(f"{base}/")})
        run.log_metrics(metrics)


if __name__ == "__main__":
    run_stage(main)
