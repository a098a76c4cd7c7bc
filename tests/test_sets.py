"""Tests of the set summaries (manifest.json), the online loaders and the shipped FMA-Pop statistics.

Real audio without network: the 23 ten-second clips of the fadtk wheel (fixture ``fadtk_clips``).
The online loaders are exercised offline: their fail-fast error, and the user-provided-folder path
on the fadtk clips renamed to fake YouTube ids.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from musicdiff.data import sources as S
from musicdiff.data import summary as M
from musicdiff.data.online import OnlineSourceError
from musicdiff.data.prepare import CLIP_COLUMNS, prepare_set

SR = 22050

DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fake

Files: *
Copyright: 2003 Someone
License: GPL-2+

Files: gfx/ore*
Copyright: phaelax
License: CC-BY-SA-3.0

Files: gfx/drone*
License: GPL-2+ or CC-BY-SA-3.0
Copyright: surt

License: GPL-2+
 This program is free software; ...
 .
 License: not-a-field (indented text of a licence)

License: CC-BY-SA-3.0
 Creative Commons ...
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture()
def clip_folder(tmp_path, fadtk_clips) -> Path:
    folder = tmp_path / "clips"
    folder.mkdir()
    for f in fadtk_clips[:8]:
        shutil.copyfile(f, folder / f.name)
    return folder


# ----------------------------------------------------------------------------------- licences


def test_licence_names_parses_machine_readable_copyright_and_refuses_to_guess_free_form(tmp_path):
    (tmp_path / "dep5").write_text(DEP5)
    names, star = M.licence_names(tmp_path / "dep5")
    assert names == ["GPL-2+", "CC-BY-SA-3.0", "GPL-2+ or CC-BY-SA-3.0"] and star == "GPL-2+"
    (tmp_path / "free").write_text("This package was debianized by someone.\n\nLicensed under the GPL.\n")
    assert M.licence_names(tmp_path / "free") == ([], None)
    (tmp_path / "licences" / "pkg").mkdir(parents=True)
    shutil.copyfile(tmp_path / "free", tmp_path / "licences/pkg/copyright")
    entry = M.licence_entry(tmp_path, "licences/pkg/copyright")
    assert entry["licences"] == "see licences/pkg/copyright"


# ----------------------------------------------------------------------------- set summaries


def test_raw_and_prepared_summaries_describe_real_audio(tmp_path, clip_folder):
    raw = tmp_path / "raw"
    man = S.download_set({"local": str(clip_folder), "include": ["*.opus"]}, raw, progress=False)
    summary = M.read_summary(raw)
    infos = [sf.info(str(raw / p)) for p in man["path"]]
    audio = summary["audio"]
    assert summary["kind"] == "raw" and summary["set"] == "raw" and summary["schema"] == M.SCHEMA
    assert audio["n_clips"] == len(man) == 8 and audio["n_unreadable"] == 0
    assert audio["sample_rate"] == 48000 and audio["sample_rates"] == {"48000": 8}
    assert audio["total_frames"] == sum(i.frames for i in infos)
    assert audio["total_s"] == pytest.approx(sum(i.duration for i in infos), abs=1e-5)
    assert audio["duration_s"]["min"] <= audio["duration_s"]["median"] <= audio["duration_s"]["max"]
    assert audio["duration_s"]["median"] == pytest.approx(10.0, abs=0.05)
    assert summary["table"] == {"path": "manifest.csv", "sha256": _sha(raw / "manifest.csv"), "rows": 8}
    assert summary["provenance"][0]["kind"] == "local" and summary["provenance"][0]["n_files"] == 8
    assert summary["licences"]["local"]["licences"] == "unknown (local folder)"

    # A download made before summaries existed gets one on its next (reused) call.
    (raw / M.SUMMARY_FILE).unlink()
    S.download_set({"local": str(clip_folder), "include": ["*.opus"]}, raw, progress=False)
    assert M.read_summary(raw) == summary

    out = tmp_path / "prepared"
    kw = dict(segment_s=3.0, heldout_fraction=0.25, max_segments_per_track=2, seed=0, progress=False)
    res = prepare_set(man, raw, out, **kw)
    assert sorted(p.name for p in out.iterdir()) == ["heldout", "manifest.csv", "train"]
    whole = pd.read_csv(out / "manifest.csv")
    for split in ("train", "heldout"):
        s = M.read_summary(out / split)
        rows = pd.read_csv(out / split / "clips.csv")
        assert list(rows.columns) == CLIP_COLUMNS
        pd.testing.assert_frame_equal(rows.reset_index(drop=True),
                                      whole[whole["split"] == split].reset_index(drop=True))
        assert s["kind"] == "prepared" and s["split"] == split and s["set"] == "prepared"
        assert s["table"] == {"path": "clips.csv", "sha256": _sha(out / split / "clips.csv"), "rows": len(rows)}
        assert s["audio"]["n_clips"] == len(rows) == res.splits[split]
        assert s["audio"]["sample_rate"] == SR and s["audio"]["channels"] == {"1": len(rows)}
        assert s["audio"]["total_frames"] == len(rows) * round(3.0 * SR)
        assert s["audio"]["duration_s"] == {"min": 3.0, "median": 3.0, "mean": 3.0, "max": 3.0}
        assert s["n_tracks"] == rows["track"].nunique()
        assert s["prepare"]["segment_s"] == 3.0 and s["prepare"]["sample_rate"] == SR
        assert s["source"]["raw_manifest_sha256"] == _sha(raw / "manifest.csv")
        assert s["provenance"][0]["n_clips"] == len(rows)
    # Same inputs, same bytes; and the split folders are what the embed stage reads (*.wav only).
    again = prepare_set(man, raw, tmp_path / "again", **kw)
    assert again.n_clips == res.n_clips
    for split in ("train", "heldout"):
        assert (tmp_path / "again" / split / "clips.csv").read_bytes() == (out / split / "clips.csv").read_bytes()
        a = M.read_summary(tmp_path / "again" / split)
        b = M.read_summary(out / split)
        assert {**a, "set": None} == {**b, "set": None}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_debian_summary_lists_packages_paths_and_licences(tmp_path, fadtk_clips):
    """raw_set_summary on a Debian-style set (built by hand: nothing is downloaded)."""
    set_dir = tmp_path / "band"
    (set_dir / "licences/pkg-a").mkdir(parents=True)
    (set_dir / "licences/pkg-a/copyright").write_text(DEP5)
    (set_dir / "licences/pkg-b").mkdir(parents=True)
    (set_dir / "licences/pkg-b/copyright").write_text("free-form text\n")
    rows = []
    for i, f in enumerate(fadtk_clips[:3]):
        pkg = "pkg-a" if i < 2 else "pkg-b"
        rel = f"audio/{pkg}/{f.name}"
        (set_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, set_dir / rel)
        pip = f"data/music.pk3!sound/{f.name}" if pkg == "pkg-a" else "songs/x/guitar.ogg;songs/x/song.ogg"
        rows.append({"path": rel, "sha256": _sha(f), "package": pkg, "package_version": "1.0",
                     "path_in_package": pip, "source_sha256": "a" * 64, "licence": f"licences/{pkg}/copyright",
                     "duration_s": 10.0, "sample_rate": 48000, "channels": 1})
    man = pd.DataFrame(rows, columns=S.MANIFEST_COLUMNS)
    man.to_csv(set_dir / "manifest.csv", index=False)
    spec = {"debian": [{"name": n, "version": "1.0", "sha256": "a" * 64, "include": ["**"], "exclude": [],
                        "archive_include": [], "archive_exclude": [], "sum_stems": n == "pkg-b"}
                       for n in ("pkg-a", "pkg-b")]}
    s = M.raw_set_summary(set_dir, spec, man)
    a, b = s["provenance"]
    assert (a["package"], a["version"], a["deb_sha256"], a["n_files"]) == ("pkg-a", "1.0", "a" * 64, 2)
    assert all("!sound/" in p for p in a["paths_in_package"])
    assert b["paths_in_package"] == ["songs/x/guitar.ogg", "songs/x/song.ogg"] and b["sum_stems"]
    assert s["licences"]["pkg-a"]["licences"] == ["GPL-2+", "CC-BY-SA-3.0", "GPL-2+ or CC-BY-SA-3.0"]
    assert s["licences"]["pkg-b"]["licences"] == "see licences/pkg-b/copyright"
    assert M.summary_tags(s)["licences"] == "GPL-2+; CC-BY-SA-3.0; GPL-2+ or CC-BY-SA-3.0; see licences/pkg-b/copyright"
    path = M.write_summary(set_dir / M.SUMMARY_FILE, s)
    assert json.loads(path.read_text()) == s


def test_download_and_prepare_stages_log_the_summary_to_mlflow(tmp_path, clip_folder, mlflow_store, monkeypatch,
                                                               capsys):
    import mlflow

    import pipelines.common as common
    import pipelines.download as download
    import pipelines.prepare as prepare

    params = {"seed": 0, "audio": {"sample_rate": SR}, "datasets": {"mine": {
        "source": {"local": str(clip_folder), "include": ["*.opus"]},
        "prepare": {"segment_s": 3.72, "max_segments_per_track": 2, "max_clips": 10}}}}
    for mod in (common, download, prepare):
        monkeypatch.setattr(mod, "ROOT", tmp_path, raising=False)
    for mod in (download, prepare):
        monkeypatch.setattr(mod, "load_params", lambda: params)
    monkeypatch.setattr(sys, "argv", ["x", "--dataset", "mine"])
    monkeypatch.chdir(tmp_path)
    (clip_folder / "zz_gone.opus").symlink_to(clip_folder / "missing.opus")  # matches, but dangles
    download.main()
    assert "skipped zz_gone.opus: dangling_link (link to " in capsys.readouterr().err
    prepare.main()

    mlflow.set_tracking_uri(mlflow_store)
    runs = {r.data.tags["mlflow.runName"]: r for r in mlflow.search_runs(search_all_experiments=True,
                                                                          output_format="list")}
    dl, prep = runs["download@mine"].data, runs["prepare@mine"].data
    raw = M.read_summary(tmp_path / "data/raw/mine")
    assert dl.metrics["clips"] == 8 and dl.metrics["total_frames"] == raw["audio"]["total_frames"]
    assert dl.metrics["sample_rate"] == 48000
    assert dl.metrics["skipped_files"] == 1 and dl.metrics["skipped/dangling_link"] == 1
    assert dl.metrics["skipped/no_permission"] == dl.metrics["skipped/not_a_file"] == 0
    assert raw["skipped"] == {"dangling_link": 1} and raw["skipped_files"][0]["path"] == "zz_gone.opus"
    assert dl.metrics["duration_median_s"] == raw["audio"]["duration_s"]["median"]
    assert dl.tags["table_sha256"] == raw["table"]["sha256"]
    ref = M.read_summary(tmp_path / "data/prepared/mine/ref")
    assert prep.metrics["clips_ref"] == ref["audio"]["n_clips"] == 10
    assert prep.metrics["total_frames_ref"] == 10 * round(3.72 * SR)
    assert prep.tags["table_sha256_ref"] == ref["table"]["sha256"]
    record = json.loads((tmp_path / "metrics/prepare/mine.json").read_text())
    assert record["metrics"]["duration_max_s_ref"] == pytest.approx(3.72, abs=1e-4)


# ------------------------------------------------------------------------------ online sets


def test_offline_hub_set_fails_fast_naming_the_set_its_url_and_the_folder_option(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from musicdiff.data import online as O

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the hub client read the variable at import
    t0 = time.perf_counter()
    with pytest.raises(O.OnlineSourceError) as err:
        S.download_set({"online": "tiny-audio-diffusion-drums"}, tmp_path / "drums", cache_dir=tmp_path / "cache",
                       progress=False)
    assert time.perf_counter() - t0 < 5.0
    msg = str(err.value)
    assert "tiny-audio-diffusion-drums" in msg
    assert "https://huggingface.co/datasets/crlandsc/tiny-audio-diffusion-drums" in msg
    assert "folder:" in msg and "HF_HUB_OFFLINE" in msg
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_unreachable_hosts_fail_fast_without_the_hub_clients_retries(tmp_path, monkeypatch):
    """No network at all (not just HF_HUB_OFFLINE): one probe per host, then a clear error."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    from musicdiff.data import online as O
    from musicdiff.data import online_loaders as L

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls = []

    def no_network(req, timeout=None):
        calls.append((getattr(req, "full_url", req), timeout))
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    t0 = time.perf_counter()
    with pytest.raises(O.OnlineSourceError, match=r"(?s)Song Describer.*zenodo\.org/records/10072001.*folder"):
        L.fetch_online({"online": "song-describer", "timeout_s": 3}, tmp_path / "w1")
    with pytest.raises(O.OnlineSourceError, match=r"(?s)tiny-audio-diffusion-drums.*unreachable.*folder"):
        L.fetch_online({"online": "tiny-audio-diffusion-drums", "timeout_s": 3}, tmp_path / "w2", tmp_path / "cache")
    with pytest.raises(O.OnlineSourceError, match=r"(?s)MusicCaps.*YouTube.*<ytid>"):
        L.fetch_online({"online": "musiccaps"}, tmp_path / "w3")
    assert time.perf_counter() - t0 < 5.0
    assert len(calls) == 2 and all(t == 3 for _, t in calls)
    with pytest.raises(ValueError, match="known"):
        L.fetch_online({"online": "fma-full"}, tmp_path / "w4")
    with pytest.raises(ValueError, match="unknown keys"):
        L.fetch_online({"online": "musiccaps", "folder": str(tmp_path), "clip": True}, tmp_path / "w5")


