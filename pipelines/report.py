"""Stage report: regenerate reports/ from the MLflow runs named by metrics/**/*.json.

A stage that DVC skipped in this checkout (its outputs came from git or a DVC remote, e.g. on a
fresh clone whose re-run embeddings hashed the same as the committed ones) never logged a run into
this MLflow store; its JSON record still holds the numbers, so the stage logs those records again
first (``musicdiff.tracking.relog_records``, the same as ``musicdiff relog metrics/``) and then
builds every table from MLflow. Its own MLflow run carries the tables and figures as artifacts, and
``reports/headline.json`` (the DVC metrics ``dvc exp show`` lists) holds the headline numbers: FAD and
KAD of each family's headline cell and of the floors against each reference set, per embedding. It also
stores the MLflow UI's shared view of the score table (``musicdiff.tracking.share_scores_view``).

Only the records that a stage of the current ``dvc.yaml`` writes are reported: DVC does not delete the
outputs of a stage that was removed or renamed (e.g. a set dropped from ``samples``), so their records
would otherwise stay in the tables; each one left out is named, with the fix (delete it).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from musicdiff.report.build import build_reports, report_orders
from musicdiff.tracking import SCORES_VIEW, relog_records, share_scores_view, stage_run

from pipelines.common import ROOT, load_params


def graph_records() -> tuple[list[Path], list[Path]]:
    """The JSON records under ``metrics/`` that an output of a stage of the current graph names (the file,
    or a folder above it for stages that write one record per set), and the others (left by stages since
    removed or renamed)."""
    from dvc.repo import Repo

    outs = {Path(out.fs_path).resolve() for stage in Repo(str(ROOT)).index.stages for out in stage.outs}
    records = sorted((ROOT / "metrics").rglob("*.json"))
    written = [p for p in records if p.resolve() in outs or outs.intersection(p.resolve().parents)]
    return written, [p for p in records if p not in written]


def main() -> None:
    params = load_params()
    records, stale = graph_records()
    for path in stale:
        print(f"left out {path.relative_to(ROOT)}: no stage of dvc.yaml writes it (a stage since removed or "
              f"renamed); delete it")
    relogged = relog_records(records)
    if relogged:
        print(f"re-logged {len(relogged)} of {len(records)} records whose runs this MLflow store lacked")
    tags = {"records": str(len(records)), "records_left_out": str(len(stale))}
    with stage_run("report", "all", None, tags=tags) as run, tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "metrics"  # the graph's records only, laid out as under metrics/
        for path in records:
            (metrics / path.relative_to(ROOT / "metrics")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, metrics / path.relative_to(ROOT / "metrics"))
        written = build_reports(metrics, ROOT / "reports", **report_orders(params))
        for path in written:
            run.log_artifact(path, str(path.parent.relative_to(ROOT)))
            print(f"wrote {path.relative_to(ROOT)}")
        experiment = share_scores_view(list(params["embed"]["embeddings"]), list(params["reference_sets"]))
        print(f"MLflow UI: #/experiments/{experiment}?viewStateShareKey={SCORES_VIEW} opens the score table")


if __name__ == "__main__":
    main()
