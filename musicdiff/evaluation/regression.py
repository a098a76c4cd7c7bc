"""FAD regression check: compare a benchmark run with a committed baseline, within a measured tolerance.

The benchmark is any folder run by the stage scripts (``pipelines/regress/`` ships a tiny one): its
``params.yaml`` names, under ``regress``, the checked ``variant``/``sampler``/``embedding``, the
``variation`` variants (the same model trained with other seeds), the ``reference_sets`` and
``k_sd``. Its JSON stage records (``metrics/<stage>/<instance>.json``) hold every number used here,
so this module needs neither DVC nor the audio.

Tolerance (per reference set), recorded in the baseline with the numbers it came from::

    sd        = sample standard deviation (ddof 1) of FAD over the check seed and the variation seeds
    ci_half   = upper bound of the check run's bootstrap CI of FAD minus its FAD
    tolerance = max(k_sd * sd, ci_half)

A run *fails* when ``FAD_now - FAD_baseline > tolerance`` for any reference set (FAD is lower-better;
an improvement beyond the tolerance passes and says to update the baseline). The run cannot be
compared (a different verdict and exit code) when its audio data or embedding weights differ from
the baseline's, or its records are missing; library versions and derived data (prepared splits,
features) are shown when they differ, since a code change may legitimately change them and FAD
judges the outcome.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from musicdiff.tracking import StageRecord

SCHEMA = 1
PASS, WORSE, BETTER, INCOMPARABLE = "pass", "FAIL: worse", "pass: better (consider --update)", "cannot compare"
# Inputs that no code change should alter: when they differ the numbers are not comparable.
FIXED_INPUTS = ("audio clips", "embedding weights")


@dataclass(frozen=True)
class CheckSettings:
    """The ``regress`` section of a benchmark's params.yaml."""

    variant: str
    sampler: str
    embedding: str
    variation: tuple[str, ...]
    reference_sets: tuple[str, ...]
    k_sd: float
    dataset: str

    @classmethod
    def load(cls, params_path: Path) -> CheckSettings:
        """Read ``regress`` (and ``train_dataset``) from ``params_path``; ``KeyError`` names a missing key."""
        params = yaml.safe_load(Path(params_path).read_text())
        if "regress" not in params:
            raise KeyError(f"{params_path} has no 'regress' section (check, variation, reference_sets, k_sd)")
        section = params["regress"]
        check = section["check"]
        return cls(variant=check["variant"], sampler=check["sampler"], embedding=check["embedding"],
                   variation=tuple(section.get("variation") or ()), reference_sets=tuple(section["reference_sets"]),
                   k_sd=float(section["k_sd"]), dataset=params["train_dataset"])

    def evaluation_set(self, variant: str | None = None) -> str:
        """The evaluation set (a key of the benchmark's ``samples``) of the check or of a seed variant."""
        return f"{variant or self.variant}-{self.sampler}"


@dataclass(frozen=True)
class Row:
    """One compared number: FAD of the check model against one reference set."""

    reference_set: str
    baseline: float
    now: float
    tolerance: float
    verdict: str

    @property
    def delta(self) -> float:
        return self.now - self.baseline


@dataclass
class Comparison:
    rows: list[Row]
    notes: list[str]
    incomparable: list[str]

    @property
    def failed(self) -> bool:
        return any(row.verdict == WORSE for row in self.rows)

    @property
    def exit_code(self) -> int:
        """0: within tolerance (or better); 1: FAD worse beyond tolerance; 2: not comparable."""
        return 2 if self.incomparable else 1 if self.failed else 0


def _record(folder: Path, stage: str, instance: str) -> StageRecord:
    path = Path(folder) / "metrics" / stage / f"{instance}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no record {path}: run the benchmark first (`musicdiff regress` runs `dvc repro`)")
    return StageRecord.read(path)


