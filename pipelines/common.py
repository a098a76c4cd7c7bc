"""Shared helpers of the stage scripts: params, paths and argument parsing. Only pipelines/ knows DVC."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load_params(path: Path | None = None) -> dict:
    """``params.yaml`` at the repository root (the only place a knob lives)."""
    with open(path or ROOT / "params.yaml") as fh:
        return yaml.safe_load(fh)


def record_path(stage: str, instance: str) -> Path:
    """The DVC ``metrics:`` output of a stage instance: ``metrics/<stage>/<instance>.json``."""
    return ROOT / "metrics" / stage / f"{instance}.json"


def audio_set_path(params: dict, name: str) -> Path:
    """The folder of the audio set called ``name`` in ``params['audio_sets']``."""
    if name not in params["audio_sets"]:
        raise KeyError(f"no audio set {name!r} in params.yaml audio_sets")
    return ROOT / params["audio_sets"][name]


def parser(description: str, *args: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    for a in args:
        p.add_argument(a, required=True)
    return p
