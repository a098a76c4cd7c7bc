"""One bad-input policy at every entry point that reads audio (musicdiff.data.screening): a folder of
hostile files (tests/hostile.py) goes through the policy itself, prepare, embedding sets and
``musicdiff fad``; every file is used or skipped with its reason, skips name the file, a set that
loses more than max_skip_fraction stops before anything is embedded, and nothing ends in a traceback.
(The creative tools' test is in test_creative.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hostile import SR, _music, make_hostile_folder
from musicdiff.data.audio import BadAudioError
from musicdiff.data.screening import (CONTENT_REASONS, InputPolicy, Skip, TooManySkippedError, UnexpectedInputError,
                                      find_audio_files, screen_file)
from musicdiff.evaluation.protocol import EvaluationProtocol

PROTOCOL = EvaluationProtocol(0.73, SR)


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    folder = tmp_path / "hostile"
    expected = make_hostile_folder(folder)
    if os.geteuid() == 0:  # root reads a mode-000 file: make this user unable to, as any other user is
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p).name == "locked.wav"
                            else real_access(p, mode, **kw))
        expected["locked.wav"] = ("no_permission", ())
    return folder, expected


def _outcomes(skips, used) -> dict:
    out = {Path(s.path).name: (s.reason, ()) for s in skips}
    out.update({Path(p).name: ("used", tuple(flags)) for p, flags in used})
    return out


def test_the_policy_uses_or_skips_every_hostile_file_with_its_reason(hostile):
    folder, expected = hostile
    files, skips = find_audio_files(folder)
    used = []
    for f in files:
        try:
            used.append((f, screen_file(f, SR, InputPolicy(), min_duration_s=0.73).flags))
        except BadAudioError as error:
            assert error.path == str(f) and error.detail  # the skip names the file and says why
            skips.append(Skip(str(f), error.reason, error.detail))
    assert _outcomes(skips, used) == expected


def test_an_evaluated_set_keeps_silent_dc_and_over_range_files_as_flags(hostile):
    folder, expected = hostile
    for name, (outcome, _) in expected.items():
        if outcome in CONTENT_REASONS:
            screened = screen_file(folder / name, SR, InputPolicy(), min_duration_s=0.73, evaluated=True)
            assert outcome in screened.flags and np.isfinite(screened.audio).all()


def test_a_used_file_gives_the_same_samples_as_load_audio(tmp_path):
    from musicdiff.data.audio import load_audio

    path = tmp_path / "stereo-44k.wav"
    sf.write(path, _music(2.0, sr=44100, seed=3, channels=2), 44100, subtype="FLOAT")
    screened = screen_file(path, SR)
    np.testing.assert_array_equal(screened.audio, load_audio(path, SR))
    assert screened.source_sample_rate == 44100 and screened.channels == 2 and screened.band_limit_hz == 22050


def test_an_unknown_exception_stops_naming_the_file_instead_of_a_skip(tmp_path, monkeypatch):
    path = tmp_path / "fine.wav"
    sf.write(path, _music(1.0), SR)

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug in a decoder")

    monkeypatch.setattr(sf, "read", broken)
    with pytest.raises(UnexpectedInputError, match=r"fine\.wav: unexpected ZeroDivisionError"):
        screen_file(path, SR)


class _CountingEmbedding:
    """logmel-stats that counts its calls."""

    def __init__(self):
        from musicdiff.evaluation.embeddings.registry import get_embedding

        self.inner, self.calls = get_embedding("logmel-stats"), 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed(self, audio):
        self.calls += 1
        return self.inner.embed(audio)


def test_an_embedding_set_lists_what_it_skipped_and_refuses_a_set_that_lost_too_much(hostile):
    from musicdiff.evaluation.engine import embed_files, screen_files

    folder, expected = hostile
    files, listing = find_audio_files(folder)
    embedding = _CountingEmbedding()
    screened = screen_files(files, PROTOCOL, "hostile", listing_skips=listing)
    with pytest.raises(TooManySkippedError, match=r"hostile: 17 of 24 files skipped(.|\n)*nan\.wav: non_finite"):
        embed_files(embedding, files, PROTOCOL, "hostile", screened=screened, progress=False)
    assert embedding.calls == 0  # refused before anything was embedded

    embedded = embed_files(embedding, files, PROTOCOL, "hostile", policy=InputPolicy(max_skip_fraction=1.0),
                           screened=screened, progress=False)
    inputs = embedded.extra["inputs"]
    got = {Path(s["path"]).name: s["reason"] for s in inputs["skipped"]}
    assert got == {k: v[0] for k, v in expected.items() if v[0] != "used"}
    used = sorted(k for k, v in expected.items() if v[0] == "used")
    assert sorted({Path(n.split("#")[0]).name for n in embedded.names}) == used
    assert embedded.files == len(used) and inputs["total"] == len(expected)
    assert inputs["flags"] == {"band_limited": 0, "multichannel": 1, "over_full_scale": 1, "dc_offset": 1, "clipped": 1,
                               "silent": 0, "dc_only": 0, "over_range": 0}
    assert all(np.isfinite(c).all() for c in embedded.clips)


def _fad(args, capsys):
    from musicdiff.cli.main import main

    code = main(["fad", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _defaults(tmp_path: Path) -> Path:
    """An empty params file: every default of ``musicdiff fad`` (no reference sets, no inputs section)."""
    path = tmp_path / "empty-params.yaml"
    path.write_text("")
    return path


def _ref_folder(folder: Path, n: int = 8, seed: int = 100) -> Path:
    folder.mkdir()
    for i in range(n):
        sf.write(folder / f"r{i}.wav", _music(3.0, seed=seed + i), SR)
    return folder


def test_musicdiff_fad_checks_every_folder_before_embedding_and_lists_the_skipped_files(hostile, tmp_path, capsys):
    folder, expected = hostile
    ref = _ref_folder(tmp_path / "ref")
    cache = tmp_path / "cache"
    common = ["--embedding", "logmel-stats", "--params", _defaults(tmp_path), "--cache", cache]
    # the hostile folder as the *reference*: refused before the evaluated folder is embedded
    code, out, err = _fad([folder, ref, *common], capsys)
    assert code == 2 and "max_skip_fraction" in err and "dangling.wav: dangling_link" in err
    assert not cache.exists()

    code, out, err = _fad([ref, folder, *common, "--max-skip-fraction", "1", "--format", "json"], capsys)
    assert code == 0
    result = json.loads(out)
    inputs = result["inputs"]["hostile"]
    skipped = {Path(s["path"]).name: s["reason"] for s in inputs["skipped"]}
    # the evaluated folder is judged on what it holds: silence, DC and over-range are scored and flagged
    content = {k for k, v in expected.items() if v[0] in CONTENT_REASONS}
    assert content == {"silence.wav", "quiet -61dBFS.wav", "dc-only.wav", "peak-1e6.wav", "anti-phase.wav"}
    assert skipped == {k: v[0] for k, v in expected.items() if v[0] not in ("used", *CONTENT_REASONS)}
    assert inputs["flags"]["silent"] == 3 and inputs["flags"]["dc_only"] == 1 and inputs["flags"]["over_range"] == 1
    assert "nan.wav: non_finite" in err  # each skip on stderr too
    (row,) = result["rows"]
    used = sum(v[0] in ("used", *CONTENT_REASONS) for v in expected.values())
    assert row["reference"] == "ref" and np.isfinite(row["fad"]) and row["n_clips"] == used * 2  # 2 s: 2 clips each


def test_musicdiff_fad_scores_against_several_references_in_every_format(tmp_path, capsys):
    import pandas as pd

    ref_a, ref_b = _ref_folder(tmp_path / "a"), _ref_folder(tmp_path / "b", seed=300)
    evaluated = _ref_folder(tmp_path / "eval", n=6, seed=500)
    out_csv = tmp_path / "out" / "fad.csv"
    common = ["--embedding", "logmel-stats", "--params", _defaults(tmp_path)]
    code, _, _ = _fad([ref_a, ref_b, "fma-pop", evaluated, *common, "--format", "csv", "--out", out_csv], capsys)
    assert code == 2  # fma-pop is not a reference set here: no params file names it

    code, _, err = _fad([ref_a, ref_b, "fadtk/fma_pop", evaluated, *common, "--format", "csv", "--out", out_csv],
                        capsys)
    assert code == 0 and "no shipped statistics for logmel-stats" in err  # FMA-Pop covers fadtk's embeddings only
    table = pd.read_csv(out_csv)
    assert list(table["reference"]) == ["a", "b"] and (table["fad"] > 0).all()
    code, out, _ = _fad([ref_a, evaluated, *common], capsys)
    assert code == 0 and "| logmel-stats | a " in out

    code, _, err = _fad([ref_a, evaluated, *common, "--out", tmp_path], capsys)
    assert code == 2 and "is a directory" in err
    code, _, err = _fad([ref_a, tmp_path / "missing", *common], capsys)
    assert code == 2 and "missing" in err


def test_musicdiff_fad_refuses_a_params_file_that_is_not_there(tmp_path, capsys, monkeypatch):
    ref, evaluated = _ref_folder(tmp_path / "ref"), _ref_folder(tmp_path / "mine", n=6, seed=500)
    code, out, err = _fad([ref, evaluated, "--embedding", "logmel-stats", "--params", tmp_path / "nosuch.yaml"],
                          capsys)
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("musicdiff fad: error: --params ") and "nosuch.yaml: no such file" in line
    (tmp_path / "broken.yaml").write_text("inputs: [unclosed\n")
    code, _, err = _fad([ref, evaluated, "--params", tmp_path / "broken.yaml"], capsys)
    assert code == 2 and "broken.yaml: cannot be read as YAML" in err and len(err.strip().splitlines()) == 1

    # without --params: ./params.yaml when there is one (its inputs section applies), else the defaults
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("inputs:\n  min_sample_rate: 30000\n")
    code, _, err = _fad([ref, evaluated, "--embedding", "logmel-stats"], capsys)
    assert code == 2 and "low_sample_rate" in err and "inputs.min_sample_rate 30000 Hz" in err
    (tmp_path / "params.yaml").unlink()
    code, out, _ = _fad([ref, evaluated, "--embedding", "logmel-stats"], capsys)
    assert code == 0 and "| logmel-stats | ref " in out


def test_musicdiff_fad_records_an_mlflow_run_tagged_like_a_stage_run(tmp_path, capsys, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact store is ./mlruns
    ref, evaluated = _ref_folder(tmp_path / "ref"), _ref_folder(tmp_path / "mine", n=6, seed=500)
    code, _, err = _fad([ref, evaluated, "--embedding", "logmel-stats", "--params", _defaults(tmp_path),
                         "--mlflow"], capsys)
    assert code == 0 and "logged to MLflow run" in err
    runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.stage = 'fad'")
    (run,) = runs.to_dict("records")
    assert run["tags.kind"] == "external" and run["tags.evaluation_set"] == "mine" and run["tags.git_commit"]
    assert run["metrics.logmel-stats/ref/fad"] > 0 and run["metrics.mine/skipped_files"] == 0


def test_download_and_prepare_use_or_skip_every_hostile_file_naming_it(hostile, tmp_path):
    from musicdiff.data.prepare import prepare_set
    from musicdiff.data.sources import download_set

    folder, expected = hostile
    if os.geteuid() == 0:  # root copies a mode-000 file: the download step reads it, so prepare sees it
        expected["locked.wav"] = ("used", ())
    manifest = download_set({"local": str(folder), "include": ["**/*"]}, tmp_path / "raw", progress=False)
    at_download = {Path(s["path"]).name: s["reason"] for s in manifest.attrs["skipped"]}
    assert at_download == {"dangling.wav": "dangling_link", "folder.wav": "not_a_file"}
    with pytest.raises(TooManySkippedError, match=r"nan\.wav: non_finite"):
        prepare_set(manifest, tmp_path / "raw", tmp_path / "refused", segment_s=0.73, progress=False)
    result = prepare_set(manifest, tmp_path / "raw", tmp_path / "clips", segment_s=0.73, progress=False,
                         policy=InputPolicy(max_skip_fraction=1.0))
    at_prepare = {Path(s.path).name: s.reason for s in result.skip_log.skips}
    assert {**at_download, **at_prepare} == {k: v[0] for k, v in expected.items() if v[0] != "used"}
    assert all(s.detail for s in result.skip_log.skips)
    used = {Path(t).name for t in result.manifest["track"]}
    assert used == {k for k, v in expected.items() if v[0] == "used"}
    flags = dict(zip(result.manifest["track"].map(lambda t: Path(t).name), result.manifest["flags"]))
    assert flags["clipped.wav"] == "clipped" and flags["dc-offset.wav"] == "dc_offset"
    assert flags["eight-channels-96k.wav"] == "multichannel" and flags["peak-1.5.wav"] == "over_full_scale"
    assert result.skip_log.flags == {"band_limited": 0, "multichannel": 1, "over_full_scale": 1, "dc_offset": 1,
                                     "clipped": 1, "silent": 0, "dc_only": 0, "over_range": 0}
    row = result.manifest[result.manifest["track"].str.endswith("eight-channels-96k.wav")].iloc[0]
    assert row["source_sample_rate"] == 96000 and row["source_channels"] == 8


def test_a_file_of_exactly_one_clip_is_used_at_any_clip_length(tmp_path):
    """0.73 s at 22050 Hz is 16096.5 samples: the protocol rounds it to 16096, and a file of exactly
    that many samples is one clip, not too short (real floors are written at exactly that length)."""
    from musicdiff.evaluation.engine import screen_files

    for clip_s in (0.35, 0.73):
        protocol = EvaluationProtocol(clip_s, SR)
        path = tmp_path / f"one-clip-{clip_s}.wav"
        sf.write(path, _music(1.0)[: protocol.clip_samples], SR, subtype="FLOAT")
        screened = screen_files([path], protocol, "one clip")
        assert screened.log.skips == [] and screened.files[0][2] == 1
        short = tmp_path / f"short-{clip_s}.wav"
        sf.write(short, _music(1.0)[: protocol.clip_samples - 1], SR, subtype="FLOAT")
        assert screen_files([short], protocol, "short").log.counts == {"too_short": 1}


def _lossy_source(folder: Path, good: int = 3, links: int = 4, folders: int = 4) -> Path:
    """``good`` ordinary files and ``links + folders`` entries the download drops (dangling links, folders
    named like audio): the issue's 8 of 11 entries lost."""
    folder.mkdir(parents=True)
    for i in range(good):
        sf.write(folder / f"good_{i}.wav", _music(2.0, seed=20 + i), SR)
    for i in range(links):
        os.symlink(folder / f"gone_{i}.wav", folder / f"link_{i}.wav")
    for i in range(folders):
        (folder / f"folder_{i}.wav").mkdir()
    return folder


