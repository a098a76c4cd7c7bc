"""Tables and figures under ``reports/``, regenerated from MLflow runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from musicdiff.report.tables import write_text


def report_orders(params: dict) -> dict:
    """Column orders as listed in ``params.yaml`` (reference sets then reference statistics,
    samplers, embeddings), as keyword arguments of :func:`build_reports`."""
    return {"reference_order": [*params.get("reference_sets", {}), *(params.get("reference_stats") or {})] or None,
            "sampler_order": list(params.get("samplers", {})) or None,
            "embedding_order": list((params.get("embed") or {}).get("embeddings", [])) or None}


def build_reports(metrics_dir: Path, reports_dir: Path, reference_order: list[str] | None = None,
                  sampler_order: list[str] | None = None, embedding_order: list[str] | None = None) -> list[Path]:
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
    written = _headline_tables(runs, Path(reports_dir) / "tables", orders)
    written += _analyses(runs, Path(reports_dir), orders)
    index = Path(reports_dir) / "README.md"
    write_text(index, _index(written, Path(reports_dir)))
    return written + [index]


def _headline_tables(runs: list[dict], tables: Path, orders: dict) -> list[Path]:
    """fad, speed and bench tables."""
    from musicdiff.report.bench import bench_frames, bench_markdown
    from musicdiff.report.render import latex
    from musicdiff.report.tables import fad_frame, fad_markdown, fad_sections, speed_frame, speed_markdown

    written = []
    fad = fad_frame(runs)
    if len(fad):
        write_text(tables / "fad.csv", fad.to_csv(index=False, float_format="%.6g"))
        write_text(tables / "fad.md", fad_markdown(fad, orders["reference_order"], orders["embedding_order"],
                                                   orders["sampler_order"]))
        write_text(tables / "fad.tex", latex("FAD", fad_sections(fad, orders["reference_order"],
                                                                 orders["embedding_order"], orders["sampler_order"])))
        written += [tables / "fad.md", tables / "fad.csv", tables / "fad.tex"]
    speed = speed_frame(runs, orders["sampler_order"])
    if len(speed):
        write_text(tables / "speed.md", speed_markdown(speed))
        write_text(tables / "speed.csv", speed.to_csv(index=False))
        write_text(tables / "speed.tex", latex("Speed", [("Speed", speed)]))
        written += [tables / "speed.md", tables / "speed.csv", tables / "speed.tex"]
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
    """noisy_filtering, fad_vs_steps, fad_vs_n_samples and outliers tables, and their figures."""
    from musicdiff.report import analyses as a
    from musicdiff.report import figures
    from musicdiff.report.render import write_table

    tables, written = reports / "tables", []
    refs, samplers = orders["reference_order"], orders["sampler_order"]
    levels, settings = a.levels_frame(runs), a.filter_settings(runs)
    filtered = a.filter_frame(runs)
    if len(filtered) or len(levels):
        written += write_table(tables, "noisy_filtering", "Noisy-sample filtering (the study's Table 5.2)",
                               a.describe_filter(settings) + " Each cell is FAD on all clips / FAD on the kept clips.",
                               a.filter_sections(filtered, levels, settings, refs, samplers, orders["embedding_order"]),
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
                               "set it is the clip bootstrap (FAD) or the jackknife (KAD).",
                               a.sample_size_sections(size, refs), size)
        written.append(figures.fad_vs_n_samples_figure(size, reports / "figures" / "fad_vs_n_samples.png", refs))
    summary, top = a.outliers_frames(runs)
    if len(summary):
        threshold = a.outlier_threshold(runs)
        written += write_table(tables, "outliers", "Per-clip outliers",
                               "Per-clip FAD of each clip as a z-score against the leave-one-out per-clip FAD of the "
                               f"reference set's own clips; outliers have z above {threshold:g}. Real clips of the "
                               "anchor sets show what z means for this embedding.",
                               [("Outliers per set", summary), ("Top outliers with their audio", top)],
                               top, floatfmt=".2f")
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
    "fad.md": "FAD, FAD-inf and KAD of each model x sampler (rows) for each embedding x reference set "
              "(columns), each with its 95% CI and the number of clips; embeddings skipped for missing "
              "weights are listed with the reason.",
    "fad.csv": "The same results in long form, with the mean and trace terms of each FAD and the KAD bandwidth.",
    "fad.tex": "The FAD, FAD-inf and KAD tables as LaTeX (booktabs).",
    "speed.md": "The study's speed table: parameters, size, clip length, training time per step and, for "
                "each sampler, seconds per second of generated audio (denoising and decoding apart, median "
                "of timed runs), with device and threads.",
    "speed.csv": "The speed table as CSV.",
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
    "outliers.md": "Per-clip outliers: for each generated set (and real anchor sets) the clips with z-scores above "
                   "the threshold, and the top clips with their audio paths.",
    "outliers.csv": "The top outlier clips of each set with audio path, z-score and per-clip FAD.",
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
