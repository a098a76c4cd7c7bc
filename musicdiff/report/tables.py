"""Report tables built from MLflow runs (never typed): FAD per evaluation set x reference set, speed.

Input rows are what ``musicdiff.tracking.load_runs`` returns: dicts with ``stage``, ``instance``,
``run_id`` and the run's ``params``, ``metrics`` and ``tags``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

VARIANT_NAMES = {"mel": "Mel-Spec", "waveform": "Waveform", "latent": "VAE Latent Space", "dit": "DiT",
                 "mel-text": "Mel-Spec + text"}  # the study's names (its conditional model is a mel UNet on T5 text)


def fad_frame(runs: list[dict]) -> pd.DataFrame:
    """Long table: one row per FAD run and reference set (embedding, evaluation, reference, FAD, its
    parts, CI, n). A fad run holds metrics ``<reference>/<name>`` for each reference set; a run of
    a skipped embedding (tag ``skipped``) gives one row with an empty reference and the reason."""
    rows = []
    for run in runs:
        if run["stage"] != "fad":
            continue
        m, t = run["metrics"], run["tags"]
        base = {"embedding": t["embedding"], "evaluation": t["evaluation_set"], "variant": t.get("variant", ""),
                "sampler": t.get("sampler", "")}
        if t.get("skipped"):
            rows.append({**base, "reference": "", "skipped": t["skipped"].splitlines()[0]})  # full text: the run's tag
            continue
        for ref in sorted({k.split("/")[0] for k in m if k.endswith("/fad")}):
            r = {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith(f"{ref}/")}
            rows.append({
                **base, "reference": ref, "fad": r["fad"],
                "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"), "bootstrap_bias": r.get("bootstrap_bias"),
                "mean_term": r["mean_term"],
                "trace_term": r["trace_term"], "n_eval_clips": int(r["n_eval_clips"]), "n_eval": int(r["n_eval"]),
                "n_ref_clips": int(r.get("n_ref_clips", 0)), "n_ref": int(r["n_ref"]),
                "kad": r.get("kad"), "kad_ci_low": r.get("kad_ci_low"), "kad_ci_high": r.get("kad_ci_high"),
                "kad_bandwidth": r.get("kad_bandwidth"),
                "fad_inf": r.get("fad_inf"), "fad_inf_ci_low": r.get("fad_inf_ci_low"),
                "fad_inf_ci_high": r.get("fad_inf_ci_high"), "skipped": "",
            })
    columns = ["embedding", "evaluation", "variant", "sampler", "reference", "fad", "ci_low", "ci_high",
               "bootstrap_bias", "mean_term", "trace_term", "n_eval_clips", "n_eval", "n_ref_clips", "n_ref",
               "kad", "kad_ci_low", "kad_ci_high", "kad_bandwidth", "fad_inf", "fad_inf_ci_low", "fad_inf_ci_high",
               "skipped"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("n_eval_clips", "n_eval", "n_ref_clips", "n_ref"):
        frame[column] = frame[column].astype("Int64")
    return frame.sort_values(["embedding", "evaluation", "reference"], ignore_index=True)


# metric -> (column of the value, columns of its CI, heading sentence)
METRICS = {
    "fad": ("fad", ("ci_low", "ci_high"), "FAD (lower is better) with the 95% bootstrap CI over evaluation clips "
                                         "(percentile interval re-centred on the estimate)"),
    "fad_inf": ("fad_inf", ("fad_inf_ci_low", "fad_inf_ci_high"),
                "FAD-inf: intercept of FAD against 1/n over clip subsets drawn without replacement, with the 95% "
                "t interval of the fit"),
    "kad": ("kad", ("kad_ci_low", "kad_ci_high"),
            "KAD (x100, Gaussian kernel, bandwidth frozen from each reference set) with the 95% jackknife CI "
            "over evaluation clips. Each reference set has its own bandwidth, so compare KAD down a column "
            "(between models), not across columns"),
}


def ordered(values, order: list[str] | None) -> list[str]:
    values = list(dict.fromkeys(values))
    order = [v for v in (order or []) if v in values]
    return order + sorted(v for v in values if v not in order)


def fad_sections(frame: pd.DataFrame, reference_order: list[str] | None = None,
                 embedding_order: list[str] | None = None,
                 sampler_order: list[str] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """Per metric (FAD, FAD-inf, KAD) one ``(heading, table)``: model x sampler rows, embedding x
    reference-set columns (``<embedding>: <reference>``), each cell ``value (95% CI low to high)``,
    plus the evaluation set's clip count."""
    scored = frame[frame["skipped"].fillna("") == ""]
    columns = []  # (embedding, reference)
    for embedding in ordered(scored["embedding"], embedding_order):
        block = scored[scored["embedding"] == embedding]
        columns += [(embedding, r) for r in ordered(block["reference"], reference_order)]
    sections = []
    for value, (low, high), heading in METRICS.values():
        if value not in scored or scored[value].isna().all():
            continue
        present = [c for c in columns if scored[(scored["embedding"] == c[0]) & (scored["reference"] == c[1])][value]
                   .notna().any()]
        table = {}
        samplers = ordered(scored["sampler"], sampler_order)
        groups = sorted(scored.groupby(["variant", "sampler"], sort=False),
                        key=lambda item: (item[0][0], samplers.index(item[0][1])))
        for (variant, sampler), rows in groups:
            cells = {}
            for embedding, ref in present:
                hit = rows[(rows["embedding"] == embedding) & (rows["reference"] == ref)]
                cells[f"{embedding}: {ref}"] = format_ci(*hit.iloc[0][[value, low, high]]) if len(hit) else ""
            cells["n clips"] = int(rows["n_eval_clips"].iloc[0])
            table[(variant, sampler)] = cells
        out = pd.DataFrame.from_dict(table, orient="index")
        out.index = pd.MultiIndex.from_tuples(out.index, names=["model", "sampler"])
        sections.append((heading, out.reset_index()))
    return sections


