"""Tables of the study's analyses, built from MLflow runs: clip levels and the noisy-sample filter
(Table 5.2), FAD vs training steps, FAD vs number of samples, per-clip outliers.

Input rows are what ``musicdiff.tracking.load_runs`` returns (``stage``, ``instance``, ``run_id``,
``params`` as MLflow strings, ``metrics``, ``tags``). Each ``*_frame`` returns a long table (the CSV);
each ``*_sections`` returns ``[(heading, DataFrame)]`` in the study's layout, rendered to Markdown
and LaTeX by ``musicdiff.report.render``.
"""

from __future__ import annotations

import json
import re

import pandas as pd

from musicdiff.report.tables import format_ci, ordered


def _param(run: dict, key: str, default=None):
    """A param as logged (``musicdiff.tracking.flatten_params``): JSON lists decoded, else the string."""
    value = run["params"].get(key)
    if value is None:
        return default
    try:
        return json.loads(value)
    except ValueError:
        return value


def _number(value) -> float | None:
    return None if value in (None, "None", "null", "") else float(value)


def set_names(runs: list[dict]) -> dict[str, tuple[str, str]]:
    """``{evaluation set: (variant, sampler)}`` from the sample and levels runs' tags."""
    return {r["instance"]: (r["tags"]["variant"], r["tags"]["sampler"]) for r in runs
            if r["stage"] in ("sample", "levels") and "variant" in r["tags"] and "sampler" in r["tags"]}


def _split(name: str, names: dict) -> tuple[str, str]:
    return names.get(name) or tuple(name.rsplit("-", 1))


# -- clip levels and the noisy-sample filter -------------------------------------------------------

def levels_frame(runs: list[dict]) -> pd.DataFrame:
    """Per generated clip: variant, sampler, clip index, file, RMS level (dBFS), loudness (LUFS), peak (dBFS)."""
    rows = []
    for run in runs:
        if run["stage"] != "levels":
            continue
        files = _param(run, "files", [])
        clips = sorted({k.split("/")[0] for k in run["metrics"] if k.startswith("clip_")})
        for clip in clips:
            i = int(clip[5:])
            rows.append({"variant": run["tags"]["variant"], "sampler": run["tags"]["sampler"], "clip": i,
                         "file": files[i] if i < len(files) else "",
                         **{name: run["metrics"].get(f"{clip}/{name}", float("nan"))
                            for name in ("rms_dbfs", "lufs", "peak_dbfs")}})
    columns = ["variant", "sampler", "clip", "file", "rms_dbfs", "lufs", "peak_dbfs"]
    return pd.DataFrame(rows, columns=columns).sort_values(["variant", "sampler", "clip"], ignore_index=True)


def filter_settings(runs: list[dict]) -> dict:
    """``{"level", "max_db", "min_db"}`` of the noisy-sample filter (from a filter run; defaults if none)."""
    for run in runs:
        if run["stage"] == "filter" and not run["tags"].get("skipped"):
            return {"level": run["params"].get("noisy_filter.level", "rms_dbfs"),
                    "max_db": _number(run["params"].get("noisy_filter.max_db")),
                    "min_db": _number(run["params"].get("noisy_filter.min_db"))}
    return {"level": "rms_dbfs", "max_db": None, "min_db": None}


