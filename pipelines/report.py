"""Stage report: regenerate reports/ from the MLflow runs named by metrics/**/*.json.

A stage that DVC skipped in this checkout (its outputs came from git or a DVC remote, e.g. on a
fresh clone whose re-run embeddings hashed the same as the committed ones) never logged a run into
this MLflow store; its JSON record still holds the numbers, so the stage logs those records again
first (``musicdiff.tracking.relog_records``, the same as ``musicdiff relog metrics/``) and then
builds every table from MLflow. Its own MLflow run carries the tables and figures as artifacts, and
``reports/headline.json`` (the DVC metrics ``dvc exp show`` lists) holds the headline numbers: FAD and
KAD of each family's headline cell and of the floors against each reference set, per embedding. It also
stores the MLflow UI's shared view of the score table (``musicdiff.tracking.share_scores_view``).
"""

from __future__ import annotations

from musicdiff.report import build_reports, report_orders
from musicdiff.tracking import SCORES_VIEW, relog_records, share_scores_view, stage_run

from pipelines.common import ROOT, load_params


def main() -> None:
    params = load_params()
    records = sorted((ROOT / "metrics").rglob("*.json"))
    relogged = relog_records(records)
    if relogged:
        print(f"re-logged {len(relogged)} of {len(records)} records whose runs this MLflow store lacked")
    with stage_run("report", "all", None, tags={"records": str(len(records))}) as run:
        written = build_reports(ROOT / "metrics", ROOT / "reports", **report_orders(params))
        for path in written:
            run.log_artifact(path, str(path.parent.relative_to(ROOT)))
            print(f"wrote {path.relative_to(ROOT)}")
        experiment = share_scores_view(list(params["embed"]["embeddings"]), list(params["reference_sets"]))
        print(f"MLflow UI: #/experiments/{experiment}?viewStateShareKey={SCORES_VIEW} opens the score table")


if __name__ == "__main__":
    main()
