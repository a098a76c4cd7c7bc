"""``metric_sensitivity.md`` and ``metric_sensitivity.png``: held-out real music under graded
degradations, scored by every embedding with FAD and KAD, and the rank correlation of each score with
the degradation's strength (``musicdiff.evaluation.degradations``), from the ``sensitivity`` run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from musicdiff.report.tables import format_ci, ordered

UNITS = {"white_noise": "SNR (dB)", "lowpass": "cut-off (Hz)", "griffin_lim": "mel bands of the Griffin-Lim round trip"}


def sensitivity_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per embedding, reference set, degradation kind and level (``clean`` for the undegraded clips):
    FAD and KAD with their CIs, clips and adequacy."""
    rows = []
    for run in runs:
        if run["stage"] != "sensitivity":
            continue
        m = run["metrics"]
        for key in sorted(k for k in m if k.endswith("/fad") and k.count("/") in (3, 4)):
            parts = key.split("/")
            embedding, ref, kind = parts[:3]
            level = parts[3] if len(parts) == 5 else ""
            prefix = key[: -len("fad")]
            rows.append({"embedding": embedding, "reference": ref, "kind": kind,
                         "level": float(level) if level else float("nan"),
                         **{f: m.get(prefix + f) for f in ("fad", "fad_ci_low", "fad_ci_high", "kad", "kad_ci_low",
                                                          "kad_ci_high", "n_clips", "adequate")}})
    return pd.DataFrame(rows, columns=["embedding", "reference", "kind", "level", "fad", "fad_ci_low", "fad_ci_high",
                                       "kad", "kad_ci_low", "kad_ci_high", "n_clips", "adequate"])


def rho_frame(runs: list[dict]) -> pd.DataFrame:
    """Spearman's rank correlation of FAD and KAD with degradation strength, per embedding, reference and kind."""
    rows = []
    for run in runs:
        if run["stage"] != "sensitivity":
            continue
        for key, value in sorted(run["metrics"].items()):
            if key.endswith("/fad_rho"):
                embedding, ref, kind, _ = key.split("/")
                rows.append({"embedding": embedding, "reference": ref, "degradation": kind, "FAD rho": value,
                             "KAD rho": run["metrics"].get(key.replace("/fad_rho", "/kad_rho"))})
    return pd.DataFrame(rows, columns=["embedding", "reference", "degradation", "FAD rho", "KAD rho"])


def sensitivity_sections(frame: pd.DataFrame, rho: pd.DataFrame,
                         embedding_order: list[str] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """The rank correlations, then per embedding and reference set the scores at each level (mildest first)."""
    sections = [("Rank correlation of score with degradation strength (Spearman; 1: the score grows with every "
                 "step, clean audio included)", rho)]
    clean = frame[frame["kind"] == "clean"]
    for embedding in ordered(frame["embedding"], embedding_order):
        for ref in ordered(frame[frame["embedding"] == embedding]["reference"], None):
            rows = []
            base = clean[(clean["embedding"] == embedding) & (clean["reference"] == ref)]
            block = frame[(frame["embedding"] == embedding) & (frame["reference"] == ref) & (frame["kind"] != "clean")]
            for kind in ordered(block["kind"], list(UNITS)):
                levels = block[block["kind"] == kind].sort_values("level", ascending=False)
                for _, r in pd.concat([base.assign(kind=kind), levels]).iterrows():
                    rows.append({"degradation": kind, "level": "clean" if pd.isna(r["level"]) else f"{r['level']:g}",
                                 "unit": UNITS.get(kind, ""), "clips": int(r["n_clips"]),
                                 "FAD": format_ci(r["fad"], r["fad_ci_low"], r["fad_ci_high"]) +
                                 ("" if r["adequate"] else "†"),
                                 "KAD": format_ci(r["kad"], r["kad_ci_low"], r["kad_ci_high"])})
            sections.append((f"{embedding}: {ref}", pd.DataFrame(rows)))
    return sections


def sensitivity_figure(frame: pd.DataFrame, path: Path, embedding_order: list[str] | None = None) -> Path:
    """One row of panels per embedding, one column per degradation kind: FAD (left axis) and KAD (right
    axis) against the level, the clean clips as the first point, against the first reference set."""
    from musicdiff.report.plotting import pyplot, save

    plt = pyplot()
    embeddings = ordered(frame["embedding"], embedding_order)
    kinds = ordered(frame[frame["kind"] != "clean"]["kind"], list(UNITS))
    ref = frame["reference"].iloc[0]
    fig, axes = plt.subplots(len(embeddings), len(kinds), figsize=(4.2 * len(kinds), 3.2 * len(embeddings)),
                             squeeze=False)
    for i, embedding in enumerate(embeddings):
        block = frame[(frame["embedding"] == embedding) & (frame["reference"] == ref)]
        clean = block[block["kind"] == "clean"]
        for j, kind in enumerate(kinds):
            ax = axes[i][j]
            rows = pd.concat([clean, block[block["kind"] == kind].sort_values("level", ascending=False)])
            x = range(len(rows))
            ax.errorbar(x, rows["fad"], yerr=[rows["fad"] - rows["fad_ci_low"], rows["fad_ci_high"] - rows["fad"]],
                        marker="o", color="C0", label="FAD")
            twin = ax.twinx()
            twin.errorbar(x, rows["kad"], yerr=[rows["kad"] - rows["kad_ci_low"], rows["kad_ci_high"] - rows["kad"]],
                          marker="s", color="C1", label="KAD x100")
            ax.set_xticks(list(x), ["clean"] + [f"{v:g}" for v in rows["level"].iloc[1:]])
            ax.set_xlabel(UNITS.get(kind, kind) + " (stronger to the right)")
            ax.set_ylabel(f"FAD ({embedding})", color="C0")
            twin.set_ylabel("KAD x100", color="C1")
            ax.set_title(f"{embedding}: {kind}")
    fig.suptitle(f"Metric sensitivity: held-out real clips degraded, against reference set {ref}")
    fig.tight_layout()
    return save(fig, path)
