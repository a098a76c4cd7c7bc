"""The ``musicdiff`` command: reports from MLflow, re-logging records, FAD of two folders, embedding weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _report(args) -> int:
    from musicdiff.report import build_reports, report_orders

    orders = {}
    if Path(args.params).exists():  # column orders as listed in params.yaml, like the DVC report stage
        import yaml

        orders = report_orders(yaml.safe_load(Path(args.params).read_text()) or {})
    for path in build_reports(Path(args.metrics), Path(args.out), **orders):
        print(f"wrote {path}")
    return 0


def _profile(args) -> int:
    from musicdiff.profiles import apply_profile, write_profile

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


def _fad(args) -> int:
    from musicdiff.metrics.embeddings import embed_files, get_embedding
    from musicdiff.metrics.fad import fad_score
    from musicdiff.metrics.kad import fad_inf, kad_score

    try:
        embedding = get_embedding(args.embedding)
    except (KeyError, RuntimeError) as error:  # unknown name; missing weights (the message says how to add them)
        print(f"error: {error}", file=sys.stderr)
        return 2
    sets = []
    for folder in (args.ref_dir, args.eval_dir):
        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in {".wav", ".flac", ".ogg", ".opus", ".mp3"})
        if not files:
            print(f"error: no audio files under {folder}", file=sys.stderr)
            return 2
        sets.append(embed_files(embedding, files, cache_dir=Path(args.cache) if args.cache else None))
    reference, evaluation = sets[0].frames, sets[1].clips
    result = fad_score(reference, evaluation, n_bootstrap=args.bootstrap, seed=args.seed)
    print(f"embedding: {embedding.name} (weights {embedding.weight_sha256[:12]})")
    for key, value in result.to_dict().items():
        print(f"{key}: {value}")
    if len(evaluation) >= 3:
        kad = kad_score(reference, evaluation)
        print(f"kad: {kad.kad}\nkad_ci_low: {kad.ci_low}\nkad_ci_high: {kad.ci_high}\nkad_bandwidth: {kad.bandwidth}")
    if len(evaluation) >= 4:
        inf = fad_inf(reference, evaluation, seed=args.seed)
        print(f"fad_inf: {inf.fad_inf}\nfad_inf_ci_low: {inf.ci_low}\nfad_inf_ci_high: {inf.ci_high}\n"
              f"fad_inf_r2: {inf.r2}")
    return 0


def _weights_list() -> int:
    from tabulate import tabulate

    from musicdiff.weights import WEIGHTS_ENV, status, weights_dir

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
    from musicdiff.weights import UnknownWeightsError, import_weights

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

    p = sub.add_parser("fad", help="FAD of EVAL_DIR against REF_DIR (any two folders of audio)")
    p.add_argument("ref_dir")
    p.add_argument("eval_dir")
    p.add_argument("--embedding", default="musicnn",
                   help="musicnn (default), logmel-stats, vggish, clap-laion-audio or clap-laion-music")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the CI")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="embedding cache folder (content-addressed)")
    p.set_defaults(func=_fad)

    p = sub.add_parser("weights", help="list the embeddings' weight files and where they were found; import one")
    wsub = p.add_subparsers(dest="weights_command")
    wsub.add_parser("list", help="table of every registry entry: present or missing, where, SHA-256 check (default)")
    w = wsub.add_parser("import", help="check a downloaded weight file (or the torchvggish hub folder) by SHA-256 "
                                       "and copy it atomically into $MUSICDIFF_WEIGHTS")
    w.add_argument("file", help="the file (or folder) to import")
    w.add_argument("--name", default=None, help="registry entry (default: inferred from the file name or its SHA-256)")
    p.set_defaults(func=_weights, weights_command=None)

    args = parser.parse_args(argv)
    from musicdiff.tracking import MissingRunError

    try:
        return args.func(args)
    except (MissingRunError, FileNotFoundError, RuntimeError) as error:
        print(f"musicdiff {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