def run_summary(folder: Path, settings: CheckSettings) -> dict:
    """FAD numbers and provenance of the check run in benchmark ``folder``.

    Returns ``{"fad": {ref: {"fad", "ci_low", "ci_high", "n_eval", "n_ref"}}, "provenance": {...}}``.
    Raises ``FileNotFoundError`` for a missing record and ``KeyError`` for a reference set the run lacks.
    """
    fad = _record(folder, "evaluate", settings.evaluation_set())
    numbers = {}
    names = {"fad": "fad", "ci_low": "fad_ci_low", "ci_high": "fad_ci_high", "n_eval": "n_clips", "n_ref": "ref_clips"}
    for ref in settings.reference_sets:
        prefix = f"{settings.embedding}/{ref}/"
        if f"{prefix}fad" not in fad.metrics:
            raise KeyError(f"the check run has no {settings.embedding} FAD against {ref!r}")
        numbers[ref] = {k: fad.metrics[prefix + v] for k, v in names.items()}
    download = _record(folder, "download", settings.dataset)
    prepare = _record(folder, "prepare", settings.dataset)
    weights = _record(folder, "weights", "all")
    train = _record(folder, "train", settings.variant)
    provenance = {
        "git_commit": fad.tags.get("git_commit", ""),
        "versions": {k.removeprefix("version."): v for k, v in sorted(fad.tags.items()) if k.startswith("version.")},
        "data": {
            "audio clips": download.tags.get("table_sha256", ""),
            "embedding weights": weights.tags.get(f"weight_sha256.{settings.embedding}", ""),
            **{f"prepared {split} split": v for split, v in
               ((k.removeprefix("table_sha256_"), v) for k, v in sorted(prepare.tags.items())
                if k.startswith("table_sha256_"))},
            "training features": train.tags.get("data_hash", ""),
        },
        "device": train.tags.get("device", ""),
        "params_sha256": hashlib.sha256((Path(folder) / "params.yaml").read_bytes()).hexdigest(),
    }
    return {"fad": numbers, "provenance": provenance}


def measure_tolerance(check: dict, seed_fads: dict[str, float], k_sd: float) -> dict:
    """Tolerance of one reference set from measured variation (see the module docstring).

    ``check``: the check run's ``{"fad", "ci_low", "ci_high", ...}``; ``seed_fads``: ``{variant: FAD}``
    over the check seed and the variation seeds. Raises ``ValueError`` with fewer than two seeds (no
    standard deviation) or a non-finite FAD.
    """
    values = np.array(list(seed_fads.values()), dtype=float)
    if len(values) < 2:
        raise ValueError(f"a tolerance needs FAD of at least 2 training seeds, got {len(values)}: "
                         "list other-seed variants under regress.variation")
    if not np.isfinite(values).all():
        raise ValueError(f"non-finite FAD among the seeds: {seed_fads}")
    sd = float(values.std(ddof=1))
    ci_half = float(check["ci_high"] - check["fad"])
    return {"tolerance": max(k_sd * sd, ci_half), "seed_sd": sd, "k_sd": k_sd, "ci_half_width": ci_half,
            "seed_fads": dict(seed_fads), "seed_mean": float(values.mean())}


def build_baseline(folder: Path, settings: CheckSettings) -> dict:
    """The baseline document of benchmark ``folder``: the check run's FAD per reference set with its
    tolerance (from the variation seeds' records) and the run's provenance."""
    current = run_summary(folder, settings)
    variants = [settings.variant, *settings.variation]
    records = {v: _record(folder, "evaluate", settings.evaluation_set(v)) for v in variants}
    metrics = {}
    for ref, check in current["fad"].items():
        seed_fads = {v: records[v].metrics[f"{settings.embedding}/{ref}/fad"] for v in variants}
        metrics[ref] = {**check, **measure_tolerance(check, seed_fads, settings.k_sd)}
    evaluation = records[settings.variant].params.get("evaluation", {})
    confidence = evaluation.get("ci", 0.95)
    return {
        "schema": SCHEMA,
        "benchmark": str(folder),
        "check": {"variant": settings.variant, "sampler": settings.sampler, "embedding": settings.embedding},
        "variation": list(settings.variation),
        "tolerance_method": (
            f"tolerance = max({settings.k_sd:g} x sd, ci_half): sd is the sample standard deviation (ddof 1) of "
            f"FAD over {len(variants)} training seeds (variants {', '.join(variants)}: the same model, data, "
            f"sampler and sampling seed; only train.seed differs), ci_half is the upper bound of the check run's "
            f"{confidence:.0%} bootstrap CI of FAD ({evaluation.get('n_bootstrap')} resamples "
            "of the evaluation clips, re-centred on the estimate) minus its FAD. A run fails when "
            "FAD_now - FAD_baseline > tolerance."),
        "metrics": metrics,
        "provenance": current["provenance"],
    }


