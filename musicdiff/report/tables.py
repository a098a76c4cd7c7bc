"""Shared pieces of the report tables (cell formatting, column order, atomic writes) and the speed
table, built from MLflow runs (never typed); the score tables are in ``musicdiff.report.scores``.

Input rows are what ``musicdiff.tracking.load_runs`` returns: dicts with ``stage``, ``instance``,
``run_id`` and the run's ``params``, ``metrics`` and ``tags``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

VARIANT_NAMES = {"mel": "Mel-Spec", "waveform": "Waveform", "latent": "VAE Latent Space", "dit": "DiT",
                 "mel_text": "Mel-Spec + text"}  # the study's names (its conditional model is a mel UNet on T5 text)


def ordered(values, order: list[str] | None) -> list[str]:
    values = list(dict.fromkeys(values))
    order = [v for v in (order or []) if v in values]
    return order + sorted(v for v in values if v not in order)


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


RATIO_TOLERANCE = 0.15  # a DDIM/DDPM wall ratio this far from the step ratio (relative) is marked
RATIO_MARK = "¶"


def ratio_check(metrics: dict, ddim: str, ddpm: str, tolerance: float = RATIO_TOLERANCE) -> dict:
    """The DDIM/DDPM check of one speed run's ``metrics`` (what the speed stage logs per sampler):
    ``measured`` is ddim's median denoising time over ddpm's (the ratio of their real-time factors),
    ``expected`` the step ratio; ``off`` when ``|measured / expected - 1| > tolerance``. For an off
    pair, ``reasons`` lists what the logged numbers show (each with its numbers): a fixed per-run
    overhead above ``tolerance`` of a run (intercept of denoising time vs steps), per-step costs (its
    slope) that differ by more than ``tolerance``, timed runs spread by more than ``tolerance`` of their median, or
    decoding (which does not depend on the sampler) varying by more than ``tolerance`` across the
    run's samplers; or that none of these was found. A pure function of its inputs."""
    m = metrics
    measured = m[f"{ddim}/denoise_s_per_audio_s"] / m[f"{ddpm}/denoise_s_per_audio_s"]
    expected = m[f"{ddim}/num_inference_steps"] / m[f"{ddpm}/num_inference_steps"]
    deviation = measured / expected - 1
    check = {"pair": f"{ddim}/{ddpm}", "measured": measured, "expected": expected, "deviation": deviation,
             "off": abs(deviation) > tolerance, "reasons": []}
    if not check["off"]:
        return check
    reasons = check["reasons"]
    if all(f"{n}/overhead_s" in m and f"{n}/denoise_s" in m for n in (ddim, ddpm)):
        shares = {n: m[f"{n}/overhead_s"] / m[f"{n}/denoise_s"] for n in (ddim, ddpm)}
        if any(abs(v) > tolerance for v in shares.values()):
            reasons.append("fixed per-run overhead (intercept of denoising time vs steps) " + ", ".join(
                f"{m[f'{n}/overhead_s']:.3f} s for {n} ({shares[n]:.0%} of its run)" for n in (ddim, ddpm)))
    costs = {n: m[f"{n}/step_s"] for n in (ddim, ddpm) if f"{n}/step_s" in m}  # slopes (a run over its
    if len(costs) == 2 and abs(costs[ddim] / costs[ddpm] - 1) > tolerance:  # steps would only restate the ratio)
        reasons.append("per-step cost (slope of denoising time vs steps) differs: "
                       + ", ".join(f"{n} {costs[n] * 1e3:.1f} ms" for n in (ddim, ddpm)))
    spreads = {n: m[f"{n}/denoise_spread"] for n in (ddim, ddpm) if f"{n}/denoise_spread" in m}
    if any(v > tolerance for v in spreads.values()):
        reasons.append("timed runs spread (max - min over median) " + ", ".join(
            f"{v:.0%} for {n}" for n, v in spreads.items()) + ": the machine was not quiet")
    decode = [v for k, v in m.items() if k.endswith("/decode_s_per_audio_s") and "@" not in k]
    if len(decode) > 1 and min(decode) > 0 and max(decode) / min(decode) - 1 > tolerance:
        reasons.append(f"decoding, the same for every sampler, took {min(decode):.3f} to {max(decode):.3f} s per "
                       "audio s across the samplers of this run: the machine was not quiet")
    if not reasons:
        reasons.append("no cause found in the logged numbers")
    return check


