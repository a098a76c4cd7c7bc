"""Shared test setup: real audio that ships with an installed package, a private MLflow store, and the
threads of a parallel run.

The README's test command runs the suite in two pytest-xdist workers (``-n 2 --dist loadfile``: a
file's tests stay in one worker, so its module fixtures are built once). Two workers on two cores must
not each start two math threads (oversubscribed, a torch step slowed more than tenfold here), so every
worker, and every stage process it starts, runs one intra-op thread. The end-to-end files go first, so
that the longest one starts at once and the other worker takes the rest beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # before torch is imported anywhere in this process
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = "1"

FIRST = ("test_pipeline.py", "test_regress.py")  # the longest files, started first


def pytest_collection_modifyitems(config, items):
    """Order the collected tests so that the files in ``FIRST`` come first (in that order)."""
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(FIRST)))


@pytest.fixture(scope="session")
def fadtk_clips() -> list[Path]:
    """The 23 ten-second music clips (MusicGen, MusicLM, Mubert; MIT) shipped in the fadtk wheel."""
    import fadtk

    clips = sorted((Path(fadtk.__file__).parent / "test" / "samples").glob("*.opus"))
    assert len(clips) >= 20, "the fadtk wheel should ship its test clips"
    return clips


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch) -> str:
    """Point MLflow at a fresh sqlite store in the test's temporary folder."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture()
def weights_env(tmp_path, monkeypatch) -> dict:
    """Empty ``$MUSICDIFF_WEIGHTS``, torch hub and Hugging Face caches in the test's temporary folder;
    the package folders searched for checkpoints (fadtk's, laion_clap's) point there too."""
    import musicdiff.weights.verify

    paths = {"MUSICDIFF_WEIGHTS": tmp_path / "weights", "TORCH_HOME": tmp_path / "torch", "HF_HOME": tmp_path / "hf"}
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    for var, path in paths.items():
        monkeypatch.setenv(var, str(path))
    monkeypatch.setattr(musicdiff.weights.verify, "_package_dir", lambda name: tmp_path / "packages" / name)
    return paths
