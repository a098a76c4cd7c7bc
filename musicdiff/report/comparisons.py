"""``comparisons.md``: the systems ranked per embedding and reference set, each compared with its
neighbour above by a paired test (``musicdiff.evaluation.comparison``), from the ``compare`` run."""

from __future__ import annotations

import pandas as pd

from musicdiff.report.tables import format_ci, ordered

FIELDS = ("rank", "fad", "kad", "kad_ci_low", "kad_ci_high", "n_clips", "adequate", "diff_n_matched", "diff_fad",
          "diff_fad_low", "diff_fad_high", "diff_fad_adequate", "diff_kad", "diff_kad_low", "diff_kad_high")


def verdict(low, high) -> str:
    """The word for an interval of ``distance(system) - distance(system above)``."""
    if low is None or pd.isna(low):
        return ""
    if high < 0:
        return "better"
    if low > 0:
        return "worse"
    return "not distinguishable"


def comparisons_frame(runs: list[dict], labels: dict[str, str]) -> pd.DataFrame:
    """Long table: per embedding, reference set and system its rank, FAD, KAD (CI) and the differences to
    the system above with their intervals and verdicts; ``labels`` maps a system to its display name."""
    rows = []
    for run in runs:
        if run["stage"] != "compare":
            continue
        m = run["metrics"]
        keys = sorted({tuple(k.split("/")[:3]) for k in m if k.endswith("/rank") and k.count("/") == 3})
        for embedding, ref, system in keys:
            prefix = f"{embedding}/{ref}/{system}/"
            row = {"embedding": embedding, "reference": ref, "system": system, "label": labels.get(system, system),
                   **{f: m.get(prefix + f) for f in FIELDS}}
            row["fad_verdict"] = verdict(row["diff_fad_low"], row["diff_fad_high"]) if row["diff_fad_adequate"] else ""
            row["kad_verdict"] = verdict(row["diff_kad_low"], row["diff_kad_high"])
            rows.append(row)
    columns = ["embedding", "reference", "system", "label", *FIELDS, "fad_verdict", "kad_verdict"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["embedding", "reference", "rank"], ignore_index=True)


def comparisons_sections(frame: pd.DataFrame, fad_ci: dict, reference_order: list[str] | None = None,
                         embedding_order: list[str] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """Per embedding and reference set, the ranking: rank, system, clips, FAD (its CI from ``fad_ci``:
    ``{(embedding, system, reference): (low, high)}``), KAD (CI), and against the system above the FAD and
    KAD differences (95% CI) with the verdict: FAD's where both sets are adequately sampled, else KAD's."""
    sections = []
    for embedding in ordered(frame["embedding"], embedding_order):
        block = frame[frame["embedding"] == embedding]
        for ref in ordered(block["reference"], reference_order):
            rows = []
            for _, r in block[block["reference"] == ref].iterrows():
                low, high = fad_ci.get((embedding, r["system"], ref), (None, None))
                has_above = r["diff_kad"] is not None and not pd.isna(r["diff_kad"])
                rows.append({
                    "rank": int(r["rank"]), "system": r["label"], "clips": int(r["n_clips"]),
                    "FAD": format_ci(r["fad"], low, high) + ("" if r["adequate"] else "†"),
                    "KAD": format_ci(r["kad"], r["kad_ci_low"], r["kad_ci_high"]),
                    "vs above: FAD diff": (format_ci(r["diff_fad"], r["diff_fad_low"], r["diff_fad_high"])
                                           + f" (n={int(r['diff_n_matched'])})") if has_above and r["diff_fad_adequate"]
                    else ("under-sampled" if has_above else ""),
                    "vs above: KAD diff": format_ci(r["diff_kad"], r["diff_kad_low"], r["diff_kad_high"]) if has_above
                    else "",
                    "verdict vs above": _verdict(r) if has_above else "",
                })
            sections.append((f"{embedding}: {ref}", pd.DataFrame(rows)))
    return sections


def _verdict(row) -> str:
    """FAD's verdict where both sets are adequately sampled (KAD's beside it when it disagrees), else KAD's."""
    if not row["fad_verdict"]:
        return row["kad_verdict"]
    if row["kad_verdict"] != row["fad_verdict"]:
        return f"{row['fad_verdict']} (KAD: {row['kad_verdict']})"
    return row["fad_verdict"]


INTRO = ("Systems ranked against each reference set: those with enough independent frames for FAD (at least 2 x the "
         "embedding's dimension) by FAD, then the under-sampled ones (FAD marked †) by KAD. Each is compared with the "
         "system ranked just above it: the FAD difference at a matched number of clips (the larger set cut to the "
         "smaller one, seeded), with a 95% bootstrap interval that resamples both evaluation sets, and the KAD "
         "difference with a 95% interval from both jackknife standard errors. The verdict is FAD's where both sets are "
         "adequately sampled, else KAD's: `worse` when the interval of (this system - the one above) lies above 0, "
         "`not distinguishable` when it holds 0. Rank neighbours that are not distinguishable are tied for this "
         "reference set. The test's false-positive rate and the intervals' coverage are checked on simulated "
         "Gaussians (tests/test_simulations.py).")
