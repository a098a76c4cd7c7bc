"""Tables and figures under ``reports/``, regenerated from MLflow runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from musicdiff.report.tables import write_text


# What `dvc plots show` renders (the report stage writes them).
PLOTS = ("figures/clip_levels.png", "figures/fad_vs_steps.png", "figures/fad_vs_n_samples.png",
         "figures/variation_strength.png", "figures/metric_sensitivity.png")


def report_orders(params: dict) -> dict:
    """Column orders as listed in ``params.yaml`` (reference sets then reference statistics, samplers,
    embeddings) and the evaluation protocol, as keyword arguments of :func:`build_reports`."""
    return {"reference_order": [*params.get("reference_sets", {}), *(params.get("reference_stats") or {})] or None,
            "sampler_order": list(params.get("samplers", {})) or None,
            "embedding_order": list((params.get("embed") or {}).get("embeddings", [])) or None,
            "protocol": dict(params.get("evaluation") or {})}


def build_reports(metrics_dir: Path, reports_dir: Path, reference_order: list[str] | None = None,
                  sampler_order: list[str] | None = None, embedding_order: list[str] | None = None,
                  protocol: dict | None = None) -> list[Path]:
    """Regenerate every report table (``.md``, ``.csv``, ``.tex``) and figure (``.png``) from the runs
    named by the JSON records in ``metrics_dir``, and the index ``README.md``.

    Returns the files written. Raises ``musicdiff.tracking.MissingRunError`` when the MLflow store
    lacks a run (fix: ``musicdiff relog metrics/``) and ``FileNotFoundError`` when there are no
    records.
    """
    from musicdiff.tracking import load_runs

    records = sorted(Path(metrics_dir).rglob("*.json"))
    if not records:
        raise FileNotFoundError(f"no stage records under {metrics_dir}; run `dvc repro` first")
    runs = load_runs(records)
    orders = {"reference_order": reference_order, "sampler_order": sampler_order, "embedding_order": embedding_order}
    written = _headline_tables(runs, Path(reports_dir) / "tables", orders, protocol or {})
    written += _analyses(runs, Path(reports_dir), orders)
    import json

    headline = Path(reports_dir) / "headline.json"
    write_text(headline, json.dumps(headline_numbers(Path(metrics_dir)), indent=1, sort_keys=True) + "\n")
    index = Path(reports_dir) / "README.md"
    write_text(index, _index(written + [headline], Path(reports_dir)))
    return written + [headline, index]


def headline_numbers(metrics_dir: Path) -> dict:
    """``{metric: {embedding: {reference: {system: value}}}}`` for FAD and KAD of every headline cell and
    floor, read from the JSON records of ``metrics_dir`` (the numbers ``dvc exp show`` lists)."""
    import json

    out = {}
    for stage in ("evaluate", "floor"):
        for path in sorted((Path(metrics_dir) / stage).glob("*.json")):
            record = json.loads(path.read_text())
            if stage == "evaluate" and record["tags"].get("headline") != "true":
                continue
            for key, value in record["metrics"].items():
                parts = key.split("/")
                if len(parts) == 3 and parts[2] in ("fad", "kad"):
                    out.setdefault(parts[2], {}).setdefault(parts[0], {}).setdefault(parts[1], {})[
                        record["instance"]] = round(value, 4)
    return out


def not_run(runs: list[dict]) -> dict[str, str]:
    """``{embedding: why it was not run}`` from the weights run's ``unavailable.*``/``available.*`` tags."""
    out = {}
    for run in runs:
        if run["stage"] == "weights":
            for key, value in run["tags"].items():
                if key.startswith(("unavailable.", "available.")):
                    out[key.split(".", 1)[1]] = value
    return out


