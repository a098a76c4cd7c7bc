"""Figures under ``reports/figures/`` (matplotlib, Agg backend), drawn from the report frames of
``musicdiff.report.analyses``. PNGs are written without a software/date stamp, so the same
numbers give the same bytes with the same matplotlib."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from musicdiff.report.plotting import pyplot, save
from musicdiff.report.tables import ordered


def grid(count: int, plt, width: float = 4.6, height: float = 3.4):
    cols = min(count, 2)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def clip_levels_figure(levels: pd.DataFrame, settings: dict, path: Path,
                       sampler_order: list[str] | None = None) -> Path:
    """Histogram of the clips' level (``settings["level"]``: rms_dbfs or lufs) per sampler, one panel
    per model, with the noisy-sample filter's bounds as dashed lines. ``levels``: one row per clip, its
    level in column ``level``."""
    plt = pyplot()
    column = "level"
    unit = "LUFS" if settings["level"] == "lufs" else "dBFS"
    variants = sorted(levels["variant"].unique())
    fig, axes = grid(len(variants), plt)
    low, high = np.floor(levels[column].min() / 2) * 2, np.ceil(levels[column].max() / 2) * 2
    bins = np.arange(low, high + 2, 2.0)
    for ax, variant in zip(axes, variants):
        block = levels[levels["variant"] == variant]
        for sampler in ordered(block["sampler"], sampler_order):
            ax.hist(block[block["sampler"] == sampler][column], bins=bins, histtype="step", linewidth=1.5,
                    label=sampler)
        for bound in (settings.get("max_db"), settings.get("min_db")):
            if bound is not None:
                ax.axvline(bound, color="black", linestyle="--", linewidth=1)
        ax.set_title(variant)
        ax.set_xlabel(f"{'integrated loudness' if settings['level'] == 'lufs' else 'RMS level'} ({unit})")
        ax.set_ylabel("clips")
        ax.legend(fontsize=8)
    fig.suptitle("Level of generated clips (dashed: noisy-sample filter bound)")
    fig.tight_layout()
    return save(fig, path)


def fad_vs_steps_figure(frame: pd.DataFrame, path: Path, reference_order: list[str] | None = None) -> Path:
    """FAD (95% bootstrap CI as a band) against training step, one panel per reference set and one
    line per model."""
    plt = pyplot()
    refs = ordered(frame["reference"], reference_order)
    fig, axes = grid(len(refs), plt)
    for ax, ref in zip(axes, refs):
        block = frame[frame["reference"] == ref]
        for variant, rows in block.groupby("variant", sort=True):
            rows = rows.sort_values("step")
            ax.plot(rows["step"], rows["fad"], marker="o", label=variant)
            ax.fill_between(rows["step"], rows["fad_ci_low"], rows["fad_ci_high"], alpha=0.2)
        ax.set_title(f"reference set: {ref}")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"FAD ({block['embedding'].iloc[0]})")
        ax.legend(fontsize=8)
    fig.suptitle(f"FAD vs training steps ({frame['sampler'].iloc[0]}, {int(frame['n_eval_clips'].iloc[0])} clips "
                 "per checkpoint)")
    fig.tight_layout()
    return save(fig, path)


def fad_vs_n_samples_figure(frame: pd.DataFrame, path: Path, reference_order: list[str] | None = None) -> Path:
    """Left: FAD against the number of clips n (log scale) with its 95% interval, the FAD-inf fit
    ``FAD-inf + b / n`` (dotted) and FAD-inf (dashed); right: KAD with its interval."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, ref in zip(colours * 4, ordered(frame["reference"], reference_order)):
        rows = frame[frame["reference"] == ref].sort_values("n")
        left.plot(rows["n"], rows["fad"], marker="o", color=colour, label=ref)
        left.fill_between(rows["n"], rows["fad_low"], rows["fad_high"], color=colour, alpha=0.2)
        inf, slope = rows["fad_inf"].iloc[0], rows["fad_inf_slope"].iloc[0]
        if inf is not None and not pd.isna(inf):  # no FAD-inf when the pool is too small
            n = np.geomspace(rows["n"].min(), rows["n"].max(), 100)
            left.plot(n, inf + slope / n, color=colour, linestyle=":", linewidth=1)
            left.axhline(inf, color=colour, linestyle="--", linewidth=1)
        right.plot(rows["n"], rows["kad"], marker="o", color=colour, label=ref)
        right.fill_between(rows["n"], rows["kad_low"], rows["kad_high"], color=colour, alpha=0.2)
    for ax, name in ((left, "FAD"), (right, "KAD x100")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("number of evaluation clips n")
        ax.set_ylabel(f"{name} ({frame['embedding'].iloc[0]})")
        ax.legend(fontsize=8, title="reference set")
    right.axhline(0.0, color="grey", linewidth=0.8)
    left.set_title("FAD (dotted: FAD-inf + b/n fit; dashed: FAD-inf)")
    right.set_title("KAD (unbiased)")
    fig.suptitle(f"FAD and KAD vs number of samples: {frame['evaluation'].iloc[0]}")
    fig.tight_layout()
    return save(fig, path)
