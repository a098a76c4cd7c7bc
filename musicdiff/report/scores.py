"""The score tables (``fad.md``): every evaluation set, generated or real, against every reference set
with every embedding, from the ``evaluate`` and ``floor`` runs, each number beside what it rests on.

Rows are systems: the floors first (real held-out music, alone and through each family's decoder),
then the models, each family's headline cell (its default sampler, sampled for an adequate FAD) marked.
A cell whose number cannot be read plainly carries a mark, explained above the tables:

* ``†`` FAD from fewer independent evaluation frames than twice the embedding's dimension (read KAD);
* ``§`` the reference set itself has fewer independent frames than that;
* ``‡`` FAD-inf whose fit is unreliable (pool too small for the dimension, or a poor R^2);
* ``≠`` shipped reference statistics made under another protocol (not like for like).
"""

from __future__ import annotations

import pandas as pd

from musicdiff.report.tables import format_ci, ordered

MARKS = {
    "†": "FAD from fewer independent evaluation frames than 2 x the embedding's dimension: the covariance is "
         "poorly estimated and FAD mostly measures the sample size; read KAD for this cell",
    "§": "the reference set has fewer independent frames than 2 x the dimension",
    "‡": "FAD-inf not reliable here: its smallest subset has fewer clips than the embedding has dimensions, or "
         "FAD does not follow a + b/n over the subsets (R^2 below the threshold); the interval is wide for that reason",
    "≠": "reference statistics shipped by another toolkit, computed under another protocol (whole tracks, its own "
         "windows): not like for like",
}
FIELDS = ("fad", "fad_ci_low", "fad_ci_high", "mean_term", "trace_term", "bootstrap_bias", "n_clips", "n_frames",
          "n_independent", "dim", "adequate", "ref_clips", "ref_frames", "ref_independent", "reference_adequate",
          "protocol_matched", "kad", "kad_ci_low", "kad_ci_high", "kad_bandwidth", "fad_inf", "fad_inf_ci_low",
          "fad_inf_ci_high", "fad_inf_slope", "fad_inf_r2", "fad_inf_pool", "fad_inf_min_subset", "fad_inf_reliable")
COLUMNS = ["embedding", "system", "kind", "label", "variant", "sampler", "family", "headline", "reference", *FIELDS,
           "flags", "fad_inf_note", "skipped_files", "input_files", "flagged_content", "provenance"]


#: What an external system's name carries in every table.
EXTERNAL = " (external)"


def system_name(tags: dict, default: str = "") -> tuple[str, str]:
    """``(name, sampler)`` of an evaluated system from its run's tags, the one naming of systems in every
    report: a floor is its label and ``""``; an external system its label with ``(external)`` and ``"-"`` (it
    has no sampler of the suite); a generated set its variant and sampler. A missing label falls back to
    the ``evaluation_set`` tag, then to ``default``."""
    label = tags.get("label", tags.get("evaluation_set", default))
    if tags.get("kind") == "floor":
        return label, ""
    if tags.get("kind") == "external":
        return label + EXTERNAL, "-"
    return tags.get("variant", ""), tags.get("sampler", "")


def system_label(tags: dict) -> str:
    """What a row is called (:func:`system_name` in one string): a floor's label, an external system's label
    with ``(external)``, or ``<variant> <sampler>`` (``(headline)`` for a family's headline cell)."""
    name, sampler = system_name(tags)
    if tags.get("kind") in ("floor", "external"):
        return name
    return f"{name} {sampler}" + (" (headline)" if tags.get("headline") == "true" else "")


def provenance(tags: dict) -> str:
    """Where an external system's audio came from, in one line (empty for the suite's own sets)."""
    if tags.get("kind") != "external":
        return ""
    kind = tags.get("system_kind", "")
    what = {"source": tags.get("provenance.source", ""), "generator": tags.get("provenance.generator", ""),
            "model": tags.get("provenance.model", "")}.get(kind, "")
    return f"{kind}: {what}".strip(": ")


def _flagged_content(metrics: dict) -> str:
    """``"3 silent, 1 over_range"``: files of an evaluated set scored although silent, DC-only or over range."""
    counts = {k.split("/", 1)[1]: int(v) for k, v in metrics.items()
              if k in ("flagged/silent", "flagged/dc_only", "flagged/over_range") and v}
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))