def _fake_ytid(i: int) -> str:
    return f"{'aB3-_x'[i % 6]}{i:02d}Zz9_q-Q"[:11]


def test_musiccaps_matches_user_clips_by_ytid_and_cuts_whole_videos(tmp_path, fadtk_clips):
    folder = tmp_path / "youtube"
    folder.mkdir()
    rows = []
    for i, f in enumerate(fadtk_clips[:5]):  # five clipped segments, renamed to fake YouTube ids
        ytid = _fake_ytid(i)
        shutil.copyfile(f, folder / f"{ytid}.opus")
        rows.append({"ytid": ytid, "start_s": 30 + i, "end_s": 40 + i, "caption": f"clip {i}",
                     "is_balanced_subset": i % 2 == 0, "is_audioset_eval": False})
    # One whole "video" (30 s of real music) whose captioned segment is [10, 20).
    a, sr = sf.read(str(fadtk_clips[5]), dtype="float32")
    b, _ = sf.read(str(fadtk_clips[6]), dtype="float32")
    c, _ = sf.read(str(fadtk_clips[7]), dtype="float32")
    video = np.concatenate([x if x.ndim == 1 else x.mean(axis=1) for x in (a, b, c)])
    sf.write(folder / "wholeVideo1.wav", video, sr, subtype="FLOAT")
    rows.append({"ytid": "wholeVideo1", "start_s": 10, "end_s": 20, "caption": "whole",
                 "is_balanced_subset": True, "is_audioset_eval": True})
    rows.append({"ytid": "goneFromYT0", "start_s": 0, "end_s": 10, "caption": "missing",
                 "is_balanced_subset": True, "is_audioset_eval": False})
    pd.DataFrame(rows).to_csv(tmp_path / "musiccaps-public.csv", index=False)

    spec = {"online": "musiccaps", "folder": str(folder), "csv": str(tmp_path / "musiccaps-public.csv")}
    raw = tmp_path / "raw"
    man = S.download_set(spec, raw, progress=False)
    assert len(man) == 6 and set(man["package"]) == {"musiccaps"}
    assert set(man["licence"]) == {"licences/musiccaps/LICENCE"}
    whole = man[man["path"].str.contains("wholeVideo1")].iloc[0]
    assert whole["path"] == "audio/musiccaps/wholeVideo1.flac"
    assert whole["path_in_package"] == "wholeVideo1@10-20:wholeVideo1.wav"
    cut, cut_sr = sf.read(str(raw / whole["path"]), dtype="float32")
    assert cut_sr == sr and len(cut) == 10 * sr
    np.testing.assert_allclose(cut, b if b.ndim == 1 else b.mean(axis=1), atol=2 ** -22)  # 24-bit FLAC
    for i in range(5):
        row = man[man["path"] == f"audio/musiccaps/{_fake_ytid(i)}.opus"].iloc[0]
        assert row["sha256"] == _sha(fadtk_clips[i])  # clipped files are copied as they are
    summary = M.read_summary(raw)
    prov = summary["provenance"][0]
    assert prov["kind"] == "online" and prov["url"] == "https://huggingface.co/datasets/google/MusicCaps"
    assert (prov["n_listed"], prov["n_matched"], prov["n_missing"], prov["n_cut"]) == (7, 6, 1, 1)
    assert prov["csv_sha256"] == _sha(tmp_path / "musiccaps-public.csv")
    assert summary["licences"]["musiccaps"]["licences"].startswith("CC-BY-SA-4.0")
    assert summary["audio"]["n_clips"] == 6
    assert (raw / "metadata/musiccaps/musiccaps-public.csv").is_file()

    res = prepare_set(man, raw, tmp_path / "prepared", segment_s=5.0, progress=False)
    assert res.n_tracks == 6 and res.n_clips == 12
    ref = M.read_summary(tmp_path / "prepared" / "ref")
    assert ref["provenance"][0]["package"] == "musiccaps" and ref["provenance"][0]["n_clips"] == 12

    balanced = S.download_set({**spec, "subset": "balanced"}, tmp_path / "balanced", progress=False)
    assert len(balanced) == 4  # clips 0, 2, 4 and the whole video; the missing one is counted only
    pd.DataFrame([{"ytid": "notThere000", "start_s": 0, "end_s": 10}]).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(OnlineSourceError, match="none of the 1 videos"):
        S.download_set({**spec, "csv": str(tmp_path / "x.csv")}, tmp_path / "none", progress=False)


