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
