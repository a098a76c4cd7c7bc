"""Stage report: regenerate reports/tables from the MLflow runs named by metrics/**/*.json."""

from __future__ import annotations

from musicdiff.report import build_reports

from pipelines.common import ROOT, load_params


def main() -> None:
    params = load_params()
    for path in build_reports(ROOT / "metrics", ROOT / "reports", list(params["reference_sets"]), list(params["samplers"])):
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