def test_song_describer_and_drums_from_user_folders(tmp_path, fadtk_clips):
    sdd = tmp_path / "sdd"
    paths = []
    for i, f in enumerate(fadtk_clips[:4]):
        rel = f"{i:02d}/{1000 + i}.2min.opus"
        (sdd / "audio" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, sdd / "audio" / rel)
        paths.append(rel)
    captions = pd.DataFrame({"caption_id": range(6), "track_id": [1000, 1000, 1001, 1002, 1003, 1009],
                             "caption": list("abcdef"), "is_valid_subset": [True, False, True, False, True, True],
                             "path": paths[:1] * 2 + paths[1:] + ["09/1009.2min.mp3"]})
    captions.to_csv(sdd / "song_describer.csv", index=False)
    man = S.download_set({"online": "song-describer", "folder": str(sdd)}, tmp_path / "raw_sdd", progress=False)
    assert list(man["path"]) == [f"audio/song-describer/{p}" for p in paths]
    assert list(man["path_in_package"]) == [f"audio/{p}" for p in paths]
    prov = M.read_summary(tmp_path / "raw_sdd")["provenance"][0]
    assert (prov["n_listed"], prov["n_matched"], prov["n_missing"]) == (5, 4, 1)
    assert prov["missing"] == ["09/1009.2min.mp3"]
    valid = S.download_set({"online": "song-describer", "folder": str(sdd), "valid_only": True},
                           tmp_path / "raw_valid", progress=False)
    assert len(valid) == 3

    # The same recordings zipped (as Zenodo serves them) are taken out of audio.zip.
    zipped = tmp_path / "sdd_zip"
    zipped.mkdir()
    shutil.copyfile(sdd / "song_describer.csv", zipped / "song_describer.csv")
    shutil.make_archive(str(zipped / "audio"), "zip", root_dir=sdd, base_dir="audio")
    man_zip = S.download_set({"online": "song-describer", "folder": str(zipped)}, tmp_path / "raw_zip",
                             progress=False)
    assert list(man_zip["sha256"]) == list(man["sha256"])
    assert set(man_zip["source_sha256"]) == {_sha(zipped / "audio.zip")}
    assert man_zip["path_in_package"].str.startswith("audio.zip!audio/").all()

    drums = tmp_path / "drums"
    for kind in ("kicks", "snares"):
        (drums / kind).mkdir(parents=True)
        for j in range(2):
            sf.write(drums / kind / f"{kind}_{j:03d}.wav", np.sin(np.arange(4410) * (j + 1) / 10.0) * 0.5, 44100)
    man_d = S.download_set({"online": "tiny-audio-diffusion-drums", "folder": str(drums)}, tmp_path / "raw_drums",
                           progress=False)
    assert list(man_d["path"]) == [f"audio/tiny-audio-diffusion-drums/{k}/{k}_{j:03d}.wav"
                                   for k in ("kicks", "snares") for j in range(2)]
    summary = M.read_summary(tmp_path / "raw_drums")
    assert summary["licences"]["tiny-audio-diffusion-drums"]["licences"] == "CC-BY-NC-4.0"
    assert summary["audio"]["duration_s"]["max"] == pytest.approx(0.1)


