"""Stage filter: the study's noisy-sample filtering (Table 5.2) for every generated set and embedding.

For each generated set (``samples``) and external system (``systems``), the clips whose level (``noisy_filter.level``: rms_dbfs | lufs,
from the set's ``levels.csv``) lies outside ``[min_db, max_db]`` are removed and the set is scored
again against every reference set by ``musicdiff.evaluation.score`` (FAD with its CI, KAD, the
adequacy flag). The scores of all clips ("original") are those of the set's ``evaluate@`` record.
Metrics: ``<embedding>/<set>/<reference>/{fad,fad_ci_low,fad_ci_high,kad,adequate}`` and the same
with ``filtered_``, ``<set>/{n_clips,n_kept,n_removed}`` (evaluated clips: a system's file
gives several) and ``<set>/{n_files,n_files_removed}``; params: the removed files (the first 50) and each set's
levels (for the histograms). A set that keeps fewer than 3 clips has no filtered score (tag
``too_few_kept``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicdiff.evaluation.scoring import score
from musicdiff.evaluation.sets import EmbeddedSet
from musicdiff.evaluation.metrics.loudness import keep_mask
from musicdiff.tracking import StageRecord, stage_run

from pipelines import evaluation as ev
from pipelines.common import ROOT, load_params, parser, record_path, run_stage

FIELDS = ("fad", "fad_ci_low", "fad_ci_high", "kad", "kad_ci_low", "kad_ci_high", "adequate")


def system_levels(used: list[str], level: str) -> dict[str, float]:
    """``{file name: level}`` of an external system's files that its evaluation set used (``used``: the set's
    clip names, ``<file>#<clip>``; each file's mono mix at its own rate, as ``levels.csv`` measures a
    generated clip)."""
    from musicdiff.data.audio import decode_audio, downmix
    from musicdiff.evaluation.metrics.loudness import clip_level

    values = {}
    for relative in sorted({n.split("#")[0] for n in used}):
        data, rate = decode_audio(ROOT / relative)
        values[Path(relative).name] = float(getattr(clip_level(downmix(data).astype(np.float64), rate), level))
    return values


def set_levels(name: str, level: str) -> dict[str, float]:
    """``{file name: level}`` of one generated set, from its ``levels.csv``."""
    import pandas as pd

    path = ROOT / "data" / "samples" / name / "levels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro sample@{name}` first")
    table = pd.read_csv(path)
    if table[level].isna().any():
        raise ValueError(f"{path}: no {level} for {int(table[level].isna().sum())} clip(s) (LUFS needs clips of at "
                         "least 400 ms); set noisy_filter.level to rms_dbfs")
    return dict(zip(table["file"], table[level]))


def main() -> None:
    parser(__doc__).parse_args()
    params = load_params()
    settings = params["noisy_filter"]
    systems = list(params.get("systems") or {})
    sets = [*params["samples"], *systems]
    score_settings = ev.settings(params)
    with stage_run("filter", "all", record_path("filter", "all"),
                   tags={"level": settings["level"], "reference_sets": ",".join(params["reference_sets"])}) as run:
        metrics, removed, levels, too_few = {}, {}, {}, []
        masks, kept_clips = {}, {}
        first = ev.embeddings(params)[0]
        loaded = {name: EmbeddedSet.load(ev.set_path(params, name, first)) for name in sets}  # each set once
        for name in sets:
            values = (system_levels(loaded[name].names, settings["level"]) if name in systems
                      else set_levels(name, settings["level"]))
            files = sorted(values)
            keep = keep_mask(np.array([values[f] for f in files]), settings.get("max_db"), settings.get("min_db"))
            masks[name] = {f: bool(k) for f, k in zip(files, keep)}
            removed[name] = [f for f, k in zip(files, keep) if not k][:50]  # the first 50 (MLflow params are short)
            levels[name] = [round(float(values[f]), 2) for f in files]
            # counted in evaluated clips: a system's file gives several clips, a generated file one
            clips = loaded[name].names
            kept_clips[name] = [i for i, clip in enumerate(clips) if masks[name][Path(clip.split("#")[0]).name]]
            metrics.update({f"{name}/n_clips": len(clips), f"{name}/n_kept": len(kept_clips[name]),
                            f"{name}/n_removed": len(clips) - len(kept_clips[name]),
                            f"{name}/n_files": len(files), f"{name}/n_files_removed": int((~keep).sum())})
            if len(kept_clips[name]) < 3:
                too_few.append(name)
        originals = {name: StageRecord.read(record_path("evaluate", name)).metrics for name in sets}
        for embedding in ev.embeddings(params):
            refs = ev.references(params, embedding)
            for name in sets:
                original = originals[name]
                evaluation = loaded.pop(name) if embedding == first else \
                    EmbeddedSet.load(ev.set_path(params, name, embedding))
                kept = [i for i, clip in enumerate(evaluation.names)
                        if masks[name][Path(clip.split("#")[0]).name]]
                for ref, reference in refs.items():
                    prefix = f"{embedding}/{name}/{ref}"
                    metrics.update({f"{prefix}/{k}": original[f"{embedding}/{ref}/{k}"] for k in FIELDS
                                    if f"{embedding}/{ref}/{k}" in original})
                    if name in too_few:
                        continue
                    if len(kept) == len(evaluation.names):
                        filtered = {k: metrics[f"{prefix}/{k}"] for k in FIELDS if f"{prefix}/{k}" in metrics}
                    else:
                        filtered = score(evaluation.subset(kept, f"{name} (filtered)"), reference, score_settings,
                                         fad_inf_=False).metrics()
                    metrics.update({f"{prefix}/filtered_{k}": filtered[k] for k in FIELDS if k in filtered})
        run.log_params({"noisy_filter": settings, "evaluation_sets": sets, "removed": removed})
        run.log_params({f"levels.{name}": values for name, values in levels.items()})
        if too_few:
            run.set_tags({"too_few_kept": ",".join(too_few)})
        run.log_metrics(metrics)


if __name__ == "__main__":
    run_stage(main)
