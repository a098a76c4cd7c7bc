"""Tables and figures under ``reports/``, regenerated from MLflow runs."""

from __future__ import annotations

from pathlib import Path


def build_reports(metrics_dir: Path, reports_dir: Path, reference_order: list[str] | None = None) -> list[Path]:
    """Regenerate every report table from the runs named by the JSON records in ``metrics_dir``.

    Returns the files written. Raises ``musicdiff.tracking.MissingRunError`` when the MLflow store
    lacks a run (fix: ``musicdiff relog metrics/``) and ``FileNotFoundError`` when there are no
    records.
    """
    from musicdiff.report.tables import fad_frame, fad_markdown, speed_frame, speed_markdown, write_text
    from musicdiff.tracking import load_runs

    records = sorted(Path(metrics_dir).rglob("*.json"))
    if not records:
        raise FileNotFoundError(f"no stage records under {metrics_dir}; run `dvc repro` first")
    runs = load_runs(records)
    tables = Path(reports_dir) / "tables"
    written = []
    fad = fad_frame(runs)
    if len(fad):
        write_text(tables / "fad.csv", fad.to_csv(index=False, float_format="%.6g"))
        write_text(tables / "fad.md", fad_markdown(fad, reference_order))
        written += [tables / "fad.csv", tables / "fad.md"]
    speed = speed_frame(runs)
    if len(speed):
        write_text(tables / "speed.csv", speed.to_csv(index=False))
        write_text(tables / "speed.md", speed_markdown(speed))
        written += [tables / "speed.csv", tables / "speed.md"]
    return written