def _headline_tables(runs: list[dict], tables: Path, orders: dict, protocol: dict) -> list[Path]:
    """fad (scores), comparisons, speed and bench tables."""
    from musicdiff.report import comparisons as c
    from musicdiff.report.bench import bench_frames, bench_markdown
    from musicdiff.report.render import latex, write_table
    from musicdiff.report.scores import scores_frame, scores_markdown
    from musicdiff.report.tables import gpu_paper_frame, speed_frame, speed_markdown, speed_notes

    written = []
    scores = scores_frame(runs)
    if len(scores):
        text, sections = scores_markdown(scores, protocol, not_run(runs), orders["reference_order"],
                                         orders["embedding_order"], orders["sampler_order"])
        write_text(tables / "fad.csv", scores.to_csv(index=False, float_format="%.6g"))
        write_text(tables / "fad.md", text)
        write_text(tables / "fad.tex", latex("FAD", sections))
        written += [tables / "fad.md", tables / "fad.csv", tables / "fad.tex"]
        labels = dict(zip(scores["system"], scores["label"]))
        fad_ci = {(r.embedding, r.system, r.reference): (r.fad_ci_low, r.fad_ci_high) for r in scores.itertuples()}
        compared = c.comparisons_frame(runs, labels)
        if len(compared):
            written += write_table(tables, "comparisons", "Comparisons of systems", c.INTRO,
                                   c.comparisons_sections(compared, fad_ci, orders["reference_order"],
                                                          orders["embedding_order"]), compared)
    from musicdiff.report.tables import startup_frame

    startup = startup_frame(runs)
    if len(startup):
        written += write_table(tables, "startup", "Stage start-up",
                               "Measured in every stage run of the last `dvc repro` (one process per stage): start-up "
                               "is the time from the process's start to its MLflow run, i.e. the interpreter and the "
                               "stage's imports; a stage imports only what it uses, so the metric and report stages "
                               "load neither torch nor diffusers. MLflow's own import and run set-up is apart. "
                               "Timed on the machine that ran the pipeline; other work on it inflates them.",
                               [("Start-up per stage kind", startup)], startup, floatfmt=".2f")
    speed = speed_frame(runs, orders["sampler_order"])
    if len(speed):
        gpu, gpu_line = gpu_paper_frame(runs)
        write_text(tables / "speed.md", speed_markdown(speed, (gpu, gpu_line)))
        write_text(tables / "speed.csv", speed.to_csv(index=False))
        sections = [("Speed", speed.drop(columns=["Ratio check reason"], errors="ignore"))]
        notes = speed_notes(speed)
        if notes:
            sections.append(("Ratio check", pd.DataFrame({"Ratio check": notes})))
        sections.append(("GPU, paper size", gpu if len(gpu) else pd.DataFrame({"GPU, paper size": [gpu_line]})))
        write_text(tables / "speed.tex", latex("Speed", sections))
        written += [tables / "speed.md", tables / "speed.csv", tables / "speed.tex"]
        if len(gpu):
            write_text(tables / "speed_gpu.csv", gpu.to_csv(index=False))
            written.append(tables / "speed_gpu.csv")
    bench = bench_frames(runs)
    if bench:
        write_text(tables / "bench.md", bench_markdown(bench))
        sections = [(name, frame) for name, frame in bench.items() if len(frame)]
        long = pd.concat([frame.assign(table=name) for name, frame in sections], ignore_index=True)
        write_text(tables / "bench.csv", long.to_csv(index=False, float_format="%.6g"))
        write_text(tables / "bench.tex", latex("musicdiff against fadtk", sections))
        written += [tables / "bench.md", tables / "bench.csv", tables / "bench.tex"]
    return written


