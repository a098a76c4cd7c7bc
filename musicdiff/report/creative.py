"""Report pieces of the creative tools: variation strength (table and ``variation_strength.png``) and
text-conditioned FAD per caption label against unconditional FAD, from the ``variation`` and
``text_conditioning`` stage runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from musicdiff.report.analyses import metric_groups
from musicdiff.report.tables import format_ci, ordered


def variation_frame(runs: list[dict]) -> pd.DataFrame:
    """Per variant, start timestep T and reference set: FAD (CI), KAD and the distances to the source."""
    rows = []
    for run, (t, embedding, ref), v in metric_groups(runs, "variation", r"(T_\d+|decoded)/[^/]+/[^/]+/fad"):
        m = run["metrics"]
        rows.append({"variant": run["instance"], "timestep": -1 if t == "decoded" else int(t[2:]),
                     "strength": m[f"{t}/strength"], "reference": ref, "fad": v["fad"], "fad_ci_low": v["fad_ci_low"],
                     "fad_ci_high": v["fad_ci_high"], "adequate": v.get("adequate"), "kad": v["kad"],
                     "kad_ci_low": v.get("kad_ci_low"), "kad_ci_high": v.get("kad_ci_high"),
                     "n_clips": v.get("n_clips"), "embedding_distance": m[f"{t}/embedding_distance"],
                     "mel_distance": m.get(f"{t}/mel_distance", float("nan")),
                     "embedding": embedding, "sampler": run["tags"].get("sampler", ""),
                     "source_set": run["tags"].get("source", "")})
    columns = ["variant", "timestep", "strength", "reference", "fad", "fad_ci_low", "fad_ci_high", "adequate", "kad",
               "kad_ci_low", "kad_ci_high", "n_clips", "embedding_distance", "mel_distance", "embedding", "sampler",
               "source_set"]
    return pd.DataFrame(rows, columns=columns).sort_values(["variant", "timestep", "reference"], ignore_index=True)


def variation_sections(frame: pd.DataFrame, reference_order: list[str] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """One table: rows model x start timestep; the distances to the source, then FAD (CI) per reference set."""
    refs = ordered(frame["reference"], reference_order)
    rows = []
    for (variant, t), block in frame.groupby(["variant", "timestep"], sort=True):
        first = block.iloc[0]
        row = {"model": variant, "T": "decoder only" if t < 0 else int(t), "strength": first["strength"],
               "embedding distance": first["embedding_distance"], "log-mel distance": first["mel_distance"]}
        row["clips"] = int(first["n_clips"]) if first["n_clips"] is not None and not pd.isna(first["n_clips"]) else ""
        for ref in refs:
            hit = block[block["reference"] == ref]
            row[f"FAD vs {ref}"] = (format_ci(hit["fad"].iloc[0], hit["fad_ci_low"].iloc[0], hit["fad_ci_high"].iloc[0])
                                    + ("" if hit["adequate"].iloc[0] else "†")) if len(hit) else ""
            row[f"KAD vs {ref}"] = format_ci(hit["kad"].iloc[0], hit["kad_ci_low"].iloc[0],
                                             hit["kad_ci_high"].iloc[0]) if len(hit) else ""
        rows.append(row)
    title = ("Variations by start timestep (T = 0: the source clips; decoder only: the sources encoded and "
             "decoded without diffusion; † FAD under-sampled, read KAD)")
    return [(title, pd.DataFrame(rows))]


def text_frame(runs: list[dict]) -> pd.DataFrame:
    """Per text-conditioned variant, generated group (a caption label or ``unconditional``) and reference set:
    FAD with its CI."""
    rows = []
    for run, (group, embedding, ref), v in metric_groups(runs, "text_conditioning", r"[^/]+/[^/]+/[^/]+/fad"):
        rows.append({"variant": run["instance"], "group": group, "reference": ref, "fad": v["fad"],
                     "fad_ci_low": v["fad_ci_low"], "fad_ci_high": v["fad_ci_high"], "adequate": v.get("adequate"),
                     "kad": v.get("kad"), "kad_ci_low": v.get("kad_ci_low"), "kad_ci_high": v.get("kad_ci_high"),
                     "n_clips": v.get("n_clips"),
                     "label_reference": run["params"].get(f"text_conditioning.label_reference_sets.{group}", ""),
                     "text_encoder": run["tags"].get("text_encoder", ""),
                     "guidance_scale": run["params"].get("guidance_scale", ""),
                     "embedding": embedding})
    columns = ["variant", "group", "reference", "fad", "fad_ci_low", "fad_ci_high", "adequate", "kad", "kad_ci_low",
               "kad_ci_high", "n_clips", "label_reference", "text_encoder", "guidance_scale", "embedding"]
    return pd.DataFrame(rows, columns=columns).sort_values(["variant", "group", "reference"], ignore_index=True)


def text_sections(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Per variant: for each caption label, FAD of its conditional clips and of the unconditional clips
    against the label's reference set, and the change."""
    sections = []
    for variant, block in frame.groupby("variant", sort=True):
        rows = []
        for group, rows_of in block[block["group"] != "unconditional"].groupby("group", sort=True):
            ref = rows_of["label_reference"].iloc[0]
            cond = rows_of[rows_of["reference"] == ref]
            uncond = block[(block["group"] == "unconditional") & (block["reference"] == ref)]
            if not len(cond) or not len(uncond):
                continue
            c, u = cond.iloc[0], uncond.iloc[0]
            mark = {True: "", False: "†"}
            rows.append({"label": group, "reference set": ref, "clips": int(c["n_clips"]),
                         "FAD with caption": format_ci(c["fad"], c["fad_ci_low"], c["fad_ci_high"]) + mark[bool(c["adequate"])],
                         "FAD unconditional": format_ci(u["fad"], u["fad_ci_low"], u["fad_ci_high"]) + mark[bool(u["adequate"])],
                         "KAD with caption": format_ci(c["kad"], c["kad_ci_low"], c["kad_ci_high"]),
                         "KAD unconditional": format_ci(u["kad"], u["kad_ci_low"], u["kad_ci_high"]),
                         "KAD change": c["kad"] - u["kad"]})
        first = block.iloc[0]
        sections.append((f"{variant} ({first['text_encoder']}, guidance scale {first['guidance_scale']})",
                         pd.DataFrame(rows)))
    return sections


