"""The stage graph and its lock: dvc.yaml files generated from one definition, code dependencies that
follow the imports, a committed dvc.lock that matches the committed code, and README numbers that are
checked against the graph and the measured run instead of typed."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PIPELINES = {"main": REPO / "dvc.yaml", "regress": REPO / "pipelines" / "regress" / "dvc.yaml"}


def _stage_instances(dvc_yaml: Path) -> list:
    from dvc.repo import Repo

    repo = Repo(str(REPO))
    return [s for s in repo.index.stages if Path(s.path).resolve() == dvc_yaml.resolve()]


def _own_imports(path: Path) -> set[str]:
    """Repository modules imported by ``path`` (any statement, functions included), by this test's own
    walker, independent of pipelines/graph.py."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    out = set()
    for name in names:
        if name.split(".")[0] not in ("musicdiff", "pipelines"):
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            base = REPO.joinpath(*parts[:i])
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    out.add(str(candidate.relative_to(REPO)))
    return out


def _transitive(script: str) -> set[str]:
    start = str(REPO.joinpath(*script.split(".")).with_suffix(".py").relative_to(REPO))
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(_own_imports(REPO / path) - seen)
    return seen


def test_both_dvc_yaml_files_are_the_generated_graph():
    done = subprocess.run([sys.executable, "-m", "pipelines.graph", "--check"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


FAMILY_TEMPLATE = "musicdiff/generation/models/${item.family}.py"


def _family_files() -> dict[str, str]:
    """The family modules the registry imports lazily (its ``FAMILIES``), by this test's own reading."""
    import musicdiff.generation.models.registry as registry

    return {f: f"musicdiff/generation/models/{f}.py" for f in registry.FAMILIES}


def _with_families(imported: set[str], declared: set[str]) -> set[str]:
    """``imported`` plus what a stage that builds models runs through the lazy family registry: its own
    variant's family (the templated dep) or every family, and what those modules import."""
    files = _family_files()
    if FAMILY_TEMPLATE in declared:
        run = set(files.values())
        declared.discard(FAMILY_TEMPLATE)
        extra = set().union(*(_transitive(f"musicdiff.generation.models.{f}") for f in files)) - run
        return imported | extra
    if set(files.values()) <= declared:
        return imported | set().union(*(_transitive(f"musicdiff.generation.models.{f}") for f in files))
    return imported


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_code_dependencies_are_exactly_the_modules_each_stage_imports(pipeline):
    dvc_yaml = PIPELINES[pipeline]
    prefix = "" if pipeline == "main" else "../../"
    for name, stage in yaml.safe_load(dvc_yaml.read_text())["stages"].items():
        body = stage.get("do", stage)
        script = re.search(r"-m (pipelines\.\w+)", body["cmd"]).group(1)
        declared = {d[len(prefix):] for d in body["deps"] if d.startswith(prefix) and d.endswith(".py") and
                    d[len(prefix):].startswith(("musicdiff/", "pipelines/"))}  # a profile .yaml is data
        imported = _with_families(_transitive(script), declared)
        assert not imported - declared, f"{name}: imports not covered by deps: {sorted(imported - declared)}"
        assert not declared - imported, f"{name}: declared code deps it never imports: {sorted(declared - imported)}"


def test_decode_only_settings_are_inputs_of_decoding_not_of_training():
    stages = yaml.safe_load(PIPELINES["main"].read_text())["stages"]
    for name in ("features", "text_features", "train", "vae"):
        params = stages[name]["do"]["params"]
        assert not any(p.startswith("decode") for p in params), (name, params)
    for name in ("sample", "speed", "floors"):
        assert "decode" in stages[name].get("do", stages[name])["params"], name
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert "griffin_lim_iters" in params["decode"] and not any("griffin" in k for k in params["mel"])


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_the_committed_lock_has_every_stage_instance_and_the_code_on_disk(pipeline):
    dvc_yaml = PIPELINES[pipeline]
    lock_path = dvc_yaml.with_name("dvc.lock")
    lock = yaml.safe_load(lock_path.read_text())["stages"]
    instances = {s.addressing.split(":")[-1] for s in _stage_instances(dvc_yaml)}
    assert instances, "no stage instances found"
    assert not instances - set(lock), f"{lock_path.name} lacks {sorted(instances - set(lock))}: run the pipeline"
    assert not set(lock) - instances, f"{lock_path.name} holds stages no longer in the graph: {sorted(set(lock) - instances)}"
    stale = []
    for name, entry in lock.items():
        for dep in entry.get("deps", []):
            path = (dvc_yaml.parent / dep["path"]).resolve()
            if path.suffix == ".py" and path.is_file() and dep.get("md5") != _md5(path):
                stale.append(f"{name}: {dep['path']}")
    assert not stale, f"dvc.lock was made by other code than the committed files (re-run those stages): {stale[:10]}"


def test_readme_states_the_stage_count_and_the_measured_wall_time():
    readme = (REPO / "README.md").read_text()
    count = len(_stage_instances(PIPELINES["main"]))
    assert f"{count} stage instances" in readme
    measured = json.loads((REPO / "reports" / "repro.json").read_text())
    assert measured["stage_instances"] == count
    minutes = measured["wall_s"] / 60
    assert f"{minutes:.1f} minutes" in readme and measured["date"] in readme