# ------------------------------------------------------------------ FMA-Pop statistics (fadtk)


def test_fma_pop_statistics_are_float64_gaussians_and_name_what_they_cover():
    from musicdiff.data import reference_stats as R
    from musicdiff.evaluation.metrics.fad import fad_score

    covered = R.fma_pop_embeddings()
    assert {"vggish", "clap-laion-audio", "clap-laion-music"} <= set(covered)
    for name, dim in (("vggish", 128), ("clap-laion-audio", 512), ("clap-laion-music", 512)):
        s = R.fma_pop_stats(name)
        assert s.mu.shape == (dim,) and s.cov.shape == (dim, dim) and s.n == 0
        assert s.mu.dtype == s.cov.dtype == np.float64
        np.testing.assert_array_equal(s.cov, s.cov.T)
        eig = np.linalg.eigvalsh(s.cov)
        assert eig.min() >= -1e-10 * eig.max() and eig.max() > 0  # positive semi-definite
    with pytest.raises(KeyError, match=r"musicnn.*cover: .*clap-laion-audio.*vggish"):
        R.fma_pop_stats("musicnn")

    manifest = R.fma_pop_manifest()
    assert manifest["provenance"]["sha256"] == _sha(R.fma_pop_path())
    assert manifest["provenance"]["matches_wheel_record"] and manifest["provenance"]["package"] == "fadtk"
    assert manifest["licences"]["fadtk"]["licences"] == ["MIT"] and manifest["n_frames"] is None
    assert manifest["embeddings"]["vggish"] == {"dim": 128} and set(manifest["embeddings"]) == set(covered)
    assert "kad" in manifest["metrics"]["impossible"]
    json.dumps(manifest)

    # Usable as a FAD reference: evaluation embeddings drawn from the same Gaussian score near 0.
    s = R.fma_pop_stats("vggish")
    rng = np.random.default_rng(0)
    frames = rng.multivariate_normal(s.mu, s.cov, size=4000)
    clips = np.split(frames, 40)
    far = [c + 1.0 for c in clips]
    near, shifted = fad_score(s, clips, n_bootstrap=0), fad_score(s, far, n_bootstrap=0)
    assert near.n_ref == 0 and near.fad < 0.05 * shifted.fad