def variation_strength_figure(frame: pd.DataFrame, path: Path, reference_order: list[str] | None = None) -> Path:
    """Left: FAD (95% CI band) against variation strength T / 1000, per model, against the first reference
    set; right: the mean embedding distance of each variation to its source clip. Crosses at strength 0
    mark the sources passed through the decoder alone."""
    from musicdiff.report.figures import grid, pyplot, save

    plt = pyplot()
    ref = ordered(frame["reference"], reference_order)[0]
    fig, (left, right) = grid(2, plt)
    for variant, rows in frame[frame["reference"] == ref].groupby("variant", sort=True):
        decoded, rows = rows[rows["timestep"] < 0], rows[rows["timestep"] >= 0].sort_values("strength")
        line = left.plot(rows["strength"], rows["fad"], marker="o", label=variant)[0]
        left.fill_between(rows["strength"], rows["fad_ci_low"], rows["fad_ci_high"], alpha=0.2)
        right.plot(rows["strength"], rows["embedding_distance"], marker="o", label=variant, color=line.get_color())
        for ax, column in ((left, "fad"), (right, "embedding_distance")):  # the decoder alone, at strength 0
            ax.scatter(decoded["strength"], decoded[column], marker="x", s=60, color=line.get_color())
    embedding = frame["embedding"].iloc[0]
    left.set_title(f"FAD vs reference set {ref}")
    left.set_ylabel(f"FAD ({embedding})")
    right.set_title("distance to the source clip")
    right.set_ylabel(f"mean {embedding} embedding distance")
    for ax in (left, right):
        ax.set_xlabel("strength = start timestep T / 1000 (x: decoder only)")
        ax.legend(fontsize=8)
    fig.suptitle(f"Variations ({frame['sampler'].iloc[0]}, sources from {frame['source_set'].iloc[0]})")
    fig.tight_layout()
    return save(fig, path)
