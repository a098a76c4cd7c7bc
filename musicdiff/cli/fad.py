"""``musicdiff fad``: score a folder of audio against one or more reference sets, by the pipeline's
evaluation protocol, bad-input policy and scoring path, and print or record the result.

References are folders of audio, the named reference sets of a params file (``reference_sets``: their
folders, subset as the ``reference`` stage subsets them: ``evaluation.max_reference_clips`` clips drawn
with ``evaluation.reference_seed``), or shipped statistics (a ``reference_stats`` name such as
``fma-pop``, or a source such as ``fadtk/fma_pop``; FAD and FAD-inf only, marked as not
protocol-matched). Every folder is listed and screened before anything is embedded; a folder that
loses more than ``max_skip_fraction`` of its files stops the command with the list.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("md", "csv", "json")
COLUMNS = ("embedding", "reference", "fad", "fad_ci_low", "fad_ci_high", "kad", "kad_ci_low", "kad_ci_high",
           "fad_inf", "fad_inf_reliable", "n_clips", "n_independent", "dim", "adequate", "ref_clips",
           "protocol_matched", "flags")


def add_parser(sub) -> None:
    """Add ``fad`` to the ``musicdiff`` sub-command parser ``sub``."""
    p = sub.add_parser("fad", help="FAD, KAD and FAD-inf of a folder of audio against one or more reference sets",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="REF ... EVAL_DIR",
                   help="reference sets (folders, reference_sets names of --params, or shipped statistics such "
                        "as fma-pop), then the folder to score (last)")
    p.add_argument("--embedding", action="append", default=None,
                   help="musicnn (default), logmel-stats, vggish, clap-laion-audio or clap-laion-music; repeatable")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.add_argument("--out", default=None, help="write the table to this file (atomically) instead of stdout")
    p.add_argument("--mlflow", action="store_true",
                   help="record the result as an MLflow run (stage 'fad', tags as a stage run; MLFLOW_TRACKING_URI)")
    p.add_argument("--name", default=None, help="the evaluated system's name (default: the folder's name)")
    p.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples for FAD's CI (default: params)")
    p.add_argument("--seed", type=int, default=None, help="bootstrap seed (default: params evaluation.seed)")
    p.add_argument("--clip-s", type=float, default=None,
                   help="evaluation clip length in seconds (default: params evaluation.clip_s, else 0.73)")
    p.add_argument("--sample-rate", type=int, default=None,
                   help="protocol sample rate in Hz (default: params evaluation.sample_rate, else 22050)")
    p.add_argument("--max-skip-fraction", type=float, default=None,
                   help="largest fraction of a folder's files that may be skipped (default: params inputs, else 0.2)")
    p.add_argument("--min-sample-rate", type=int, default=None,
                   help="files below this rate (Hz) are skipped (default: params inputs, else 8000)")
    p.add_argument("--params", default=None,
                   help="params file whose evaluation protocol, inputs policy and reference sets are used "
                        "(default: params.yaml of the working directory when present, else the defaults; a file "
                        "given here must exist)")
    p.add_argument("--cache", default=None, help="embedding cache folder (content-addressed)")
    p.add_argument("--offline", action="store_true",
                   help="never download weights (as MUSICDIFF_OFFLINE=1): missing weights are an error naming "
                        "the command that fetches them")
    p.set_defaults(func=run)


@dataclass
class _Ref:
    name: str
    folder: Path | None = None
    source: str | None = None  # shipped statistics
    max_clips: int | None = None
    seed: int = 0


def _check_arguments(args) -> None:
    for name in ("clip_s", "max_skip_fraction"):
        value = getattr(args, name)
        if value is not None and not math.isfinite(value):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
    if args.clip_s is not None and args.clip_s <= 0:
        raise ValueError(f"--clip-s must be > 0 seconds, got {args.clip_s}")
    if args.bootstrap is not None and args.bootstrap < 10:
        raise ValueError(f"--bootstrap must be >= 10 resamples, got {args.bootstrap}")
    if args.sample_rate is not None and args.sample_rate < 1000:
        raise ValueError(f"--sample-rate must be >= 1000 Hz, got {args.sample_rate}")
    if args.out is not None and Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a directory; give a file name")
    if len(args.paths) < 2:
        raise ValueError("give at least one reference set and the folder to score (musicdiff fad REF ... EVAL_DIR)")


def _resolve_references(names: list[str], params: dict, params_dir: Path) -> list[_Ref]:
    from musicdiff.data.reference_stats import SHIPPED_SOURCES

    evaluation = params.get("evaluation") or {}
    named = params.get("reference_sets") or {}
    stats = params.get("reference_stats") or {}
    refs = []
    for name in names:
        if Path(name).is_dir():
            refs.append(_Ref(Path(name).name or name, folder=Path(name)))
        elif name in named:
            refs.append(_Ref(name, folder=params_dir / named[name], max_clips=evaluation.get("max_reference_clips"),
                             seed=int(evaluation.get("reference_seed", 0))))
        elif name in stats or name in SHIPPED_SOURCES:
            refs.append(_Ref(name, source=stats.get(name, name)))
        else:
            raise FileNotFoundError(
                f"reference {name!r} is neither a folder nor a reference set of the params file (reference_sets: "
                f"{sorted(named)}; reference_stats: {sorted(stats)}) nor shipped statistics ({sorted(SHIPPED_SOURCES)})")
    if len({r.name for r in refs}) != len(refs):
        raise ValueError(f"two references share a name: {[r.name for r in refs]}; rename a folder")
    return refs


def score_folders(args) -> dict:
    """Screen, embed and score as the arguments say; returns ``{"rows": [...], "inputs": {...}, ...}``.

    Raises ``TooManySkippedError`` (before anything is embedded), ``FileNotFoundError`` (a folder, or a
    ``--params`` file that was given and does not exist), ``ValueError``,
    ``KeyError`` (unknown embedding) and the embeddings' ``RuntimeError`` for missing weights."""
    from musicdiff.cli.params import input_policy, load_tool_params
    from musicdiff.data.reference_stats import shipped_statistics
    from musicdiff.evaluation.protocol import EvaluationProtocol
    from musicdiff.evaluation.scoring import Reference, ScoreSettings, score_against
    from musicdiff.evaluation.engine import embed_files
    from musicdiff.evaluation.folders import screen_folder
    from musicdiff.evaluation.embeddings.registry import get_embedding

    _check_arguments(args)
    params, params_path = load_tool_params(args.params)
    section = {"clip_s": 0.73, "sample_rate": 22050, **(params.get("evaluation") or {})}
    protocol = EvaluationProtocol(float(args.clip_s or section["clip_s"]),
                                  int(args.sample_rate or section["sample_rate"]))
    policy = input_policy(params, max_skip_fraction=args.max_skip_fraction, min_sample_rate=args.min_sample_rate)
    settings = ScoreSettings.from_params({**section, **{k: v for k, v in (("n_bootstrap", args.bootstrap),
                                                                            ("seed", args.seed)) if v is not None}})
    eval_dir = Path(args.paths[-1])
    if not eval_dir.is_dir():
        raise FileNotFoundError(f"{eval_dir}: the folder to score does not exist")
    name = args.name or eval_dir.resolve().name
    refs = _resolve_references(args.paths[:-1], params, params_path.resolve().parent)

    # Every folder is listed and screened before anything is embedded.
    screened = {name: screen_folder(eval_dir, protocol, name, policy, evaluated=True)}
    for ref in refs:
        if ref.folder is not None:
            screened[ref.name] = screen_folder(ref.folder, protocol, ref.name, policy, evaluated=False)
    for s in screened.values():
        s.log.check(policy.max_skip_fraction)  # the error lists the skipped files
    for s in screened.values():
        for line in s.log.lines():
            print(f"{s.name}: {line}", file=sys.stderr)

    cache = Path(args.cache) if args.cache else None
    rows, metrics, tags, weights = [], {}, {}, {}
    for embedding_name in args.embedding or ["musicnn"]:
        embedding = get_embedding(embedding_name)
        weights[embedding_name] = embedding.weight_sha256

        def embed(set_name, max_clips=None, seed=0):
            return embed_files(embedding, screened[set_name].paths, protocol, set_name, cache_dir=cache,
                               max_clips=max_clips, seed=seed, policy=policy, screened=screened[set_name])

        evaluation = embed(name, seed=settings.seed)
        references = {}
        for ref in refs:
            if ref.folder is not None:
                references[ref.name] = Reference.from_set(embed(ref.name, ref.max_clips, ref.seed))
            else:
                stats = shipped_statistics(ref.source, embedding_name)
                if stats is None:
                    print(f"{ref.name}: no shipped statistics for {embedding_name}; left out", file=sys.stderr)
                    continue
                references[ref.name] = Reference.from_stats(ref.name, stats, embedding_name, ref.source)
        m, t = score_against(evaluation, references, settings)
        metrics.update(m)
        tags.update(t)
        for ref_name in references:
            prefix = f"{embedding_name}/{ref_name}/"
            row = {"embedding": embedding_name, "reference": ref_name,
                   **{c: m.get(prefix + c) for c in COLUMNS[2:-1]}, "flags": t.get(prefix + "flags", "")}
            rows.append(row)
    return {"system": name, "folder": str(eval_dir), "protocol": protocol.to_dict(), "policy": policy.to_dict(),
            "settings": settings.to_dict(), "weights_sha256": weights, "rows": rows, "metrics": metrics,
            "tags": tags, "inputs": {k: s.log.to_dict() for k, s in screened.items()},
            "logs": {k: s.log for k, s in screened.items()}}


