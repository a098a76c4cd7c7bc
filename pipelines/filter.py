"""Stage filter@<embedding>: the study's noisy-sample filtering (Table 5.2) for every generated set.

For each variant x sampler, the clips whose level (``noisy_filter.level``: rms_dbfs | lufs, from the
levels@ records) lies outside ``[min_db, max_db]`` are removed, and FAD is computed on all clips
("original") and on the kept clips ("filtered") against every reference set (and the shipped
statistics that cover the embedding), each with its bootstrap CI. Metrics are
``<variant>-<sampler>/<reference>/{fad,fad_ci_low,fad_ci_high,filtered_fad,...}`` and
``<variant>-<sampler>/{n_clips,n_removed,n_kept}``; the removed files are a param. A set that keeps
fewer than 2 clips has no filtered FAD (no covariance) and says so in the tag ``too_few_kept``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicdiff.metrics.embeddings import EmbeddedSet
from musicdiff.metrics.fad import fad_score
from musicdiff.metrics.loudness import keep_mask
from musicdiff.tracking import StageRecord, stage_run

from pipelines.common import ROOT, load_params, parser, record_path
from pipelines.fad import reference_statistics


def clip_levels(instance: str, level: str) -> dict[str, float]:
    """``{file name: level}`` of one generated set, from its levels@ record."""
    path = record_path("levels", instance)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro levels@{instance}` first")
    record = StageRecord.read(path)
    found = {name: record.metrics.get(f"clip_{i:04d}/{level}") for i, name in enumerate(record.params["files"])}
    missing = [name for name, value in found.items() if value is None]
    if missing:
        raise ValueError(f"{instance}: no {level} for {len(missing)} clip(s), e.g. {missing[0]} (LUFS needs clips of "
                         "at least 400 ms); set noisy_filter.level to rms_dbfs")
    return found


def main() -> None:
    args = parser(__doc__, "--embedding").parse_args()
    params = load_params()
    settings, fad_settings = params["noisy_filter"], params["fad"]
    embedding = args.embedding
    folder = ROOT / "data" / "embeddings" / embedding
    sets = [f"{v}-{s}" for v in params["variants"] for s in params["samplers"]]
    references = list(params["reference_sets"])
    tags = {"embedding": embedding, "reference_sets": ",".join(references), "level": settings["level"]}
    evaluations = {name: EmbeddedSet.load(folder / "samples" / f"{name}.npz") for name in sets}
    skipped = next((e.skipped for e in evaluations.values() if e.skipped), "")
    if skipped:
        with stage_run("filter", embedding, record_path("filter", embedding), tags={**tags, "skipped": skipped}):
            pass
        print(f"skipped filter@{embedding}: {skipped}")
        return
    inputs = [folder / "samples" / f"{name}.npz" for name in sets] + \
             [folder / "reference" / f"{r}.npz" for r in references]
    ref_sets = {r: EmbeddedSet.load(folder / "reference" / f"{r}.npz").frames for r in references}
    ref_sets.update(reference_statistics(params, embedding))
    fad_kwargs = {"n_bootstrap": fad_settings["n_bootstrap"], "seed": fad_settings["seed"], "ci": fad_settings["ci"]}
    with stage_run("filter", embedding, record_path("filter", embedding),
                   tags={**tags, "reference_stats": ",".join(k for k in ref_sets if k not in references)},
                   data_paths=inputs) as run:
        metrics, removed, too_few = {}, {}, []
        for name, evaluation in evaluations.items():
            levels = clip_levels(name, settings["level"])
            values = np.array([levels[Path(p).name] for p in evaluation.paths])
            keep = keep_mask(values, settings.get("max_db"), settings.get("min_db"))
            removed[name] = [Path(p).name for p, k in zip(evaluation.paths, keep) if not k]
            kept = [c for c, k in zip(evaluation.clips, keep) if k]
            metrics.update({f"{name}/n_clips": len(keep), f"{name}/n_kept": int(keep.sum()),
                            f"{name}/n_removed": int((~keep).sum())})
            if len(kept) < 2:
                too_few.append(name)
            for ref, reference in ref_sets.items():
                original = fad_score(reference, evaluation.clips, **fad_kwargs)
                metrics.update({f"{name}/{ref}/fad": original.fad, f"{name}/{ref}/fad_ci_low": original.ci_low,
                                f"{name}/{ref}/fad_ci_high": original.ci_high})
                if len(kept) >= 2:
                    filtered = original if keep.all() else fad_score(reference, kept, **fad_kwargs)
                    metrics.update({f"{name}/{ref}/filtered_fad": filtered.fad,
                                    f"{name}/{ref}/filtered_fad_ci_low": filtered.ci_low,
                                    f"{name}/{ref}/filtered_fad_ci_high": filtered.ci_high})
        run.log_params({"noisy_filter": settings, "fad": fad_settings, "evaluation_sets": sets,
                        "reference_sets": list(ref_sets), "removed": removed})
        if too_few:
            run.set_tags({"too_few_kept": ",".join(too_few)})
        run.log_metrics(metrics)


if __name__ == "__main__":
    main()
