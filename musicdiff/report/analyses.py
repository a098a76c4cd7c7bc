"""Tables of the study's analyses, built from MLflow runs: clip levels and the noisy-sample filter
(Table 5.2), FAD vs training steps, FAD vs number of samples, per-clip outliers. Under-sampled FAD
cells are marked ``†`` and unreliable FAD-inf fits ``‡``, as in ``fad.md``.

Input rows are what ``musicdiff.tracking.load_runs`` returns (``stage``, ``instance``, ``run_id``,
``params`` as MLflow strings, ``metrics``, ``tags``). Each ``*_frame`` returns a long table (the CSV);
each ``*_sections`` returns ``[(heading, DataFrame)]`` in the study's layout, rendered to Markdown
and LaTeX by ``musicdiff.report.render``.
"""

from __future__ import annotations

import json
import re

import pandas as pd

from musicdiff.report.scores import EXTERNAL, system_name
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
    """``{evaluation set: (variant, sampler)}`` from the sample runs' tags; an external system (a run of
    stage ``system``) is ``("<label> (external)", "-")``: it has no sampler of the suite (both named by
    :func:`musicdiff.report.scores.system_name`, the naming of the score tables)."""
    names = {r["instance"]: system_name({**r["tags"], "kind": "external"}, r["instance"]) for r in runs
             if r["stage"] == "system"}
    names.update({r["instance"]: system_name(r["tags"]) for r in runs
                  if r["stage"] == "sample" and "variant" in r["tags"] and "sampler" in r["tags"]})
    return names


def _split(name: str, names: dict) -> tuple[str, str]:
    """``(variant, sampler)`` of an evaluation set: from ``names`` (:func:`set_names`), else the set's name
    ``<variant>-<sampler>`` split at its last dash, else ``(name, "")``."""
    if name in names:
        return names[name]
    variant, _, sampler = name.rpartition("-")
    return (variant, sampler) if variant else (name, "")


# -- clip levels and the noisy-sample filter -------------------------------------------------------

def levels_frame(runs: list[dict]) -> pd.DataFrame:
    """Per generated clip: variant, sampler, clip index and its level in the filter's unit (the filter
    run's params ``levels.<set>``, column ``level``)."""
    names = set_names(runs)
    rows = []
    for run in runs:
        if run["stage"] != "filter":
            continue
        for key in sorted(k for k in run["params"] if k.startswith("levels.")):
            variant, sampler = _split(key[len("levels."):], names)
            rows += [{"variant": variant, "sampler": sampler, "clip": i, "level": v}
                     for i, v in enumerate(_param(run, key, []))]
    return pd.DataFrame(rows, columns=["variant", "sampler", "clip", "level"])


def level_summary(runs: list[dict], sampler_order: list[str] | None = None) -> pd.DataFrame:
    """Per generated set (its sample run): clips and the mean and max RMS level (dBFS), mean loudness
    (LUFS) and max peak (dBFS), with the clips the filter removed."""
    removed = {}
    for run in runs:
        if run["stage"] == "filter":
            removed = {k.split("/")[0]: int(v) for k, v in run["metrics"].items() if k.endswith("/n_removed")}
    rows = []
    for run in runs:
        if run["stage"] != "sample":
            continue
        m, t = run["metrics"], run["tags"]
        rows.append({"model": t.get("variant", ""), "sampler": t.get("sampler", ""), "clips": int(m["clips"]),
                     "mean RMS (dBFS)": round(m.get("mean_rms_dbfs", float("nan")), 2),
                     "max RMS (dBFS)": round(m.get("max_rms_dbfs", float("nan")), 2),
                     "mean loudness (LUFS)": round(m.get("mean_lufs", float("nan")), 2),
                     "max peak (dBFS)": round(m.get("max_peak_dbfs", float("nan")), 2),
                     "removed by the filter": removed.get(run["instance"], 0)})
    table = pd.DataFrame(rows)
    if not len(table):
        return table
    samplers = ordered(table["sampler"], sampler_order)
    return table.iloc[sorted(range(len(table)), key=lambda i: (table["model"][i], samplers.index(table["sampler"][i])))
                      ].reset_index(drop=True)


