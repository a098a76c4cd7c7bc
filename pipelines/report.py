"""Stage report: regenerate reports/ from the MLflow runs named by metrics/**/*.json.

A stage that DVC skipped in this checkout (its outputs came from git or a DVC remote, e.g. on a
fresh clone whose re-run embeddings hashed the same as the committed ones) never logged a run into
this MLflow store; its JSON record still holds the numbers, so the stage logs those records again
first (``musicdiff.tracking.relog_records``, the same as ``musicdiff relog metrics/``) and then
builds every table from MLflow.
"""

from __future__ import annotations

from musicdiff.report import build_reports, report_orders
from musicdiff.tracking import relog_records

from pipelines.common import ROOT, load_params


def main() -> None:
    params = load_params()
    records = sorted((ROOT / "metrics").rglob("*.json"))
    relogged = relog_records(records)
    if relogged:
        print(f"re-logged {len(relogged)} of {len(records)} records whose runs this MLflow store lacked")
    for path in build_reports(ROOT / "metrics", ROOT / "reports", **report_orders(params)):
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