def scores_frame(runs: list[dict]) -> pd.DataFrame:
    """Long table: one row per (embedding, evaluation set, reference set) of the evaluate and floor runs,
    with every number of ``musicdiff.evaluation.Score.metrics`` and the flags."""
    rows = []
    for run in runs:
        if run["stage"] not in ("evaluate", "floor"):
            continue
        m, t = run["metrics"], run["tags"]
        pairs = sorted({tuple(k.split("/")[:2]) for k in m if k.count("/") == 2 and k.endswith("/fad")})
        for embedding, ref in pairs:
            prefix = f"{embedding}/{ref}/"
            rows.append({"embedding": embedding, "system": t.get("evaluation_set", run["instance"]),
                         "kind": t.get("kind", ""), "label": system_label(t), "variant": t.get("variant", ""),
                         "sampler": t.get("sampler", ""), "family": t.get("family", ""),
                         "headline": t.get("headline") == "true", "reference": ref,
                         **{f: m.get(prefix + f) for f in FIELDS},
                         "skipped_files": m.get("skipped_files"), "input_files": m.get("input_files"),
                         "flagged_content": _flagged_content(m),
                         "provenance": provenance(t),
                         "flags": t.get(prefix + "flags", ""), "fad_inf_note": t.get(prefix + "fad_inf_unreliable", "")
                         or t.get(prefix + "fad_inf_missing", "")})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("n_clips", "n_frames", "n_independent", "dim", "ref_clips", "ref_frames", "ref_independent",
                   "fad_inf_pool", "fad_inf_min_subset"):
        frame[column] = frame[column].astype("Float64").round().astype("Int64")
    return frame.sort_values(["embedding", "kind", "system", "reference"], ignore_index=True)


def system_order(frame: pd.DataFrame, sampler_order: list[str] | None = None) -> list[str]:
    """Floors first (the real clips, then the decoders), then models by variant, headline cell first, then
    external systems by label."""
    firsts = frame.drop_duplicates("system").set_index("system")
    floors = sorted((s for s in firsts.index if firsts.loc[s, "kind"] == "floor"),
                    key=lambda s: (firsts.loc[s, "label"] != "real: held-out", firsts.loc[s, "label"]))
    samplers = ordered(firsts["sampler"], sampler_order)
    external = sorted((s for s in firsts.index if firsts.loc[s, "kind"] == "external"),
                      key=lambda s: firsts.loc[s, "label"])
    models = sorted((s for s in firsts.index if firsts.loc[s, "kind"] not in ("floor", "external")),
                    key=lambda s: (firsts.loc[s, "variant"], not firsts.loc[s, "headline"],
                                   samplers.index(firsts.loc[s, "sampler"]) if firsts.loc[s, "sampler"] in samplers else 0))
    return floors + models + external


def _marks(row, metric: str) -> str:
    marks = ""
    if metric == "fad" and not bool(row["adequate"]):
        marks += "†"
    if metric in ("fad", "fad_inf") and row["reference_adequate"] is not None and not bool(row["reference_adequate"]):
        marks += "§"
    if metric == "fad_inf" and (row["fad_inf_reliable"] is None or pd.isna(row["fad_inf_reliable"])
                                or not bool(row["fad_inf_reliable"])):
        marks += "‡"
    if row["protocol_matched"] is not None and not pd.isna(row["protocol_matched"]) and not bool(row["protocol_matched"]):
        marks += "≠"
    return marks


METRICS = {  # metric -> (value column, CI columns, heading)
    "fad": ("fad", ("fad_ci_low", "fad_ci_high"), "FAD (lower is better) with the 95% bootstrap CI over evaluation clips"),
    "kad": ("kad", ("kad_ci_low", "kad_ci_high"), "KAD (x100, Gaussian kernel, bandwidth frozen from each reference set) "
                                                  "with the 95% jackknife CI: unbiased, needs no covariance, the number "
                                                  "to read where FAD is marked †. Compare KAD down a column (between "
                                                  "systems), not across columns"),
    "fad_inf": ("fad_inf", ("fad_inf_ci_low", "fad_inf_ci_high"),
                "FAD-inf: FAD extrapolated to infinitely many clips (subsets of pool/16 to pool/2 clips drawn without "
                "replacement, a + b/n fit), with the 95% interval of the pool's bootstrap and the fit"),
}


