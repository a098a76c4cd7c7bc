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
