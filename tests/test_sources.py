"""Tests of musicdiff.data.sources: unusable entries of a walked folder are skipped with their reason,
and source kinds come from a registry (a new kind is one registration)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from musicdiff.data import sources as S
from musicdiff.data.sources.files import SKIPPED_COLUMNS, Item

SR = 22050
TONE = (0.1 * np.sin(2 * np.pi * 440 * np.arange(SR // 2) / SR)).astype(np.float32)


def _lock(path: Path, monkeypatch) -> None:
    """Make ``path`` unreadable: mode 000, and where that does not stop reading (root), a copy of it
    that fails as a real one would."""
    path.chmod(0)
    try:
        path.open("rb").close()
    except PermissionError:
        return
    real_copy = shutil.copyfile

    def copyfile(src, dst, *args, **kw):
        if Path(src) == path:
            raise PermissionError(13, "Permission denied", str(src))
        return real_copy(src, dst, *args, **kw)

    monkeypatch.setattr(shutil, "copyfile", copyfile)


@pytest.fixture()
def hostile_folder(tmp_path, monkeypatch) -> Path:
    """One good WAV (and a link to it inside the folder) among entries that match ``*.wav`` but
    cannot be used."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "good.wav", TONE, SR)
    (folder / "sub" / "alias.wav").symlink_to("../good.wav")  # a link inside the folder: used
    (folder / "gone.wav").symlink_to(folder / "missing.wav")
    (folder / "dir.wav").mkdir()
    sf.write(tmp_path / "outside.wav", TONE, SR)
    (folder / "out.wav").symlink_to(tmp_path / "outside.wav")
    sf.write(folder / "locked.wav", TONE, SR)
    _lock(folder / "locked.wav", monkeypatch)
    yield folder
    (folder / "locked.wav").chmod(0o644)


EXPECTED_SKIPS = [("dir.wav", "not_a_file"), ("gone.wav", "dangling_link"), ("locked.wav", "no_permission"),
                  ("out.wav", "link_outside")]


def test_unusable_entries_of_a_local_folder_are_skipped_with_their_reason(tmp_path, hostile_folder):
    out = tmp_path / "set"
    spec = {"local": str(hostile_folder), "include": ["**/*.wav"]}
    df = S.download_set(spec, out, progress=False)
    assert list(df["path"]) == ["audio/good.wav", "audio/sub/alias.wav"]
    assert list(df["path_in_package"]) == ["good.wav", "sub/alias.wav"]
    assert sorted(p.relative_to(out).as_posix() for p in (out / "audio").rglob("*")) == [
        "audio/good.wav", "audio/sub", "audio/sub/alias.wav"]  # nothing left of the skipped ones

    skipped = df.attrs["skipped"]
    assert [(r["path"], r["reason"]) for r in skipped] == EXPECTED_SKIPS
    details = {r["path"]: r["detail"] for r in skipped}
    assert details["gone.wav"].endswith("missing.wav, which does not exist")
    assert details["out.wav"].endswith("outside.wav, outside the folder")
    assert details["dir.wav"] == "a directory" and details["locked.wav"] == "Permission denied"
    assert str(out) not in json.dumps(skipped)  # no path of the output side

    table = pd.read_csv(out / "skipped.csv", dtype=str, keep_default_na=False)
    assert list(table.columns) == SKIPPED_COLUMNS
    assert table.to_dict("records") == skipped
    summary = json.loads((out / "manifest.json").read_text())
    assert summary["skipped"] == {"dangling_link": 1, "link_outside": 1, "no_permission": 1, "not_a_file": 1}
    assert summary["skipped_files"] == skipped
    assert summary["audio"]["n_clips"] == 2
    assert S.skip_counts(skipped) == {reason: 1 for reason in S.SKIP_REASONS}

    # A reused download reads its skips back.
    again = S.download_set(spec, out, progress=False)
    assert again.attrs["skipped"] == skipped and again.attrs["timings"] == {}
    pd.testing.assert_frame_equal(df, again)


def test_folders_that_hold_matches_are_walked_not_reported(tmp_path, hostile_folder):
    (hostile_folder / "empty").mkdir()
    df = S.download_set({"local": str(hostile_folder)}, tmp_path / "set", progress=False)  # include **/*
    reported = {(r["path"], r["reason"]) for r in df.attrs["skipped"]}
    assert reported == {*EXPECTED_SKIPS, ("empty", "not_a_file")}  # not "sub"
    assert (tmp_path / "set" / "skipped.csv").is_file()
    clean = tmp_path / "clean"
    clean.mkdir()
    sf.write(clean / "a.wav", TONE, SR)
    df = S.download_set({"local": str(clean)}, tmp_path / "clean_set", progress=False)
    assert df.attrs["skipped"] == []
    assert (tmp_path / "clean_set" / "skipped.csv").read_text() == "path,reason,detail\n"
    assert json.loads((tmp_path / "clean_set" / "manifest.json").read_text())["skipped"] == {}


