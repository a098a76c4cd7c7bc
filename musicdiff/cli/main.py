"""The ``musicdiff`` command: reports from MLflow, re-logging records, FAD of a folder (``musicdiff.cli.fad``), embedding weights,
the FAD regression check, and the creative tools (``musicdiff.cli.creative``)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def _report(args) -> int:
    from musicdiff.report.build import build_reports, report_orders

    orders = {}
    if Path(args.params).exists():  # column orders as listed in params.yaml, like the DVC report stage
        import yaml

        orders = report_orders(yaml.safe_load(Path(args.params).read_text()) or {})
    for path in build_reports(Path(args.metrics), Path(args.out), **orders):
        print(f"wrote {path}")
    return 0


def _profile(args) -> int:
    from musicdiff.cli.profiles import apply_profile, write_profile

    profile = Path(args.profiles) / f"{args.name}.yaml"
    if not profile.exists():
        known = sorted(p.stem for p in Path(args.profiles).glob("*.yaml"))
        print(f"error: no profile {args.name!r} in {args.profiles} (known: {known})", file=sys.stderr)
        return 2
    if args.dry_run:
        print(apply_profile(Path(args.params), profile), end="")
        return 0
    write_profile(Path(args.params), profile)
    print(f"{args.params}: profile {args.name!r} applied from {profile}; `dvc repro` runs it, "
          f"`git checkout {args.params}` goes back")
    return 0


def _relog(args) -> int:
    from musicdiff.tracking import relog_records

    records = sorted(Path(args.metrics).rglob("*.json"))
    logged = relog_records(records)
    print(f"re-logged {len(logged)} of {len(records)} records into MLflow")
    return 0


def _weights_list() -> int:
    from tabulate import tabulate

    from musicdiff.weights.registry import WEIGHTS_ENV
    from musicdiff.weights.verify import status, weights_dir

    rows, problems = [], []
    status_rows = status()
    for row in status_rows:
        found = row.found
        check = ("-" if found is None else
                 f"verified ({found.check}) {found.sha256[:12]}" if found.verified and found.sha256 else
                 f"unverified, sha256 {found.sha256[:12]}" if found and found.sha256 else
                 f"unverified, {found.note}")
        if row.problem:
            check = "MISMATCH"
            problems.append(row.problem)
        rows.append([row.embedding, row.entry.filename, "yes" if row.required else "optional", row.state, check,
                     f"{found.path}  ({found.where})" if found else "-"])
    print(tabulate(rows, headers=["embedding", "needs", "required", "status", "sha256 check", "found at"]))
    print(f"\nweights folder (${WEIGHTS_ENV}): {weights_dir()}")
    missing = {row.entry.key: row.entry for row in status_rows if row.required and row.state != "present"}
    if missing:
        print("missing or mismatching (download on a machine with network access, then "
              "`musicdiff weights import FILE`; Hugging Face repositories go into the HF cache):")
        for entry in missing.values():
            print(f"  {entry.filename}: {entry.url}  [licence: {entry.licence}]")
    for problem in dict.fromkeys(problems):
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _weights(args) -> int:
    from musicdiff.weights.fetch import import_weights
    from musicdiff.weights.registry import UnknownWeightsError

    if args.weights_command in (None, "list"):
        return _weights_list()
    try:
        found = import_weights(args.file, args.name)
    except UnknownWeightsError as error:
        print(f"musicdiff weights import: error: {error}", file=sys.stderr)
        return 2
    how = (f"verified ({found.check})" if found.verified else
           "unverified: no hash of this code is published; this tree SHA-256 of its .py files goes into the "
           "embedding's config" if found.entry.kind == "hub-repo" else
           "UNVERIFIED: no SHA-256 is published for this file; this one is recorded as the weight hash of "
           "every result computed with it")
    print(f"{found.entry.key}: installed {found.path}\n  sha256 {found.sha256}  {how}")
    return 0


def _regress(args) -> int:
    from musicdiff.evaluation import regression as regress

    folder = Path(args.benchmark)
    try:
        settings = regress.CheckSettings.load(folder / "params.yaml")
    except KeyError as error:
        raise RuntimeError(f"{folder / 'params.yaml'}: missing {error}") from None
    if not args.no_repro:
        # The whole benchmark (check and variation seeds) for --update; only the check's chain otherwise.
        target = "dvc.yaml" if args.update else f"dvc.yaml:evaluate@{settings.evaluation_set()}"
        print(f"musicdiff regress: dvc repro {target} (in {folder})", flush=True)
        subprocess.run([sys.executable, "-m", "dvc", "repro", target], cwd=folder, check=True)
    if args.update:
        old = Path(args.baseline).is_file() and regress.read_baseline(Path(args.baseline))
        new = regress.build_baseline(folder, settings)
        regress.write_baseline(Path(args.baseline), new)
        for ref, m in new["metrics"].items():
            was = f" (was {old['metrics'][ref]['fad']:.2f} +- {old['metrics'][ref]['tolerance']:.2f})" \
                if old and ref in old.get("metrics", {}) else ""
            print(f"{ref}: FAD {m['fad']:.2f}, tolerance {m['tolerance']:.2f} (seed sd {m['seed_sd']:.2f} over "
                  f"{len(m['seed_fads'])} seeds, CI half-width {m['ci_half_width']:.2f}){was}")
        print(f"wrote {args.baseline}")
        return 0
    baseline = regress.read_baseline(Path(args.baseline))
    try:
        comparison = regress.compare(baseline, regress.run_summary(folder, settings))
    except (KeyError, ValueError) as error:
        raise RuntimeError(str(error)) from None
    text = regress.comparison_markdown(comparison, baseline)
    print(text, end="")
    if args.markdown:
        Path(args.markdown).write_text(text)
    return comparison.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musicdiff", description=(
        "Reproducible benchmark for music diffusion models. The pipeline runs with `dvc repro`; "
        "this command regenerates reports from MLflow and scores folders of audio."))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("report", help="regenerate reports/tables from the MLflow runs named in metrics/")
    p.add_argument("--metrics", default="metrics", help="folder of stage JSON records (default: metrics)")
    p.add_argument("--out", default="reports", help="reports folder (default: reports)")
    p.add_argument("--params", default="params.yaml",
                   help="params file whose reference_sets and samplers give the column order (default: params.yaml)")
    p.set_defaults(func=_report)

    p = sub.add_parser("profile", help="switch params.yaml to a profile (e.g. 'paper': the study's sizes)")
    p.add_argument("name", help="profile name: a file <name>.yaml in --profiles")
    p.add_argument("--params", default="params.yaml", help="params file to rewrite (default: params.yaml)")
    p.add_argument("--profiles", default="pipelines/profiles", help="folder of profiles (default: pipelines/profiles)")
    p.add_argument("--dry-run", action="store_true", help="print the resulting params instead of writing them")
    p.set_defaults(func=_profile)

    p = sub.add_parser("relog", help="log the JSON records again into an MLflow store that lacks their runs")
    p.add_argument("metrics", nargs="?", default="metrics", help="folder of stage JSON records")
    p.set_defaults(func=_relog)

    from musicdiff.cli.fad import add_parser as add_fad_parser

    add_fad_parser(sub)

    p = sub.add_parser("weights", help="list the embeddings' weight files and where they were found; import one")
    wsub = p.add_subparsers(dest="weights_command")
    wsub.add_parser("list", help="table of every registry entry: present or missing, where, SHA-256 check (default)")
    w = wsub.add_parser("import", help="check a downloaded weight file (or the torchvggish hub folder) by SHA-256 "
                                       "and copy it atomically into $MUSICDIFF_WEIGHTS")
    w.add_argument("file", help="the file (or folder) to import")
    w.add_argument("--name", default=None, help="registry entry (default: inferred from the file name or its SHA-256)")
    p.set_defaults(func=_weights, weights_command=None)

    p = sub.add_parser("regress", help="FAD regression check: run the tiny benchmark (pipelines/regress) and compare "
                                       "its FAD with the baseline; exit 1 when FAD got worse beyond the tolerance")
    p.add_argument("--update", action="store_true",
                   help="run the whole benchmark (with the variation seeds) and rewrite the baseline on purpose")
    p.add_argument("--no-repro", action="store_true", help="compare the benchmark's existing records; run nothing")
    p.add_argument("--benchmark", default="pipelines/regress",
                   help="benchmark folder with dvc.yaml, params.yaml and metrics/ (default: pipelines/regress)")
    p.add_argument("--baseline", default="reports/baseline/fad_ci.json",
                   help="baseline file (default: reports/baseline/fad_ci.json)")
    p.add_argument("--markdown", default=None, help="also write the comparison table to this file")
    p.set_defaults(func=_regress)

    from musicdiff.cli.creative import add_parsers

    add_parsers(sub)  # generate, vary, inpaint, continue, loop

    args = parser.parse_args(argv)
    from musicdiff.tracking import MissingRunError

    try:
        return args.func(args)
    except subprocess.CalledProcessError as error:
        print(f"musicdiff {args.command}: error: {' '.join(map(str, error.cmd))} exited with {error.returncode}",
              file=sys.stderr)
        return 2
    except (MissingRunError, FileNotFoundError, RuntimeError, ValueError) as error:
        print(f"musicdiff {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyError as error:  # unknown embedding, reference set or statistics: the message names the known ones
        print(f"musicdiff {args.command}: error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