def filter_frame(runs: list[dict]) -> pd.DataFrame:
    """Long table of the filter runs: embedding, variant, sampler, reference, FAD of all clips and of the
    kept clips with their CIs, clips, removed; a skipped embedding gives one row with the reason."""
    names = set_names(runs)
    rows = []
    for run in runs:
        if run["stage"] != "filter":
            continue
        embedding, m = run["tags"]["embedding"], run["metrics"]
        if run["tags"].get("skipped"):
            rows.append({"embedding": embedding, "skipped": run["tags"]["skipped"].splitlines()[0]})
            continue
        for key in sorted(k for k in m if k.endswith("/fad") and k.count("/") == 2):
            name, ref, _ = key.split("/")
            variant, sampler = _split(name, names)
            get = lambda field: m.get(f"{name}/{ref}/{field}")  # noqa: E731
            rows.append({"embedding": embedding, "variant": variant, "sampler": sampler, "reference": ref,
                         "fad": get("fad"), "fad_ci_low": get("fad_ci_low"), "fad_ci_high": get("fad_ci_high"),
                         "filtered_fad": get("filtered_fad"), "filtered_fad_ci_low": get("filtered_fad_ci_low"),
                         "filtered_fad_ci_high": get("filtered_fad_ci_high"), "n_clips": int(m[f"{name}/n_clips"]),
                         "n_removed": int(m[f"{name}/n_removed"]), "skipped": ""})
    columns = ["embedding", "variant", "sampler", "reference", "fad", "fad_ci_low", "fad_ci_high", "filtered_fad",
               "filtered_fad_ci_low", "filtered_fad_ci_high", "n_clips", "n_removed", "skipped"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("n_clips", "n_removed"):
        frame[column] = frame[column].astype("Int64")
    return frame


def filter_sections(frame: pd.DataFrame, levels: pd.DataFrame, settings: dict,
                    reference_order: list[str] | None = None, sampler_order: list[str] | None = None,
                    embedding_order: list[str] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """Table 5.2's layout per model: reference set x sampler rows, per embedding ``original / filtered``
    FAD, and the clips removed; then each set's level (the study's mean decibel value)."""
    scored = frame[frame["skipped"].fillna("") == ""]
    sections = []
    embeddings = ordered(scored["embedding"], embedding_order)
    for variant in sorted(scored["variant"].unique()):
        block = scored[scored["variant"] == variant]
        rows = []
        for ref in ordered(block["reference"], reference_order):
            for sampler in ordered(block["sampler"], sampler_order):
                hit = block[(block["reference"] == ref) & (block["sampler"] == sampler)]
                if not len(hit):
                    continue
                row = {"Reference set": ref, "Sampler": sampler}
                for embedding in embeddings:
                    e = hit[hit["embedding"] == embedding]
                    row[f"{embedding} (original / filtered)"] = (
                        f"{e['fad'].iloc[0]:.2f} / " + (f"{e['filtered_fad'].iloc[0]:.2f}"
                                                         if pd.notna(e["filtered_fad"].iloc[0]) else "n/a")
                    ) if len(e) else ""
                row["clips removed"] = f"{hit['n_removed'].iloc[0]} of {hit['n_clips'].iloc[0]}"
                rows.append(row)
        sections.append((f"Model {variant}: FAD original / filtered", pd.DataFrame(rows)))
    if len(levels):
        level = settings["level"]
        removed = scored.groupby(["variant", "sampler"])["n_removed"].first() if len(scored) else pd.Series(dtype=int)
        rows = []
        for (variant, sampler), clips in levels.groupby(["variant", "sampler"], sort=False):
            rows.append({"model": variant, "sampler": sampler, "clips": len(clips),
                         "mean RMS (dBFS)": round(clips["rms_dbfs"].mean(), 2),
                         "max RMS (dBFS)": round(clips["rms_dbfs"].max(), 2),
                         "mean loudness (LUFS)": round(clips["lufs"].mean(), 2),
                         "max peak (dBFS)": round(clips["peak_dbfs"].max(), 2),
                         f"removed ({level})": int(removed.get((variant, sampler), 0))})
        samplers = ordered(levels["sampler"], sampler_order)
        table = pd.DataFrame(rows)
        order = sorted(range(len(table)), key=lambda i: (table["model"][i], samplers.index(table["sampler"][i])))
        table = table.iloc[order]
        sections.append(("Level of the generated clips", table.reset_index(drop=True)))
    skipped = frame[frame["skipped"].fillna("") != ""]
    if len(skipped):
        sections.append(("Skipped embeddings", skipped[["embedding", "skipped"]].reset_index(drop=True)))
    return sections


def describe_filter(settings: dict) -> str:
    """One sentence saying which clips the filter removed."""
    unit = "LUFS" if settings["level"] == "lufs" else "dBFS"
    name = "integrated loudness" if settings["level"] == "lufs" else "RMS level"
    bounds = []
    if settings.get("max_db") is not None:
        bounds.append(f"above {settings['max_db']:g} {unit}")
    if settings.get("min_db") is not None:
        bounds.append(f"below {settings['min_db']:g} {unit}")
    return f"Clips whose {name} is {' or '.join(bounds) or '(no bound)'} are removed (params `noisy_filter`)."


def _metric_groups(runs: list[dict], stage: str, pattern: str):
    """For each scored run of ``stage`` and each metric key ``<a>/<b>/fad`` matching ``pattern``:
    ``(run, a, b, {field: value})`` with every metric under ``<a>/<b>/``."""
    for run in runs:
        if run["stage"] != stage or run["tags"].get("skipped"):
            continue
        m = run["metrics"]
        for key in sorted(k for k in m if re.fullmatch(pattern, k)):
            a, b, _ = key.split("/")
            prefix = f"{a}/{b}/"
            yield run, a, b, {k[len(prefix):]: v for k, v in m.items() if k.startswith(prefix)}


# -- FAD vs training steps -------------------------------------------------------------------------

def steps_frame(runs: list[dict]) -> pd.DataFrame:
    """Per variant, checkpoint step and reference set: FAD and KAD with their CIs and the clip count."""
    rows = []
    for run, step, ref, v in _metric_groups(runs, "steps", r"step_\d+/[^/]+/fad"):
        rows.append({"variant": run["instance"], "step": int(step[5:]), "reference": ref, "fad": v["fad"],
                     "fad_ci_low": v["fad_ci_low"], "fad_ci_high": v["fad_ci_high"], "kad": v["kad"],
                     "kad_ci_low": v["kad_ci_low"], "kad_ci_high": v["kad_ci_high"],
                     "n_eval_clips": int(v["n_eval_clips"]), "sampler": run["tags"].get("sampler", ""),
                     "embedding": run["tags"].get("embedding", "")})
    columns = ["variant", "step", "reference", "fad", "fad_ci_low", "fad_ci_high", "kad", "kad_ci_low",
               "kad_ci_high", "n_eval_clips", "sampler", "embedding"]
    return pd.DataFrame(rows, columns=columns).sort_values(["variant", "step", "reference"], ignore_index=True)


def _wide(frame: pd.DataFrame, index: list[str], value: str, low: str, high: str,
          reference_order: list[str] | None) -> pd.DataFrame:
    refs = ordered(frame["reference"], reference_order)
    table = {}
    for key, rows in frame.groupby(index, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        cells = dict(zip(index, key))
        for ref in refs:
            hit = rows[rows["reference"] == ref]
            cells[ref] = format_ci(hit[value].iloc[0], hit[low].iloc[0], hit[high].iloc[0]) if len(hit) else ""
        table[key] = cells
    return pd.DataFrame(list(table.values()))


def steps_sections(frame: pd.DataFrame, reference_order: list[str] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """FAD and KAD (rows: model x training step; columns: reference sets), each with its CI."""
    if not len(frame):
        return []
    return [("FAD (95% bootstrap CI) by training step", _wide(frame, ["variant", "step"], "fad", "fad_ci_low",
                                                              "fad_ci_high", reference_order)),
            ("KAD x100 (95% jackknife CI) by training step", _wide(frame, ["variant", "step"], "kad", "kad_ci_low",
                                                                   "kad_ci_high", reference_order))]


# -- FAD vs number of samples ----------------------------------------------------------------------

def sample_size_frame(runs: list[dict]) -> pd.DataFrame:
    """Per reference set and number of clips n: FAD and KAD (mean over subsets) with their intervals,
    and the set's FAD-inf fit (intercept, CI, slope, R^2) repeated on each row."""
    rows = []
    for run, ref, n, v in _metric_groups(runs, "sample_size", r"[^/]+/n_\d+/fad"):
        fit = {name: run["metrics"].get(f"{ref}/{name}") for name in
               ("fad_inf", "fad_inf_ci_low", "fad_inf_ci_high", "fad_inf_slope", "fad_inf_r2")}
        rows.append({"evaluation": run["instance"], "reference": ref, "n": int(n[2:]), "subsets": int(v["subsets"]),
                     **{name: v[name] for name in ("fad", "fad_low", "fad_high", "kad", "kad_low", "kad_high")},
                     **fit, "embedding": run["tags"].get("embedding", "")})
    columns = ["evaluation", "reference", "n", "subsets", "fad", "fad_low", "fad_high", "kad", "kad_low", "kad_high",
               "fad_inf", "fad_inf_ci_low", "fad_inf_ci_high", "fad_inf_slope", "fad_inf_r2", "embedding"]
    return pd.DataFrame(rows, columns=columns).sort_values(["reference", "n"], ignore_index=True)


def sample_size_sections(frame: pd.DataFrame,
                         reference_order: list[str] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """FAD and KAD against n (rows) per reference set (columns), then FAD-inf per reference set."""
    if not len(frame):
        return []
    fad = _wide(frame, ["n", "subsets"], "fad", "fad_low", "fad_high", reference_order)
    kad = _wide(frame, ["n", "subsets"], "kad", "kad_low", "kad_high", reference_order)
    first = frame.groupby("reference", sort=False).first()
    inf = pd.DataFrame([{"reference set": ref, "FAD-inf (95% CI)": format_ci(first.loc[ref, "fad_inf"],
                                                                        first.loc[ref, "fad_inf_ci_low"],
                                                                        first.loc[ref, "fad_inf_ci_high"]),
                         "slope b in FAD = FAD-inf + b/n": round(first.loc[ref, "fad_inf_slope"], 1),
                         "R^2": round(first.loc[ref, "fad_inf_r2"], 3)}
                        for ref in ordered(frame["reference"], reference_order)])
    return [("FAD (mean over subsets, 95% interval) against the number of clips n", fad),
            ("KAD x100 (mean over subsets, 95% interval) against the number of clips n", kad),
            ("FAD-inf: FAD extrapolated to infinitely many clips", inf)]


# -- per-clip outliers -----------------------------------------------------------------------------

def outliers_frames(runs: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(summary, top)``: per embedding and set the clips, outliers (z above the threshold), median and
    max z; and the top clips of each set with rank, audio path, z-score and per-clip FAD."""
    summary, top = [], []
    for run in runs:
        if run["stage"] != "outliers" or run["tags"].get("skipped"):
            continue
        m, embedding = run["metrics"], run["tags"]["embedding"]
        anchors = set(_param(run, "outliers.anchors", []) or [])
        for name in _param(run, "sets", []):
            summary.append({"embedding": embedding, "set": name, "kind": "real (anchor)" if name in anchors
                            else "generated", "reference": run["tags"]["reference_set"],
                            "clips": int(m[f"{name}/n_clips"]), "outliers": int(m[f"{name}/n_outliers"]),
                            "median z": m[f"{name}/z_median"], "max z": m[f"{name}/z_max"]})
            for rank, clip in enumerate(_param(run, f"top.{name}", []), 1):
                top.append({"embedding": embedding, "set": name, "rank": rank, "path": clip["path"],
                            "z": clip["z"], "per-clip FAD": clip["score"]})
    return pd.DataFrame(summary), pd.DataFrame(top)


def outlier_threshold(runs: list[dict]) -> float | None:
    return next((_number(r["params"].get("outliers.z_threshold")) for r in runs if r["stage"] == "outliers"
                 and not r["tags"].get("skipped")), None)