def test_prepare_counts_the_entries_the_download_dropped_against_max_skip_fraction(tmp_path):
    from musicdiff.data.prepare import prepare_set
    from musicdiff.data.sources import download_set

    source = _lossy_source(tmp_path / "src")
    manifest = download_set({"local": str(source), "include": ["**/*"]}, tmp_path / "raw", progress=False)
    assert len(manifest) == 3 and len(manifest.attrs["skipped"]) == 8
    with pytest.raises(TooManySkippedError, match=r"8 of 11 files skipped(.|\n)*folder_3\.wav: not_a_file "
                                                  r"\(at download: (.|\n)*link_0\.wav: dangling_link") as refused:
        prepare_set(manifest, tmp_path / "raw", tmp_path / "refused", segment_s=0.73, progress=False)
    assert refused.value.log.total == 11 and not (tmp_path / "refused").exists()
    result = prepare_set(manifest, tmp_path / "raw", tmp_path / "clips", segment_s=0.73, progress=False,
                         policy=InputPolicy(max_skip_fraction=1.0))
    record = result.skip_log.to_dict()
    assert record["total"] == 11 and result.download_skipped == 8 and result.n_tracks == 3
    assert sorted(s["path"] for s in record["skipped"]) == sorted(
        [f"link_{i}.wav" for i in range(4)] + [f"folder_{i}.wav" for i in range(4)])
    assert all(s["detail"].startswith("at download") for s in record["skipped"])
    assert result.skip_log.metrics()["skipped_fraction"] == round(8 / 11, 6)
    assert result.skipped_files == []  # prepare itself skipped nothing