def _analyses(runs: list[dict], reports: Path, orders: dict) -> list[Path]:
    """noisy_filtering, fad_vs_steps, fad_vs_n_samples, outliers and metric_sensitivity tables, and their figures."""
    from musicdiff.report import analyses as a
    from musicdiff.report import figures
    from musicdiff.report import sensitivity as sens
    from musicdiff.report.render import write_table

    tables, written = reports / "tables", []
    refs, samplers = orders["reference_order"], orders["sampler_order"]
    settings = a.filter_settings(runs)
    filtered, levels = a.filter_frame(runs), a.levels_frame(runs)
    if len(filtered):
        written += write_table(tables, "noisy_filtering", "Noisy-sample filtering (the study's Table 5.2)",
                               a.describe_filter(settings) + " Each cell is FAD on all clips / FAD on the kept clips "
                               "(† under-sampled: read KAD in the CSV).",
                               a.filter_sections(filtered, a.level_summary(runs, samplers), settings, refs, samplers,
                                                 orders["embedding_order"]),
                               filtered, floatfmt=".2f")
    if len(levels):
        written.append(figures.clip_levels_figure(levels, settings, reports / "figures" / "clip_levels.png", samplers))
    steps = a.steps_frame(runs)
    if len(steps):
        written += write_table(tables, "fad_vs_steps", "FAD vs training steps",
                               f"Each checkpoint's EMA weights generate {int(steps['n_eval_clips'].iloc[0])} clips "
                               f"with {steps['sampler'].iloc[0]} (same seed at every step), embedded with "
                               f"{steps['embedding'].iloc[0]}.", a.steps_sections(steps, refs), steps)
        written.append(figures.fad_vs_steps_figure(steps, reports / "figures" / "fad_vs_steps.png", refs))
    size = a.sample_size_frame(runs)
    if len(size):
        written += write_table(tables, "fad_vs_n_samples", "FAD vs number of samples",
                               f"Evaluation set {size['evaluation'].iloc[0]} ({int(size['n'].max())} clips, "
                               f"{size['embedding'].iloc[0]}). Below the full set, subsets are drawn without "
                               "replacement and the interval spans the central 95% of their scores; at the full "
                               "set it is the clip bootstrap (FAD) or the jackknife (KAD). ‡: FAD-inf not reliable "
                               "(its subsets are smaller than the embedding's dimension, or a poor fit).",
                               a.sample_size_sections(size, refs), size)
        written.append(figures.fad_vs_n_samples_figure(size, reports / "figures" / "fad_vs_n_samples.png", refs))
    summary, top = a.outliers_frames(runs)
    if len(summary):
        threshold = a.outlier_threshold(runs)
        written += write_table(tables, "outliers", "Per-clip outliers",
                               "Each clip's score (the mean squared distance of its frames to the reference mean, the "
                               "same for generated and real clips, independent of the number of frames) as a z-score "
                               "against the leave-one-out scores of the reference set's own clips; outliers have z "
                               f"above {threshold:g}. Real clips (floors and anchor sets) show what z means for each "
                               "embedding.", [("Outliers per set", summary), ("Top outliers", top)], top,
                               floatfmt=".2f")
    sensitivity = sens.sensitivity_frame(runs)
    if len(sensitivity):
        written += write_table(tables, "metric_sensitivity", "Metric sensitivity",
                               "Held-out real clips under graded degradations, scored by every embedding against the "
                               "held-out reference set: a metric worth reading grows with each degradation's "
                               "strength. † FAD under-sampled (read KAD).",
                               sens.sensitivity_sections(sensitivity, sens.rho_frame(runs), orders["embedding_order"]),
                               sensitivity, floatfmt=".3g")
        written.append(sens.sensitivity_figure(sensitivity, reports / "figures" / "metric_sensitivity.png",
                                               orders["embedding_order"]))
    written += _creative(runs, reports, refs)
    return written


def _creative(runs: list[dict], reports: Path, refs: list[str] | None) -> list[Path]:
    """variation_strength and text_conditioning tables, and the variation figure."""
    from musicdiff.report import creative as c
    from musicdiff.report.render import write_table

    written = []
    variation = c.variation_frame(runs)
    if len(variation):
        written += write_table(reports / "tables", "variation_strength", "Variations vs strength",
                               "Real clips noised to start timestep T and denoised (`musicdiff vary`); distances "
                               "are between each variation and its source clip (mean over clips).",
                               c.variation_sections(variation, refs), variation, floatfmt=".3g")
        written.append(c.variation_strength_figure(variation, reports / "figures" / "variation_strength.png", refs))
    text = c.text_frame(runs)
    if len(text):
        written += write_table(reports / "tables", "text_conditioning", "Text-conditioned FAD per caption label",
                               "Clips generated with each label's captions (classifier-free guidance) and "
                               "unconditional clips of the same model, against the label's reference set. The "
                               "ambient, band and drums sets were also training data of this variant, so those "
                               "scores are not held out.", c.text_sections(text), text, floatfmt=".2f")
    return written