def test_a_folder_with_nothing_usable_names_each_skipped_entry(tmp_path, hostile_folder):
    for name in ("good.wav", "sub/alias.wav"):
        (hostile_folder / name).unlink()
    with pytest.raises(RuntimeError, match="no file matches") as err:
        S.download_set({"local": str(hostile_folder), "include": ["*.wav"]}, tmp_path / "set", progress=False)
    msg = str(err.value)
    for path, reason in EXPECTED_SKIPS:
        assert f"{path}: {reason} (" in msg
    assert not (tmp_path / "set").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".set")]

    many = tmp_path / "many"
    many.mkdir()
    for i in range(25):
        (many / f"gone{i:02d}.wav").symlink_to(many / f"missing{i:02d}.wav")
    with pytest.raises(RuntimeError) as err:
        S.download_set({"local": str(many), "include": ["*.wav"]}, tmp_path / "many_set", progress=False)
    msg = str(err.value)
    assert "25 matching entries skipped" in msg and msg.count(": dangling_link (") == 20
    assert "gone19.wav" in msg and "gone20.wav" not in msg and msg.endswith("... and 5 more")


def test_unusable_files_of_a_python_package_are_skipped_with_their_reason(tmp_path, monkeypatch):
    site = tmp_path / "site"
    samples = site / "fakeaudiopkg" / "samples"
    samples.mkdir(parents=True)
    (site / "fakeaudiopkg" / "__init__.py").write_text("")
    dist = site / "fakeaudiopkg-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeaudiopkg\nVersion: 1.2\nLicense: MIT\n")
    sf.write(samples / "a.wav", TONE, SR)
    (samples / "gone.wav").symlink_to(samples / "missing.wav")
    sf.write(samples / "locked.wav", TONE, SR)
    _lock(samples / "locked.wav", monkeypatch)
    monkeypatch.syspath_prepend(str(site))
    df = S.download_set({"python_package": "fakeaudiopkg", "path": "samples", "include": ["*.wav"]},
                        tmp_path / "set", progress=False)
    (samples / "locked.wav").chmod(0o644)
    assert list(df["path"]) == ["audio/fakeaudiopkg/a.wav"] and list(df["package_version"]) == ["1.2"]
    assert [(r["path"], r["reason"]) for r in df.attrs["skipped"]] == [
        ("fakeaudiopkg/gone.wav", "dangling_link"), ("fakeaudiopkg/locked.wav", "no_permission")]
    summary = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert summary["skipped"] == {"dangling_link": 1, "no_permission": 1}


# ----------------------------------------------------------------------------------- registry


def _fake_normalise(spec: dict) -> dict:
    extra = set(spec) - {"fake", "n"}
    if extra:
        raise ValueError(f"fake: unexpected keys {sorted(extra)}")
    return {"fake": str(spec["fake"]), "n": int(spec.get("n", 2))}


def _fake_build(norm: dict, tmp_out: Path, ctx: S.BuildContext) -> list[Item]:
    items = []
    for i in range(norm["n"]):
        dest = f"audio/{norm['fake']}/tone{i}.wav"
        (tmp_out / dest).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_out / dest, TONE * (i + 1) / norm["n"], SR)
        items.append(Item(dest, norm["fake"], "0.1", f"tone{i}", "", ""))
    ctx.skip(f"{norm['fake']}/noise.wav", "no_permission", "the fake kind reports one skip")
    return items


@pytest.fixture()
def fake_kind():
    kind = S.register(S.SourceKind("fake", _fake_normalise, _fake_build))
    yield kind
    S.unregister("fake")


def test_a_registered_source_kind_downloads_like_the_built_in_ones(tmp_path, fake_kind):
    out = tmp_path / "set"
    df = S.download_set({"fake": "tones", "n": 3}, out, progress=False)
    assert list(df.columns) == S.MANIFEST_COLUMNS
    assert list(df["path"]) == [f"audio/tones/tone{i}.wav" for i in range(3)]
    assert (df["sample_rate"] == SR).all()
    assert df.attrs["skipped"] == [{"path": "tones/noise.wav", "reason": "no_permission",
                                    "detail": "the fake kind reports one skip"}]
    assert json.loads((out / ".download.json").read_text())["spec"] == {"fake": "tones", "n": 3}
    summary = json.loads((out / "manifest.json").read_text())
    assert summary["provenance"][0]["kind"] == "fake" and summary["audio"]["n_clips"] == 3
    assert summary["skipped"] == {"no_permission": 1}
    assert "fake" in S.known_kinds()
    with pytest.raises(ValueError, match="already registered"):
        S.register(S.SourceKind("fake", _fake_normalise, _fake_build))


def test_a_spec_without_a_known_kind_names_the_known_kinds(tmp_path):
    with pytest.raises(ValueError) as err:
        S.download_set({"fake": "tones"}, tmp_path / "set", progress=False)
    msg = str(err.value)
    for key in ("debian", "local", "online", "rendered", "python_package"):
        assert repr(key) in msg
    assert "['fake']" in msg and not os.path.exists(tmp_path / "set")