def ratio_pairs(metrics: dict, params: dict) -> list[tuple[str, str]]:
    """(ddim sampler, ddpm sampler) pairs of a speed run, from its logged ``samplers.<name>.scheduler``
    params and the samplers it timed."""
    timed = {k.split("/")[0] for k in metrics if k.endswith("/denoise_s_per_audio_s")}
    kind = {name: params.get(f"samplers.{name}.scheduler") for name in timed}
    ddims = sorted(n for n in timed if kind[n] == "ddim")
    ddpms = sorted(n for n in timed if kind[n] == "ddpm")
    return [(a, b) for a in ddims for b in ddpms]


def speed_frame(runs: list[dict], sampler_order: list[str] | None = None) -> pd.DataFrame:
    """The study's speed table: one row per variant (training from its ``train`` run, inference from
    its ``speed`` run: median of the timed runs, seconds per second of audio), plus the VAE of each
    latent variant as its own row, as in the study. A variant timed with a DDIM and a DDPM sampler
    gets their denoising wall ratio and step ratio per pair, and a ``Ratio check`` mark (``¶1``, ...)
    where :func:`ratio_check` finds them apart, with the reasons in ``Ratio check reason``."""
    train = {r["instance"]: r for r in runs if r["stage"] == "train"}
    speed = {r["instance"]: r for r in runs if r["stage"] == "speed"}
    rows, marks = [], 0
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
            names = [k.split("/")[0] for k in sm if k.endswith("/denoise_s_per_audio_s") and "@" not in k]
            order = [s for s in (sampler_order or sorted(names)) if s in names]
            for name in order:
                steps = int(sm[f"{name}/num_inference_steps"])
                row[f"{name} ({steps} steps) denoise"] = round(sm[f"{name}/denoise_s_per_audio_s"], 4)
                row[f"{name} decode"] = round(sm[f"{name}/decode_s_per_audio_s"], 4)
            row["Timed runs (median of)"] = int(sm["repeats"])
            row["Inference batch"] = int(sm["batch_size"])
            row["Device"] = speed[variant]["tags"].get("device_name", speed[variant]["tags"].get("device", ""))
            row["Threads"] = int(sm.get("threads", 0))
            checks = [ratio_check(sm, a, b) for a, b in ratio_pairs(sm, speed[variant]["params"])]
            row_marks, reasons = [], []
            for check in checks:
                row[f"{check['pair']} wall ratio"] = round(check["measured"], 3)
                row[f"{check['pair']} step ratio"] = round(check["expected"], 3)
                if check["off"]:
                    marks += 1
                    row_marks.append(f"{RATIO_MARK}{marks}")
                    reasons.append(f"{RATIO_MARK}{marks} {variant} {check['pair']}: wall ratio {check['measured']:.3f} "
                                   f"vs step ratio {check['expected']:.3f} ({check['deviation']:+.0%}): "
                                   + "; ".join(check["reasons"]))
            if checks:
                row["Ratio check"] = ", ".join(row_marks) or "ok"
                row["Ratio check reason"] = " | ".join(reasons)
        rows.append(row)
    for name, run in sorted((r["instance"], r) for r in runs if r["stage"] == "vae"):
        m = run["metrics"]
        rows.append({"Variant": name, "Data Type": "VAE", "Resolution": run["tags"].get("resolution", ""),
                     "Params (M)": round(m["params_millions"], 3), "Size (MB)": round(m["size_mb"], 2),
                     "Training time per step (s)": round(m["train_s_per_step"], 4),
                     "Batch size": int(float(run["params"].get("train.batch_size", "nan")))})
    return pd.DataFrame(rows)


