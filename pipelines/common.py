"""Shared helpers of the stage scripts: params, paths and argument parsing. Only pipelines/ knows DVC."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
from pathlib import Path

import yaml

# The DVC project folder a stage runs in: DVC starts every command in the folder of its dvc.yaml, so
# this is the repository root for the main pipeline and pipelines/regress/ for the FAD regression
# benchmark. Its params.yaml, data/ and metrics/ are the stage's; the code is the installed package's.
ROOT = Path.cwd()


def load_params(path: Path | None = None) -> dict:
    """``params.yaml`` of the folder the stage runs in (the only place a knob lives)."""
    with open(path or ROOT / "params.yaml") as fh:
        return yaml.safe_load(fh)


def record_path(stage: str, instance: str) -> Path:
    """The DVC ``metrics:`` output of a stage instance: ``metrics/<stage>/<instance>.json``."""
    return ROOT / "metrics" / stage / f"{instance}.json"


def parser(description: str, *args: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    for a in args:
        p.add_argument(a, required=True)
    return p


@contextlib.contextmanager
def atomic_dir(final: Path):
    """Yield a fresh temporary folder beside ``final``; on success it replaces ``final`` in one rename,
    on error it is removed and ``final`` is left as it was."""
    final = Path(final)
    tmp = final.with_name(f".tmp_{final.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def variant_settings(params: dict, name: str) -> tuple[dict, dict, dict]:
    """``(variant, schedule, train)`` of variant ``name``: the shared ``schedule`` with the variant's
    ``prediction_type`` and ``clip_sample``, and the shared ``train`` section updated by the variant's
    own ``train`` overrides. Raises ``KeyError`` naming the known variants."""
    if name not in params["variants"]:
        raise KeyError(f"no variant {name!r} in params.yaml variants; known: {sorted(params['variants'])}")
    variant = params["variants"][name]
    schedule = dict(params["schedule"])
    for key in ("prediction_type", "clip_sample"):
        if key in variant:
            schedule[key] = variant[key]
    train = {**params["train"], **variant.get("train", {})}
    return variant, schedule, train


def upstream_run_tags(**stages: str) -> dict[str, str]:
    """Tags naming the MLflow runs a stage consumes: ``upstream.<stage>`` = the run id in the JSON record
    ``metrics/<stage>/<instance>.json`` of each ``stage=instance`` given (absent records are left out),
    so that a FAD run links to its sample run, and that to its train run."""
    import json

    tags = {}
    for stage, instance in stages.items():
        path = record_path(stage, instance)
        if path.is_file():
            record = json.loads(path.read_text())
            tags[f"upstream.{stage}"] = record.get("run_id", "")
            tags[f"upstream.{stage}.instance"] = instance
    return tags


def sample_spec(params: dict, name: str) -> dict:
    """``samples.<name>`` with its variant's family; raises ``KeyError`` naming the known sets."""
    if name not in params["samples"]:
        raise KeyError(f"no evaluation set {name!r} in params.yaml samples; known: {sorted(params['samples'])}")
    spec = dict(params["samples"][name])
    spec["family"] = params["variants"][spec["variant"]]["family"]
    return spec


def run_stage(main) -> None:
    """Run a stage's ``main()``; bad input that stops a stage (too many skipped files, an exception the
    bad-input policy does not know, a file that cannot be used, a missing input) ends with one line naming
    the file(s) and exit status 1, not a traceback."""
    import sys

    from musicdiff.data.audio import BadAudioError
    from musicdiff.data.screening import TooManySkippedError, UnexpectedInputError

    try:
        main()
    except (TooManySkippedError, UnexpectedInputError, BadAudioError, FileNotFoundError) as error:
        stage = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "stage"
        print(f"{stage}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
