"""Each stage depends on what it runs: an edit of evaluation-only code leaves every train@/sample@ stage
up to date, and an edit of one family's model module touches that family's train@ stages alone.

Asked of DVC itself (``dvc status --json``) in a scratch copy of the repository whose committed
``dvc.lock`` records the code the stages ran with; only the edited file is compared, so data that the
copy lacks does not matter."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
# `dvc status` over the whole graph in a copy of the repository, once per edit (about 15 s each here): slow tier
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scope") / "repo"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file() and not name.startswith(("metrics/", "reports/")):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def _touched_by(root: Path, relative: str) -> set[str]:
    """Stage instances of the main pipeline whose code dependency ``relative`` differs from ``dvc.lock``
    (``dvc status dvc.yaml``; the regression benchmark has its own lock)."""
    done = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", "dvc.yaml"], cwd=root, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    touched = set()
    for stage, entries in json.loads(done.stdout or "{}").items():
        for entry in entries:
            if isinstance(entry, dict) and relative in entry.get("changed deps", {}):
                touched.add(stage.split(":")[-1])
    return touched


def _touched_by_an_edit(root: Path, relative: str) -> set[str]:
    """Stage instances ``dvc status`` reports changed once ``relative`` is edited (the file is restored
    after); first asserts that the committed lock matches the file as it is."""
    assert not _touched_by(root, relative), f"dvc.lock does not match {relative}: re-run the pipeline"
    path = root / relative
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    try:
        return _touched_by(root, relative)
    finally:
        path.write_text(original)


def _variants_of(root: Path, family: str) -> set[str]:
    params = yaml.safe_load((root / "params.yaml").read_text())
    return {name for name, v in params["variants"].items() if v["family"] == family}


@pytest.mark.parametrize("relative", ["musicdiff/evaluation/embeddings/musicnn.py",
                                      "musicdiff/evaluation/metrics/fad.py"])
def test_an_evaluation_only_edit_leaves_training_and_sampling_up_to_date(scratch, relative):
    touched = _touched_by_an_edit(scratch, relative)
    assert touched, f"no stage depends on {relative}: the check would pass vacuously"
    assert not {s for s in touched if s.startswith(("train@", "sample@", "vae@", "features@"))}, sorted(touched)


@pytest.mark.parametrize("family", ["dit", "waveform", "mel_text"])
def test_a_model_edit_touches_only_its_familys_training(scratch, family):
    relative = f"musicdiff/generation/models/{family}.py"
    touched = _touched_by_an_edit(scratch, relative)
    own = {f"train@{v}" for v in _variants_of(scratch, family)}
    assert own and own <= touched, (own, sorted(touched))
    others = {s for s in touched if s.startswith(("train@", "sample@")) and s not in own}
    assert not others, f"an edit of {relative} re-runs other families' stages: {sorted(others)}"