DESCRIPTIONS = {
    "headline.json": "FAD and KAD of each family's headline cell and of the floors, per embedding and reference set: "
                     "the DVC metrics `dvc exp show` lists.",
    "fad.md": "FAD, KAD and FAD-inf of every system (real floors, then each model x sampler) for each embedding x "
              "reference set, each with its 95% CI, the clips and independent frames it rests on, and a mark where "
              "it cannot be read plainly (under-sampled FAD, unreliable FAD-inf); embeddings not run, with why.",
    "fad.csv": "The same results in long form, with the mean and trace terms, counts, adequacy, FAD-inf fit and flags.",
    "fad.tex": "The FAD, FAD-inf and KAD tables as LaTeX (booktabs).",
    "comparisons.md": "Systems ranked per embedding and reference set, each against its neighbour above: FAD and "
                      "KAD differences with 95% intervals and the verdict (better, worse, not distinguishable).",
    "comparisons.csv": "The rankings and paired comparisons in long form.",
    "comparisons.tex": "The comparison tables as LaTeX.",
    "metric_sensitivity.md": "Held-out real music under graded degradations (noise, low-pass, Griffin-Lim) scored by "
                             "every embedding with FAD and KAD, and the rank correlation of each score with the "
                             "degradation's strength.",
    "metric_sensitivity.csv": "The sensitivity scores per embedding, degradation and level, with CIs.",
    "metric_sensitivity.tex": "The sensitivity tables as LaTeX.",
    "metric_sensitivity.png": "FAD and KAD against each degradation's level, one panel per embedding and degradation.",
    "startup.md": "Start-up of each stage kind (process start to its MLflow run: interpreter and imports) and "
                  "MLflow's import and run set-up, measured in the stage runs.",
    "startup.csv": "The start-up table as CSV.",
    "startup.tex": "The start-up table as LaTeX.",
    "speed.md": "The study's speed table: parameters, size, clip length, training time per step and, for "
                "each sampler, seconds per second of generated audio (denoising and decoding apart, median "
                "of timed runs), with device, threads and inference batch; the DDIM/DDPM wall ratio beside "
                "the step ratio, marked with the logged reason where they disagree; and the GPU, paper size "
                "block (the study's [256, 256] mel UNet beside the study's numbers, or why it was not timed).",
    "speed.csv": "The speed table as CSV (with the ratio-check reasons).",
    "speed_gpu.csv": "The GPU, paper size block as CSV (written when a CUDA device timed it).",
    "speed.tex": "The speed table as LaTeX.",
    "bench.md": "musicdiff against fadtk on the same inputs: Frechet distance agreement and time, the effect of "
                "fadtk's float16 embedding storage, and embedding throughput of the same network.",
    "bench.csv": "The benchmark tables in one CSV (column `table` names each).",
    "bench.tex": "The benchmark tables as LaTeX.",
    "noisy_filtering.md": "The study's Table 5.2: FAD on all clips / on the clips kept by the noisy-sample filter, "
                          "per model in reference set x sampler rows and embedding columns, with the clips removed, "
                          "and each generated set's mean level (dBFS, LUFS).",
    "noisy_filtering.csv": "The filtering results in long form, with both CIs.",
    "noisy_filtering.tex": "The filtering tables as LaTeX.",
    "clip_levels.png": "Histogram of the generated clips' level per sampler, one panel per model, with the filter's "
                       "bound.",
    "fad_vs_steps.md": "FAD and KAD of clips generated from each training checkpoint, per model and reference set.",
    "fad_vs_steps.csv": "FAD and KAD per model, checkpoint step and reference set, with CIs.",
    "fad_vs_steps.tex": "The training-steps tables as LaTeX.",
    "fad_vs_steps.png": "FAD against training step with its 95% CI, one panel per reference set, one line per model.",
    "fad_vs_n_samples.md": "FAD and KAD against the number of evaluation clips, with intervals, and FAD-inf per "
                           "reference set.",
    "fad_vs_n_samples.csv": "FAD and KAD per reference set and number of clips, with the FAD-inf fit.",
    "fad_vs_n_samples.tex": "The number-of-samples tables as LaTeX.",
    "fad_vs_n_samples.png": "FAD (with the FAD-inf + b/n fit) and KAD against the number of clips, per reference "
                            "set.",
    "outliers.md": "Per-clip outliers: for each evaluation set (and real anchor sets) the clips with z-scores above "
                   "the threshold, and the top clips with their audio.",
    "outliers.csv": "The top outlier clips of each set with the clip, z-score and per-clip score.",
    "outliers.tex": "The outlier tables as LaTeX.",
    "variation_strength.md": "Variations of real clips from each start timestep T (strength T / 1000): distance to "
                             "the source clip and FAD per reference set, per model.",
    "variation_strength.csv": "Variation results per model, start timestep and reference set, with CIs and KAD.",
    "variation_strength.tex": "The variation table as LaTeX.",
    "variation_strength.png": "FAD and distance to the source clip against variation strength, one line per model.",
    "text_conditioning.md": "Text-conditioned FAD per caption label against the unconditional FAD of the same "
                            "model, on the label's reference set.",
    "text_conditioning.csv": "FAD of each caption label's clips and of the unconditional clips against every "
                             "reference set, with CIs.",
    "text_conditioning.tex": "The text-conditioning table as LaTeX.",
}


def _index(paths: list[Path], root: Path) -> str:
    lines = ["# Reports", "",
             "Generated by `musicdiff report` (the DVC `report` stage) from the MLflow runs named in "
             "`metrics/`; do not edit by hand.", ""]
    for path in paths:
        lines.append(f"- [{path.relative_to(root)}]({path.relative_to(root)}): {DESCRIPTIONS[path.name]}")
    lines += ["", "Not written by `musicdiff report`: [baseline/fad_ci.json](baseline/fad_ci.json), the FAD regression "
              "baseline (FAD of the tiny benchmark in `pipelines/regress/` with its measured tolerance, library "
              "versions and data hashes), which `musicdiff regress --update` rewrites and `musicdiff regress` checks."]
    return "\n".join(lines) + "\n"