def fad_markdown(frame: pd.DataFrame, reference_order: list[str] | None = None,
                 embedding_order: list[str] | None = None, sampler_order: list[str] | None = None) -> str:
    """The tables of :func:`fad_sections`, then the reference sets' sizes per embedding and the
    embeddings that were skipped, with the reason."""
    scored = frame[frame["skipped"].fillna("") == ""]
    skipped = frame[frame["skipped"].fillna("") != ""]
    embeddings = ordered(scored["embedding"], embedding_order)
    parts = [f"## {heading}\n\n{table.to_markdown(index=False)}\n"
             for heading, table in fad_sections(frame, reference_order, embedding_order, sampler_order)]
    sizes = []
    for embedding in embeddings:
        block = scored[scored["embedding"] == embedding]
        first = block.groupby("reference", sort=False).first()
        described = []
        for ref in ordered(block["reference"], reference_order):
            row = first.loc[ref]
            described.append(f"{ref} {row['n_ref_clips']} clips ({row['n_ref']} frames)" if row["n_ref_clips"]
                             else f"{ref} shipped statistics (no clips)")
        sizes.append(f"- {embedding}: " + ", ".join(described))
    parts.append("## Reference sets per embedding\n\n" + "\n".join(sizes) + "\n")
    if len(skipped):
        reasons = skipped.groupby("embedding", sort=True)["skipped"].first()
        lines = [f"- {embedding}: {reason.splitlines()[0]}" for embedding, reason in reasons.items()]
        parts.append("## Skipped embeddings\n\n" + "\n".join(lines) + "\n")
    return "# FAD\n\nGenerated by `musicdiff report` from MLflow runs; do not edit.\n\n" + "\n".join(parts)


def format_ci(value, low, high, digits: int = 2) -> str:
    """``value (low to high)``, or ``value`` without an interval, or ``""`` for a missing value."""
    if value is None or pd.isna(value):
        return ""
    if low is None or pd.isna(low):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({low:.{digits}f} to {high:.{digits}f})"


def plain(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with missing values as None (empty Markdown cells) and numbers kept."""
    return frame.astype(object).where(frame.notna(), None)


def _family(tags: dict) -> str:
    return VARIANT_NAMES.get(tags.get("family", ""), tags.get("family", ""))


def speed_frame(runs: list[dict], sampler_order: list[str] | None = None) -> pd.DataFrame:
    """The study's speed table: one row per variant (training from its ``train`` run, inference from
    its ``speed`` run: median of the timed runs, seconds per second of audio), plus the VAE of each
    latent variant as its own row, as in the study."""
    train = {r["instance"]: r for r in runs if r["stage"] == "train"}
    speed = {r["instance"]: r for r in runs if r["stage"] == "speed"}
    rows = []
    for variant in sorted(train):
        run = train[variant]
        m, t = run["metrics"], run["tags"]
        row = {
            "Variant": variant, "Data Type": _family(t), "Resolution": t.get("resolution", ""),
            "Params (M)": round(m["params_millions"], 3), "Size (MB)": round(m["size_mb"], 2),
            "Sample Length (s)": round(m.get("clip_seconds", float("nan")), 2),
            "Training time per step (s)": round(m["train_s_per_step"], 4),
            "Batch size": int(float(run["params"].get("train.batch_size", "nan"))),
        }
        if variant in speed:
            sm = speed[variant]["metrics"]
            names = [k.split("/")[0] for k in sm if k.endswith("/denoise_s_per_audio_s")]
            order = [s for s in (sampler_order or sorted(names)) if s in names]
            for name in order:
                steps = int(sm[f"{name}/num_inference_steps"])
                row[f"{name} ({steps} steps) denoise"] = round(sm[f"{name}/denoise_s_per_audio_s"], 4)
                row[f"{name} decode"] = round(sm[f"{name}/decode_s_per_audio_s"], 4)
            row["Timed runs (median of)"] = int(sm["repeats"])
            row["Inference batch"] = int(sm["batch_size"])
            row["Device"] = speed[variant]["tags"].get("device_name", speed[variant]["tags"].get("device", ""))
            row["Threads"] = int(sm.get("threads", 0))
        rows.append(row)
    for name, run in sorted((r["instance"], r) for r in runs if r["stage"] == "vae"):
        m = run["metrics"]
        rows.append({"Variant": name, "Data Type": "VAE", "Resolution": run["tags"].get("resolution", ""),
                     "Params (M)": round(m["params_millions"], 3), "Size (MB)": round(m["size_mb"], 2),
                     "Training time per step (s)": round(m["train_s_per_step"], 4),
                     "Batch size": int(float(run["params"].get("train.batch_size", "nan")))})
    return pd.DataFrame(rows)


def speed_markdown(frame: pd.DataFrame) -> str:
    return ("# Speed\n\nGenerated by `musicdiff report` from MLflow runs; do not edit. Inference columns are "
            "wall seconds per second of generated audio (real-time factor; below 1 is faster than real time) "
            "for each sampler, denoising and decoding (Griffin-Lim, VAE + Griffin-Lim, or none for waveforms) "
            "apart: the median of the timed runs after a warm-up, generating `Inference batch` clips at a "
            "time. Training time per step is the median over the training steps after the first.\n\n"
            f"{plain(frame).to_markdown(index=False, missingval='')}\n")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
