"""Shared test setup: real audio that ships with an installed package, and a private MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest


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