# ------------------------------------------------------------- rendered Bach chorales (pip only)


def test_trim_midi_drops_events_after_the_last_note():
    mido = pytest.importorskip("mido")
    from musicdiff.data.rendered import trim_midi

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=80, time=0),
                            mido.Message("note_off", note=60, velocity=0, time=480),
                            mido.MetaMessage("marker", text="late", time=480 * 200)])
    mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    assert mido.MidiFile(file=io.BytesIO(buf.getvalue())).length > 100
    trimmed = mido.MidiFile(file=io.BytesIO(trim_midi(buf.getvalue(), tail_beats=1.0)))
    assert [m.type for m in trimmed.tracks[0]] == ["note_on", "note_off", "end_of_track"]
    assert trimmed.length == pytest.approx(1.0)  # two beats at 120 bpm


def test_rendered_bach_chorales_go_through_download_and_prepare(tmp_path):
    for name in ("music21", "pretty_midi", "midirenderer"):
        pytest.importorskip(name)
    raw = tmp_path / "raw"
    man = S.download_set({"rendered": "bach-chorales", "limit": 2}, raw, progress=False)
    assert list(man["path"]) == ["audio/bach-chorales/bwv1.6.flac", "audio/bach-chorales/bwv10.7.flac"]
    assert list(man["path_in_package"]) == ["corpus/bach/bwv1.6.mxl", "corpus/bach/bwv10.7.mxl"]
    assert (man["sample_rate"] == 48000).all() and (man["channels"] == 2).all()
    assert man["duration_s"].between(20, 120).all()  # ends with the music, not with stray MIDI events
    summary = M.read_summary(raw)
    prov = summary["provenance"][0]
    assert prov["kind"] == "rendered" and prov["versions"]["midirenderer"] and prov["n_scores"] == 2
    assert prov["soundfont"]["path_in_package"] == "pretty_midi/TimGM6mb.sf2"
    assert (raw / "licences/bach-chorales/music21-corpus-license.txt").is_file()
    x, _ = sf.read(str(raw / man["path"][0]))
    assert 0.01 < np.abs(x).max() < 1.0
    res = prepare_set(man, raw, tmp_path / "prepared", segment_s=3.72, max_segments_per_track=3, progress=False)
    assert res.n_clips == 6 and M.read_summary(tmp_path / "prepared" / "ref")["provenance"][0]["n_tracks"] == 2
    # Rendering is deterministic: a second download gives the same bytes.
    again = S.download_set({"rendered": "bach-chorales", "limit": 2}, tmp_path / "again", progress=False)
    assert list(again["sha256"]) == list(man["sha256"])