def score_sections(frame: pd.DataFrame, reference_order: list[str] | None = None,
                   embedding_order: list[str] | None = None,
                   sampler_order: list[str] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """Per metric one ``(heading, table)``: system rows, ``<embedding>: <reference>`` columns, each cell
    ``value (low to high)`` with its marks; the clip count and independent frames per embedding."""
    columns = []
    for embedding in ordered(frame["embedding"], embedding_order):
        block = frame[frame["embedding"] == embedding]
        columns += [(embedding, r) for r in ordered(block["reference"], reference_order)]
    systems = system_order(frame, sampler_order)
    embeddings = ordered(frame["embedding"], embedding_order)
    sections = []
    for metric, (value, (low, high), heading) in METRICS.items():
        present = [c for c in columns if frame[(frame["embedding"] == c[0]) & (frame["reference"] == c[1])][value]
                   .notna().any()]
        if metric == "fad_inf":  # shown even where no pool allowed it: the cell says so
            present = [c for c in columns if frame[(frame["embedding"] == c[0]) & (frame["reference"] == c[1])]
                       ["fad"].notna().any()]
        if not present:
            continue
        rows = []
        for system in systems:
            block = frame[frame["system"] == system]
            first = block.iloc[0]
            row = {"system": first["label"], "sampler": first["sampler"], "clips": int(first["n_clips"]),
                   "skipped files": _skipped(first)}
            for embedding in embeddings:
                hit = block[block["embedding"] == embedding]
                if len(hit):
                    row[f"independent frames ({embedding}, {int(hit['dim'].iloc[0])}-d)"] = int(hit["n_independent"].iloc[0])
            for embedding, ref in present:
                hit = block[(block["embedding"] == embedding) & (block["reference"] == ref)]
                if not len(hit) or pd.isna(hit[value].iloc[0]):
                    row[f"{embedding}: {ref}"] = "n/a (pool too small)" if metric == "fad_inf" and len(hit) else ""
                    continue
                r = hit.iloc[0]
                row[f"{embedding}: {ref}"] = format_ci(r[value], r[low], r[high]) + _marks(r, metric)
            rows.append(row)
        sections.append((heading, pd.DataFrame(rows)))
    return sections


def _skipped(row) -> str:
    """``k of n`` files the bad-input policy skipped, and the files scored although silent, DC-only or over
    range (empty when the record predates the policy)."""
    if row.get("skipped_files") is None or pd.isna(row.get("skipped_files")):
        return ""
    flagged = row.get("flagged_content") or ""
    return f"{int(row['skipped_files'])} of {int(row['input_files'])}" + (f"; scored: {flagged}" if flagged else "")


def reference_sizes(frame: pd.DataFrame, reference_order: list[str] | None = None,
                    embedding_order: list[str] | None = None) -> pd.DataFrame:
    """Per embedding and reference set: its clips, independent frames, the dimension and whether it is
    adequately sampled (shipped statistics: no clips)."""
    rows = []
    for embedding in ordered(frame["embedding"], embedding_order):
        block = frame[frame["embedding"] == embedding]
        for ref in ordered(block["reference"], reference_order):
            r = block[block["reference"] == ref].iloc[0]
            shipped = r["protocol_matched"] is not None and not pd.isna(r["protocol_matched"]) and not r["protocol_matched"]
            rows.append({"embedding": embedding, "reference set": ref,
                         "clips": "shipped statistics" if shipped else int(r["ref_clips"]),
                         "independent frames": "" if shipped else int(r["ref_independent"]), "dimension": int(r["dim"]),
                         "adequate": "" if shipped else ("yes" if r["reference_adequate"] else "no §")})
    return pd.DataFrame(rows)


def scores_markdown(frame: pd.DataFrame, protocol: dict, not_run: dict[str, str], reference_order=None,
                    embedding_order=None, sampler_order=None) -> tuple[str, list[tuple[str, pd.DataFrame]]]:
    """``fad.md``: the protocol, the marks, the three score tables, the reference sets' sizes and the
    embeddings not run (``not_run``: name -> why). Returns the text and the sections (for LaTeX)."""
    sections = score_sections(frame, reference_order, embedding_order, sampler_order)
    sections.append(("Reference sets per embedding", reference_sizes(frame, reference_order, embedding_order)))
    clip = protocol.get("clip_s")
    intro = [
        "# FAD", "", "Generated by `musicdiff report` from MLflow runs; do not edit.", "",
        f"Evaluation protocol: every reference and evaluated file is resampled to {protocol.get('sample_rate')} Hz "
        f"and cut into non-overlapping clips of {clip} s (the length the CPU variants generate; a generated clip is "
        "one clip), each embedded alone with the embedding's own window and padding, on both sides alike. "
        "`clips` counts evaluation clips; `independent frames` the non-overlapping embedding windows they hold "
        "(a clip shorter than the window is one padded window). Floor rows are real held-out music scored the same "
        "way, alone and through a family's decoder alone: what the decoder costs real music, a reference point "
        "rather than a bound (Griffin-Lim for mel, DiT and text-conditioned mel; VAE for latent; the real clips for "
        "waveform). Rows marked `(external)` are systems from outside the suite (params.yaml `systems`), scored the "
        "same way; `skipped files` counts the files the bad-input policy left out of each set, and names the files scored "
        "although silent, DC-only or over range (an evaluated set is judged on what it holds; README \"Bad input\").",
        "",
        "Marks:", "", *[f"- `{mark}` {text}." for mark, text in MARKS.items()], ""]
    body = [f"## {heading}\n\n{table.to_markdown(index=False)}\n" for heading, table in sections]
    external = frame[frame["kind"] == "external"].drop_duplicates("system")
    if len(external):
        body.append("## External systems\n\n" + "\n".join(f"- {r['label']}: {r['provenance']}"
                                                           for _, r in external.sort_values("label").iterrows()) + "\n")
    if not_run:
        lines = [f"- {name}: {why.splitlines()[0]}" for name, why in sorted(not_run.items())]
        body.append("## Embeddings not run\n\nKnown to musicdiff but not in `embed.embeddings` (the `weights` stage "
                    "records why; `musicdiff weights` lists each file and where it was looked for):\n\n"
                    + "\n".join(lines) + "\n")
    return "\n".join(intro) + "\n" + "\n".join(body), sections