def render(result: dict, fmt: str) -> str:
    """The result as Markdown (a table, then the skipped files), CSV (the table) or JSON (everything)."""
    import pandas as pd

    frame = pd.DataFrame(result["rows"], columns=list(COLUMNS))
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    if fmt == "json":
        body = {k: v for k, v in result.items() if k not in ("logs", "metrics", "tags")}
        return json.dumps(body, indent=1, sort_keys=True, default=str) + "\n"
    out = io.StringIO()
    out.write(f"# {result['system']}: {result['protocol']['clip_s']} s clips at {result['protocol']['sample_rate']} Hz\n\n")
    out.write(frame.to_markdown(index=False, floatfmt=".4g") + "\n")
    for set_name, inputs in result["inputs"].items():
        if inputs["skipped"]:
            out.write(f"\n{set_name}: {len(inputs['skipped'])} of {inputs['total']} files skipped\n\n")
            out.write("".join(f"- {s['path']}: {s['reason']} ({s['detail']})\n" for s in inputs["skipped"]))
        flagged = {k: v for k, v in inputs["flags"].items() if v}
        if flagged:
            out.write(f"\n{set_name}: files used with flags: {flagged}\n")
    return out.getvalue()


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _log_to_mlflow(result: dict) -> str:
    from musicdiff.tracking import stage_run

    tags = {"kind": "external", "evaluation_set": result["system"], "source": f"folder {result['folder']}",
            "scored": "true"}
    with stage_run("fad", result["system"], None, tags=tags, data_paths=[Path(result["folder"])]) as run:
        run.log_params({"evaluation": result["settings"], "protocol": result["protocol"], "inputs": result["policy"]})
        for log in result["logs"].values():
            run.log_inputs(log, prefix=f"{log.name}/")
        run.log_metrics(result["metrics"])
        run.set_tags(result["tags"])
        run.set_tags({f"{k}/weight_sha256": v for k, v in result["weights_sha256"].items()})
    return run.record.run_id


def run(args) -> int:
    """``musicdiff fad``: returns the exit code (0; errors are raised for ``musicdiff.cli.main`` to report).
    ``--offline`` sets ``MUSICDIFF_OFFLINE=1`` while it scores (weights are then never downloaded) and
    restores the environment afterwards."""
    offline, before = getattr(args, "offline", False), os.environ.get("MUSICDIFF_OFFLINE")
    if offline:
        os.environ["MUSICDIFF_OFFLINE"] = "1"
    try:
        result = score_folders(args)
    finally:
        if offline and before is None:
            os.environ.pop("MUSICDIFF_OFFLINE", None)
        elif offline:
            os.environ["MUSICDIFF_OFFLINE"] = before
    text = render(result, args.format)
    if args.out:
        _write_atomically(Path(args.out), text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.mlflow:
        run_id = _log_to_mlflow(result)
        print(f"logged to MLflow run {run_id}", file=sys.stderr)
    return 0