def gpu_paper_frame(runs: list[dict]) -> tuple[pd.DataFrame, str]:
    """The "GPU, paper size" block: per sampler, the real-time factors measured for the study's
    [256, 256] mel UNet (untrained weights) beside the study's, from the speed stage's run tagged
    ``gpu_paper``; and one line saying what was (or why nothing was) timed."""
    run = next((r for r in runs if r["stage"] == "speed" and "gpu_paper" in r["tags"]), None)
    if run is None:
        return pd.DataFrame(), "Not timed: the speed stage's records hold no GPU run."
    tags, m = run["tags"], run["metrics"]
    if tags.get("gpu_paper") != "timed":
        return pd.DataFrame(), f"Not timed: {tags.get('gpu_paper', 'no reason recorded')}."
    names = sorted(k.split("/")[0] for k in m if k.endswith("/denoise_s_per_audio_s"))
    rows = []
    for name in names:
        study = m.get(f"{name}/study_s_per_audio_s")
        denoise = m[f"{name}/denoise_s_per_audio_s"]
        rows.append({"Sampler": name, "Steps": int(m[f"{name}/num_inference_steps"]),
                     "Denoise (s per audio s)": round(denoise, 4),
                     "Decode (s per audio s)": round(m[f"{name}/decode_s_per_audio_s"], 4),
                     "Study (s per audio s)": study, "Denoise / study": None if study is None else round(denoise / study, 3),
                     "Timed runs (median of)": int(m["repeats"]), "Inference batch": int(m["batch_size"]),
                     "Device": tags.get("device_name", "")})
    line = (f"Timed on {tags.get('device_name', 'a CUDA device')}: the study's mel UNet at [256, 256] "
            f"({m.get('params_millions', float('nan')):.1f} M parameters, untrained weights: speed does not "
            f"depend on them), {m.get('clip_seconds', float('nan')):.2f} s of audio per clip.")
    return pd.DataFrame(rows), line


SPEED_INTRO = ("Generated by `musicdiff report` from MLflow runs; do not edit. Inference columns are "
               "wall seconds per second of generated audio (real-time factor; below 1 is faster than real time) "
               "for each sampler, denoising and decoding (Griffin-Lim, VAE + Griffin-Lim, or none for waveforms) "
               "apart: the median of the timed runs (interleaved across samplers) after a warm-up, generating "
               "`Inference batch` clips at a time with `Threads` torch threads (inter-op threads 1). Training "
               "time per step is the median over the training steps after the first. `<ddim>/<ddpm> wall ratio` "
               "is the DDIM sampler's median denoising time over the DDPM one's and `step ratio` their steps; "
               f"a row whose wall ratio is more than {RATIO_TOLERANCE:.0%} away from the step ratio is marked "
               f"`{RATIO_MARK}n` in `Ratio check`, with the reasons the logged numbers show below the table.")


def speed_notes(frame: pd.DataFrame) -> list[str]:
    """The ratio-check notes of ``frame`` (one per marked pair), in mark order."""
    if "Ratio check reason" not in frame:
        return []
    return [note for cell in frame["Ratio check reason"].dropna() for note in str(cell).split(" | ") if note]


def speed_markdown(frame: pd.DataFrame, gpu: tuple[pd.DataFrame, str] | None = None) -> str:
    """speed.md: the table (without the reason column), the ratio-check notes, and the GPU block."""
    shown = frame.drop(columns=["Ratio check reason"], errors="ignore")
    notes = speed_notes(frame)
    text = f"# Speed\n\n{SPEED_INTRO}\n\n{plain(shown).to_markdown(index=False, missingval='')}\n"
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    if gpu is not None:
        block, line = gpu
        text += f"\n## GPU, paper size\n\n{line}\n"
        if len(block):
            text += f"\n{plain(block).to_markdown(index=False, missingval='')}\n"
    return text


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


# Stages that only compute metrics or tables: their start-up target is 1.5 s (README "Stage start-up").
METRIC_STAGES = ("compare", "filter", "outliers", "sample_size", "report")


def startup_frame(runs: list[dict]) -> pd.DataFrame:
    """Per stage kind: how many runs, the median and max start-up (process start to the stage's run:
    the interpreter and the stage's imports), how many had torch imported before they began, and the
    median time MLflow took to import and open the run; from the runs' ``startup_s`` and
    ``mlflow_setup_s``."""
    rows = {}
    for run in runs:
        m = run["metrics"]
        if "startup_s" not in m:
            continue
        rows.setdefault(run["stage"], []).append((m["startup_s"], m.get("mlflow_setup_s", float("nan")),
                                                  run["tags"].get("torch_loaded_at_start") == "true"))
    table = []
    for stage, values in sorted(rows.items()):
        startup = pd.Series([v[0] for v in values])
        table.append({"stage": stage, "runs": len(values), "median start-up (s)": round(startup.median(), 2),
                      "max start-up (s)": round(startup.max(), 2),
                      "torch imported before the stage began": f"{sum(v[2] for v in values)} of {len(values)}",
                      "median MLflow import + run (s)": round(pd.Series([v[1] for v in values]).median(), 2),
                      "metric stage (target <= 1.5 s)": "yes" if stage in METRIC_STAGES else ""})
    return pd.DataFrame(table)