def compare(baseline: dict, current: dict) -> Comparison:
    """Compare ``current`` (:func:`run_summary`) with ``baseline`` (:func:`build_baseline`)."""
    if baseline.get("schema") != SCHEMA:
        raise ValueError(f"baseline schema {baseline.get('schema')!r}, expected {SCHEMA}: run `musicdiff regress --update`")
    incomparable, notes = [], []
    old, new = baseline["provenance"], current["provenance"]
    for key in sorted(set(old["data"]) | set(new["data"])):
        was, now = old["data"].get(key, ""), new["data"].get(key, "")
        if was != now:
            text = f"{key}: SHA-256 {was[:12] or 'none'} in the baseline, {now[:12] or 'none'} now"
            (incomparable if key in FIXED_INPUTS else notes).append(text)
    changed = {k: (old["versions"].get(k), v) for k, v in new["versions"].items() if old["versions"].get(k) != v}
    if changed:
        notes.append("library versions differ from the baseline's: "
                     + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(changed.items())))
    if old.get("params_sha256") != new.get("params_sha256"):
        notes.append("the benchmark's params.yaml differs from the one the baseline was measured with")
    rows = []
    for ref, base in baseline["metrics"].items():
        if ref not in current["fad"]:
            incomparable.append(f"no FAD against {ref!r} in this run")
            continue
        now, tol = float(current["fad"][ref]["fad"]), float(base["tolerance"])
        delta = now - float(base["fad"])
        if incomparable or not math.isfinite(now):
            verdict = INCOMPARABLE
        elif delta > tol:
            verdict = WORSE
        elif delta < -tol:
            verdict = BETTER
        else:
            verdict = PASS
        rows.append(Row(ref, float(base["fad"]), now, tol, verdict))
    return Comparison(rows, notes, incomparable)


def comparison_frame(comparison: Comparison) -> pd.DataFrame:
    return pd.DataFrame([{"reference set": r.reference_set, "baseline FAD": r.baseline, "now": r.now,
                          "change": r.delta, "tolerance": r.tolerance, "verdict": r.verdict}
                         for r in comparison.rows])


def comparison_markdown(comparison: Comparison, baseline: dict) -> str:
    """The comparison as a Markdown table with the check's name, the tolerance method and any notes."""
    check = baseline["check"]
    lines = [(f"FAD regression check: {check['embedding']} FAD of `{check['variant']}` sampled with "
              f"`{check['sampler']}`, against the baseline of commit {baseline['provenance']['git_commit'][:12]}"), "",
             comparison_frame(comparison).to_markdown(index=False, floatfmt=".2f"), ""]
    for text in comparison.incomparable:
        lines.append(f"- cannot compare: {text}")
    for text in comparison.notes:
        lines.append(f"- note: {text}")
    lines.append(f"- tolerance: {baseline['tolerance_method']}")
    verdict = ("NOT COMPARABLE" if comparison.incomparable else "FAILED: FAD got worse beyond the tolerance"
               if comparison.failed else "passed")
    lines += ["", f"Result: {verdict}."]
    return "\n".join(lines) + "\n"


def read_baseline(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no baseline {path}: create it with `musicdiff regress --update`")
    return json.loads(path.read_text())


def write_baseline(path: Path, baseline: dict) -> None:
    """Write ``baseline`` as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(baseline, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