def filter_settings(runs: list[dict]) -> dict:
    """``{"level", "max_db", "min_db"}`` of the noisy-sample filter (from the filter run; defaults if none)."""
    for run in runs:
        if run["stage"] == "filter":
            return {"level": run["params"].get("noisy_filter.level", "rms_dbfs"),
                    "max_db": _number(run["params"].get("noisy_filter.max_db")),
                    "min_db": _number(run["params"].get("noisy_filter.min_db"))}
    return {"level": "rms_dbfs", "max_db": None, "min_db": None}


def filter_frame(runs: list[dict]) -> pd.DataFrame:
    """Long table of the filter run: embedding, variant, sampler, reference, FAD and KAD of all clips and of
    the kept clips with their CIs and adequacy, clips, removed."""
    names = set_names(runs)
    rows = []
    for run, (embedding, name, ref), v in metric_groups(runs, "filter", r"[^/]+/[^/]+/[^/]+/fad"):
        m = run["metrics"]
        variant, sampler = _split(name, names)
        rows.append({"embedding": embedding, "variant": variant, "sampler": sampler, "reference": ref,
                     **{k: v.get(k) for k in FILTER_FIELDS},
                     "n_clips": int(m[f"{name}/n_clips"]), "n_removed": int(m[f"{name}/n_removed"])})
    columns = ["embedding", "variant", "sampler", "reference", *FILTER_FIELDS, "n_clips", "n_removed"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("n_clips", "n_removed"):
        frame[column] = frame[column].astype("Int64")
    return frame


FILTER_FIELDS = ("fad", "fad_ci_low", "fad_ci_high", "adequate", "kad", "filtered_fad", "filtered_fad_ci_low",
                 "filtered_fad_ci_high", "filtered_adequate", "filtered_kad")


def filter_sections(frame: pd.DataFrame, levels: pd.DataFrame, settings: dict,
                    reference_order: list[str] | None = None, sampler_order: list[str] | None = None,
                    embedding_order: list[str] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """Table 5.2's layout per model: reference set x sampler rows, per embedding ``original / filtered``
    FAD (``†``: under-sampled) and the clips removed; then each set's level (``levels``: level_summary)."""
    sections = []
    embeddings = ordered(frame["embedding"], embedding_order)

    def cell(value, adequate):
        if value is None or pd.isna(value):
            return "n/a"
        return f"{value:.2f}" + ("" if adequate else "†")

    variants = sorted(frame["variant"].unique(), key=lambda v: (v.endswith(EXTERNAL), v))  # systems last
    for variant in variants:
        block = frame[frame["variant"] == variant]
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
                        f"{cell(e['fad'].iloc[0], e['adequate'].iloc[0])} / "
                        f"{cell(e['filtered_fad'].iloc[0], e['filtered_adequate'].iloc[0])}") if len(e) else ""
                row["clips removed"] = f"{hit['n_removed'].iloc[0]} of {hit['n_clips'].iloc[0]}"
                rows.append(row)
        kind = f"System {variant[:-len(EXTERNAL)]}" if variant.endswith(EXTERNAL) else f"Model {variant}"
        sections.append((f"{kind}: FAD original / filtered", pd.DataFrame(rows)))
    if len(levels):
        sections.append(("Level of the generated clips", levels))
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


def metric_groups(runs: list[dict], stage: str, pattern: str):
    """For each run of ``stage`` and each metric key ``<a>/<b>/.../fad`` matching ``pattern``:
    ``(run, (a, b, ...), {field: value})`` with every metric under ``<a>/<b>/.../``."""
    for run in runs:
        if run["stage"] != stage:
            continue
        m = run["metrics"]
        for key in sorted(k for k in m if re.fullmatch(pattern, k)):
            prefix = key[: -len("fad")]
            yield run, tuple(prefix.strip("/").split("/")), {k[len(prefix):]: v for k, v in m.items()
                                                             if k.startswith(prefix)}


# -- FAD vs training steps -------------------------------------------------------------------------

def steps_frame(runs: list[dict]) -> pd.DataFrame:
    """Per variant, checkpoint step and reference set: FAD and KAD with their CIs and the clip count."""
    rows = []
    for run, (step, embedding, ref), v in metric_groups(runs, "steps", r"step_\d+/[^/]+/[^/]+/fad"):
        rows.append({"variant": run["instance"], "step": int(step[5:]), "reference": ref, "fad": v["fad"],
                     "fad_ci_low": v["fad_ci_low"], "fad_ci_high": v["fad_ci_high"], "adequate": v.get("adequate"),
                     "kad": v["kad"], "kad_ci_low": v["kad_ci_low"], "kad_ci_high": v["kad_ci_high"],
                     "n_eval_clips": int(v["n_clips"]), "sampler": run["tags"].get("sampler", ""),
                     "embedding": embedding})
    columns = ["variant", "step", "reference", "fad", "fad_ci_low", "fad_ci_high", "adequate", "kad", "kad_ci_low",
               "kad_ci_high", "n_eval_clips", "sampler", "embedding"]
    return pd.DataFrame(rows, columns=columns).sort_values(["variant", "step", "reference"], ignore_index=True)


def _wide(frame: pd.DataFrame, index: list[str], value: str, low: str, high: str,
          reference_order: list[str] | None, adequate: str | None = None) -> pd.DataFrame:
    """Rows ``index``, one column per reference set, cells ``value (low to high)``; ``†`` where the
    ``adequate`` column is false."""
    refs = ordered(frame["reference"], reference_order)
    table = {}
    for key, rows in frame.groupby(index, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        cells = dict(zip(index, key))
        for ref in refs:
            hit = rows[rows["reference"] == ref]
            mark = "†" if adequate and len(hit) and hit[adequate].iloc[0] is not None and \
                not pd.isna(hit[adequate].iloc[0]) and not hit[adequate].iloc[0] else ""
            cells[ref] = format_ci(hit[value].iloc[0], hit[low].iloc[0], hit[high].iloc[0]) + mark if len(hit) else ""
        table[key] = cells
    return pd.DataFrame(list(table.values()))


def steps_sections(frame: pd.DataFrame, reference_order: list[str] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """FAD and KAD (rows: model x training step; columns: reference sets), each with its CI."""
    if not len(frame):
        return []
    return [("FAD (95% bootstrap CI; † under-sampled: read KAD) by training step",
             _wide(frame, ["variant", "step"], "fad", "fad_ci_low", "fad_ci_high", reference_order, "adequate")),
            ("KAD x100 (95% jackknife CI) by training step", _wide(frame, ["variant", "step"], "kad", "kad_ci_low",
                                                                   "kad_ci_high", reference_order))]


# -- FAD vs number of samples ----------------------------------------------------------------------

def sample_size_frame(runs: list[dict]) -> pd.DataFrame:
    """Per reference set and number of clips n: FAD and KAD (mean over subsets) with their intervals,
    and the set's FAD-inf fit (intercept, CI, slope, R^2) repeated on each row."""
    rows = []
    for run, (ref, n), v in metric_groups(runs, "sample_size", r"[^/]+/n_\d+/fad"):
        fit = {name: run["metrics"].get(f"{ref}/{name}") for name in
               ("fad_inf", "fad_inf_ci_low", "fad_inf_ci_high", "fad_inf_slope", "fad_inf_r2", "fad_inf_reliable",
                "fad_inf_min_subset", "fad_inf_max_subset")}
        rows.append({"evaluation": run["instance"], "reference": ref, "n": int(n[2:]), "subsets": int(v["subsets"]),
                     **{name: v[name] for name in ("fad", "fad_low", "fad_high", "kad", "kad_low", "kad_high")},
                     **fit, "embedding": run["tags"].get("embedding", "")})
    columns = ["evaluation", "reference", "n", "subsets", "fad", "fad_low", "fad_high", "kad", "kad_low", "kad_high",
               "fad_inf", "fad_inf_ci_low", "fad_inf_ci_high", "fad_inf_slope", "fad_inf_r2", "fad_inf_reliable",
               "fad_inf_min_subset", "fad_inf_max_subset", "embedding"]
    return pd.DataFrame(rows, columns=columns).sort_values(["reference", "n"], ignore_index=True)


def sample_size_sections(frame: pd.DataFrame,
                         reference_order: list[str] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """FAD and KAD against n (rows) per reference set (columns), then FAD-inf per reference set."""
    if not len(frame):
        return []
    fad = _wide(frame, ["n", "subsets"], "fad", "fad_low", "fad_high", reference_order)
    kad = _wide(frame, ["n", "subsets"], "kad", "kad_low", "kad_high", reference_order)
    first = frame.groupby("reference", sort=False).first()
    rows = []
    for ref in ordered(frame["reference"], reference_order):
        f = first.loc[ref]
        if f["fad_inf"] is None or pd.isna(f["fad_inf"]):
            rows.append({"reference set": ref, "FAD-inf (95% CI)": "not estimable: the pool is too small for subsets "
                         "spanning a factor of 8 below half of it"})
            continue
        rows.append({"reference set": ref, "FAD-inf (95% CI)": format_ci(f["fad_inf"], f["fad_inf_ci_low"],
                                                                        f["fad_inf_ci_high"])
                     + ("" if f["fad_inf_reliable"] else "‡"),
                     "subsets (clips)": f"{int(f['fad_inf_min_subset'])} to {int(f['fad_inf_max_subset'])}",
                     "slope b in FAD = FAD-inf + b/n": round(f["fad_inf_slope"], 1), "R^2": round(f["fad_inf_r2"], 3)})
    inf = pd.DataFrame(rows)
    return [("FAD (mean over subsets, 95% interval) against the number of clips n", fad),
            ("KAD x100 (mean over subsets, 95% interval) against the number of clips n", kad),
            ("FAD-inf: FAD extrapolated to infinitely many clips", inf)]


# -- per-clip outliers -----------------------------------------------------------------------------

def outliers_frames(runs: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(summary, top)``: per embedding and set the clips, outliers (z above the threshold), median and
    max z; and the top clips of each set with rank, clip, z-score and per-clip score."""
    summary, top = [], []
    for run in runs:
        if run["stage"] != "outliers":
            continue
        m = run["metrics"]
        anchors = set(_param(run, "outliers.anchors", []) or [])
        embeddings = sorted({k.split("/")[0] for k in m if k.endswith("/loo_mean")})
        for embedding in embeddings:
            for name in _param(run, "sets", []):
                if f"{embedding}/{name}/n_clips" not in m:
                    continue
                summary.append({"embedding": embedding, "set": name,
                                "kind": "real (anchor)" if name in anchors else "evaluation set",
                                "reference": run["tags"]["reference_set"], "clips": int(m[f"{embedding}/{name}/n_clips"]),
                                "outliers": int(m[f"{embedding}/{name}/n_outliers"]),
                                "median z": m[f"{embedding}/{name}/z_median"], "max z": m[f"{embedding}/{name}/z_max"]})
                for rank, clip in enumerate(_param(run, f"top.{embedding}.{name}", []), 1):
                    top.append({"embedding": embedding, "set": name, "rank": rank, "clip": clip["path"],
                                "z": clip["z"], "per-clip score": clip["score"]})
    return pd.DataFrame(summary), pd.DataFrame(top)


def outlier_threshold(runs: list[dict]) -> float | None:
    return next((_number(r["params"].get("outliers.z_threshold")) for r in runs if r["stage"] == "outliers"), None)