def test_a_duplicate_is_skipped_naming_the_file_it_duplicates(tmp_path):
    from musicdiff.data.prepare import prepare_set
    from musicdiff.data.sources import download_set

    source = _lossy_source(tmp_path / "src", links=0, folders=0)
    (source / "zz copy.wav").write_bytes((source / "good_1.wav").read_bytes())
    manifest = download_set({"local": str(source), "include": ["**/*"]}, tmp_path / "raw", progress=False)
    result = prepare_set(manifest, tmp_path / "raw", tmp_path / "clips", segment_s=0.73, progress=False,
                         policy=InputPolicy(max_skip_fraction=0.5))
    (skip,) = result.skip_log.skips
    assert skip.path == "audio/zz copy.wav" and skip.reason == "duplicate"
    assert skip.detail.startswith("duplicate of audio/good_1.wav")


def test_a_failed_prepare_stage_records_its_skip_list_in_a_file_and_the_mlflow_run(tmp_path):
    import subprocess
    import sys

    import mlflow
    import yaml
    from musicdiff.data.sources import download_set

    project = tmp_path / "project"
    download_set({"local": str(_lossy_source(tmp_path / "src")), "include": ["**/*"]},
                 project / "data" / "raw" / "lossy", progress=False)
    (project / "params.yaml").write_text(yaml.safe_dump({
        "seed": 0, "audio": {"sample_rate": SR}, "inputs": {"max_skip_fraction": 0.2},
        "datasets": {"lossy": {"prepare": {"segment_s": 0.73}}}}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "pipelines.prepare", "--dataset", "lossy"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "prepare: error: " in done.stderr and "8 of 11 files skipped" in done.stderr
    written = json.loads((project / "data" / "prepared" / "lossy.skipped.json").read_text())
    assert written["total"] == 11 and len(written["skipped"]) == 8 and "8 of 11" in written["error"]
    assert {(s["path"], s["reason"]) for s in written["skipped"]} >= {("link_0.wav", "dangling_link"),
                                                                       ("folder_0.wav", "not_a_file")}
    assert not (project / "metrics" / "prepare" / "lossy.json").exists()  # a failed stage writes no record
    mlflow.set_tracking_uri(uri)
    (run,) = mlflow.search_runs(search_all_experiments=True, filter_string="tags.stage = 'prepare'",
                                output_format="list")
    assert run.info.status == "FAILED"
    artifact = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/inputs/lossy.json")
    assert artifact["total"] == 11 and [s["path"] for s in artifact["skipped"]] == [s["path"] for s in written["skipped"]]
    assert run.data.metrics["skipped_files"] == 8 and run.data.metrics["input_files"] == 11

    # with a looser policy the stage passes, records every lost entry, and the stale list is removed
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["inputs"]["max_skip_fraction"] = 0.9
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    done = subprocess.run([sys.executable, "-m", "pipelines.prepare", "--dataset", "lossy"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (project / "data" / "prepared" / "lossy.skipped.json").exists()
    record = json.loads((project / "metrics" / "prepare" / "lossy.json").read_text())
    assert record["inputs"][str(project / "data" / "raw" / "lossy")]["total"] == 11
    assert record["metrics"]["skipped_fraction"] == round(8 / 11, 6)


def test_musicdiff_fad_says_what_it_downloads_and_downloads_nothing_offline(tmp_path, capsys, monkeypatch):
    from musicdiff.weights import fetch as checkpoint

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # an empty user cache
    monkeypatch.setenv("MUSICDIFF_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.delenv("MUSICDIFF_OFFLINE", raising=False)
    calls = []

    def no_network(cmd, **kwargs):
        calls.append(cmd)
        raise OSError("network unreachable")

    monkeypatch.setattr(checkpoint.subprocess, "run", no_network)
    ref, evaluated = _ref_folder(tmp_path / "ref"), _ref_folder(tmp_path / "mine", n=6, seed=500)
    common = [ref, evaluated, "--embedding", "musicnn", "--params", _defaults(tmp_path)]
    code, _, err = _fad(common, capsys)
    assert code == 2 and len(calls) == 1
    said = [line for line in err.splitlines() if "fetching the MusiCNN weights" in line]
    assert len(said) == 1 and "from PyPI" in said[0] and "musicnn-0.1.0-py3-none-any.whl" in said[0]
    assert str(tmp_path / "home" / ".cache" / "musicdiff" / "weights" / "musicnn" / "MSD_musicnn") in said[0]

    for how in ("flag", "env"):
        if how == "env":
            monkeypatch.setenv("MUSICDIFF_OFFLINE", "1")
        code, _, err = _fad([*common, "--offline"] if how == "flag" else common, capsys)
        (line,) = err.strip().splitlines()
        assert code == 2 and len(calls) == 1, how  # nothing was fetched
        assert line.startswith("musicdiff fad: error: MusiCNN weights") and "MUSICDIFF_OFFLINE is set" in line
        assert "musicdiff weights import DIR/musicnn-0.1.0-py3-none-any.whl" in line
        assert "pip download --no-deps --only-binary=:all: musicnn==0.1.0 -d DIR" in line
        assert how == "env" or "MUSICDIFF_OFFLINE" not in os.environ  # --offline leaves the environment as it was
        monkeypatch.delenv("MUSICDIFF_OFFLINE", raising=False)
