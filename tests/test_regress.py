"""The FAD regression check: the tiny benchmark (pipelines/regress) run by `dvc repro` in a temporary
copy must pass against the committed baseline, and fail, with its table, once the model is degraded
to untrained weights; the baseline file is regenerated from the committed records and carries the
versions and data hashes of the run that made it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from musicdiff.evaluation import regression as regress

REPO = Path(__file__).resolve().parent.parent
BENCHMARK = REPO / "pipelines" / "regress"
BASELINE = REPO / "reports" / "baseline" / "fad_ci.json"


def _musicdiff(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musicdiff.cli.main", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)


def _copy(root: Path) -> tuple[Path, dict]:
    """A copy of the code and the benchmark definition in ``root`` (no data, records or lock), a DVC
    project without git whose cache is the repository's: a cache is content-addressed, and the stages'
    run-cache entries written by one copy let another (or `musicdiff regress` in the repository, as CI
    runs it after the suite) restore every stage of the same code and params instead of running it."""
    shutil.copytree(REPO / "musicdiff", root / "musicdiff", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "pipelines", root / "pipelines", ignore=shutil.ignore_patterns(
        "__pycache__", "data", "metrics", "mlflow.db", "dvc.lock"))
    folder = root / "pipelines" / "regress"
    env = {**os.environ, "PYTHONPATH": str(root), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "MUSICDIFF_WEIGHTS": str(root / "weights")}
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=root, env=env, check=True)
    subprocess.run(["dvc", "cache", "dir", str(REPO / ".dvc" / "cache")], cwd=root, env=env, check=True)
    return folder, env


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    """The check run in a copy through `musicdiff regress` itself (which runs `dvc repro` of the chain)."""
    root = tmp_path_factory.mktemp("regress")
    folder, env = _copy(root)
    first = _musicdiff("regress", "--benchmark", str(folder), "--baseline", str(BASELINE), env=env, cwd=root)
    return folder, env, first


@pytest.mark.slow
def test_a_second_copy_restores_every_stage_from_the_run_cache(benchmark, tmp_path):
    folder, _, first = benchmark
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    again_folder, env = _copy(tmp_path)
    again = _musicdiff("regress", "--benchmark", str(again_folder), "--baseline", str(BASELINE), env=env,
                       cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert "Running stage" not in log and log.count("is cached - skipping run") >= 8, log[-3000:]
    restored = json.loads((again_folder / "metrics" / "evaluate" / "tiny-ddim25.json").read_text())
    assert restored == json.loads((folder / "metrics" / "evaluate" / "tiny-ddim25.json").read_text())


@pytest.mark.slow
def test_the_benchmark_passes_against_the_committed_baseline(benchmark):
    folder, _, first = benchmark
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    baseline = json.loads(BASELINE.read_text())
    table = first.stdout
    header = next(line for line in table.splitlines() if line.startswith("| reference set"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["reference set", "baseline FAD", "now", "change",
                                                                  "tolerance", "verdict"]
    assert "Result: passed." in table
    for ref in baseline["metrics"]:
        row = next(line for line in table.splitlines() if line.startswith(f"| {ref} "))
        assert "pass" in row and "FAIL" not in row
    # The run is the check's chain only: no variation seed was trained.
    assert (folder / "metrics" / "evaluate" / "tiny-ddim25.json").is_file()
    assert not (folder / "metrics" / "train" / "tiny-seed1.json").exists()


@pytest.mark.slow
def test_untrained_weights_fail_the_check_with_the_table(benchmark):
    folder, env, first = benchmark
    assert first.returncode == 0
    # Degrade the model: learning rate 0 leaves the seeded initial weights (and their EMA) untrained.
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["train"]["learning_rate"] = 0.0
    params["train"]["max_steps"] = 2
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    degraded = _musicdiff("regress", "--benchmark", str(folder), "--baseline", str(BASELINE),
                          "--markdown", str(folder / "table.md"), env=env, cwd=folder.parent.parent)
    assert degraded.returncode == 1, degraded.stdout[-3000:] + degraded.stderr[-3000:]
    out = degraded.stdout
    assert "Result: FAILED: FAD got worse beyond the tolerance." in out
    assert "params.yaml differs" in out  # the changed knob is named
    baseline = json.loads(BASELINE.read_text())
    record = json.loads((folder / "metrics" / "evaluate" / "tiny-ddim25.json").read_text())["metrics"]
    for ref, base in baseline["metrics"].items():
        row = next(line for line in out.splitlines() if line.startswith(f"| {ref} "))
        assert "FAIL: worse" in row
        assert record[f"musicnn/{ref}/fad"] > base["fad"] + 3 * base["tolerance"]  # far beyond, not at the edge
    assert (folder / "table.md").read_text() in out  # the table the command printed after dvc's output


def test_committed_baseline_is_regenerated_from_the_committed_records(tmp_path):
    """`musicdiff regress --update --no-repro` on the committed benchmark records writes the committed
    baseline again, number for number; it carries library versions and data hashes."""
    out = tmp_path / "fad_ci.json"
    done = _musicdiff("regress", "--update", "--no-repro", "--benchmark", "pipelines/regress", "--baseline", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == json.loads(BASELINE.read_text())
    baseline = json.loads(BASELINE.read_text())
    versions = baseline["provenance"]["versions"]
    for library in ("torch", "torchaudio", "diffusers", "accelerate", "numpy", "scipy", "python"):
        assert versions[library][0].isdigit()
    data = baseline["provenance"]["data"]
    for key in ("audio clips", "embedding weights", "prepared heldout split", "prepared train split",
                "training features"):
        assert len(data[key]) == 64 and int(data[key], 16) >= 0
    # The tolerance follows the recorded method from the recorded numbers.
    for m in baseline["metrics"].values():
        assert len(m["seed_fads"]) == 5 and m["seed_fads"]["tiny"] == m["fad"]
        assert m["tolerance"] == max(m["k_sd"] * m["seed_sd"], m["ci_half_width"])
        assert m["ci_low"] <= m["fad"] <= m["ci_high"]
    assert "sample standard deviation" in baseline["tolerance_method"]


def test_tolerance_rule_and_its_errors():
    check = {"fad": 80.0, "ci_low": 76.0, "ci_high": 85.0}
    t = regress.measure_tolerance(check, {"a": 80.0, "b": 90.0, "c": 70.0}, k_sd=3.0)
    assert t["seed_sd"] == pytest.approx(10.0) and t["tolerance"] == pytest.approx(30.0)
    narrow = regress.measure_tolerance(check, {"a": 80.0, "b": 80.5}, k_sd=3.0)
    assert narrow["tolerance"] == pytest.approx(5.0)  # the CI half-width wins when seeds agree
    with pytest.raises(ValueError, match="at least 2 training seeds"):
        regress.measure_tolerance(check, {"a": 80.0}, k_sd=3.0)
    with pytest.raises(ValueError, match="non-finite"):
        regress.measure_tolerance(check, {"a": 80.0, "b": float("nan")}, k_sd=3.0)


def _summary(fad: float, clips: str = "a" * 64, torch: str = "2.11.0") -> dict:
    return {"fad": {"heldout": {"fad": fad, "ci_low": fad - 3, "ci_high": fad + 3, "n_eval": 32, "n_ref": 72}},
            "provenance": {"git_commit": "abc", "versions": {"torch": torch},
                           "data": {"audio clips": clips, "embedding weights": "b" * 64, "training features": "c" * 64},
                           "device": "cpu", "params_sha256": "d" * 64}}


def test_verdicts_and_what_makes_a_run_incomparable():
    base = _summary(80.0)
    baseline = {"schema": regress.SCHEMA, "check": {"variant": "tiny", "sampler": "ddim25", "embedding": "musicnn"},
                "tolerance_method": "m", "provenance": base["provenance"],
                "metrics": {"heldout": {**base["fad"]["heldout"], "tolerance": 10.0}}}
    cases = {79.0: (regress.PASS, 0), 89.9: (regress.PASS, 0), 90.1: (regress.WORSE, 1), 69.0: (regress.BETTER, 0)}
    for now, (verdict, code) in cases.items():
        result = regress.compare(baseline, _summary(now))
        assert (result.rows[0].verdict, result.exit_code) == (verdict, code), now
    other_clips = regress.compare(baseline, _summary(80.0, clips="e" * 64))
    assert other_clips.exit_code == 2 and other_clips.rows[0].verdict == regress.INCOMPARABLE
    assert "audio clips" in other_clips.incomparable[0]
    new_torch = regress.compare(baseline, _summary(80.0, torch="2.12.0"))
    assert new_torch.exit_code == 0 and "torch 2.11.0 -> 2.12.0" in new_torch.notes[0]
    text = regress.comparison_markdown(regress.compare(baseline, _summary(95.0)), baseline)
    assert "| heldout" in text and "FAIL: worse" in text and "Result: FAILED" in text
