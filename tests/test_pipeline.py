"""End to end: the real dvc.yaml and stage scripts, run by `dvc repro` in a temporary folder on real
music (the clips fadtk ships), with tiny params; plus corrupt, empty and silent files in the
training folder that must be skipped and counted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _tiny_params(folders: dict[str, Path]) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name in set(params["datasets"]) - set(folders):  # e.g. the rendered chorales: tested in test_sets.py
        del params["datasets"][name]
        params["reference_sets"] = {k: v for k, v in params["reference_sets"].items()
                                    if not v.startswith(f"data/prepared/{name}/")}
    for name, folder in folders.items():
        params["datasets"][name]["source"] = {"local": str(folder), "include": ["*"]}
        prepare = params["datasets"][name]["prepare"]
        prepare.update({"segment_s": 1.0, "min_duration_s": 1.0, "max_segments_per_track": 2})
        prepare.pop("max_clips", None)
    params["datasets"]["wesnoth"]["prepare"]["heldout_fraction"] = 0.3
    params["mel"]["griffin_lim_iters"] = 4
    # Every family at a tiny size: mel, DiT and the VAE share one [32, 32] mel set.
    params["features"] = {"mel-32x32": {"kind": "mel", "resolution": [32, 32]},
                          "waveform-2048": {"kind": "waveform", "samples": 2048, "crops_per_clip": 2}}
    unet = {"block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
            "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1, "norm_num_groups": 4,
            "attention_head_dim": 4}
    params["autoencoders"] = {"vae-32x32": {
        "features": "mel-32x32", "model": {"block_out_channels": [8, 8], "layers_per_block": 1, "norm_num_groups": 4},
        "train": {"seed": 0, "batch_size": 4, "max_steps": 4, "learning_rate": 1e-3, "log_every": 2}}}
    params["variants"] = {
        "mel-32x32": {"family": "mel", "data": "features/mel-32x32", "prediction_type": "sample", "model": unet},
        "dit-32x32": {"family": "dit", "data": "features/mel-32x32", "prediction_type": "sample",
                      "model": {"num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 8, "patch_size": 4}},
        "latent-32x32": {"family": "latent", "data": "latents/vae-32x32", "prediction_type": "epsilon",
                         "clip_sample": False, "model": unet},
        "waveform-2048": {"family": "waveform", "data": "features/waveform-2048", "prediction_type": "v_prediction",
                          "model": {"block_out_channels": [8, 32, 32],
                                    "down_block_types": ["DownBlock1DNoSkip", "DownBlock1D", "AttnDownBlock1D"],
                                    "up_block_types": ["AttnUpBlock1D", "UpBlock1D", "UpBlock1DNoSkip"],
                                    "mid_block_type": "UNetMidBlock1D", "time_embedding_dim": 16},
                          "train": {"max_steps": 4, "checkpoint_steps": [2]}},
    }
    params["train"].update({"max_steps": 6, "batch_size": 4, "checkpoint_steps": [3], "warmup_steps": 1,
                            "log_every": 2})
    params["sample"].update({"n_samples": 4, "batch_size": 4})
    params["samplers"] = {"ddpm": {"scheduler": "ddpm", "num_inference_steps": 4},
                          "ddim2": {"scheduler": "ddim", "num_inference_steps": 2, "eta": 0.0}}
    params["speed"].update({"repeats": 3, "warmup": 1})
    params["fad"]["n_bootstrap"] = 10
    # MusiCNN scores everything; VGGish has no weights here (empty weight folders in the fixture's
    # environment), so its stages must record skips instead of failing the run.
    params["embed"]["embeddings"] = ["musicnn", "vggish"]
    params["embed"]["on_missing_weights"] = "skip"
    params["bench"] = {"repeats": 1, "throughput_embeddings": []}
    return params


@pytest.fixture(scope="module")
def workspace(fadtk_clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    for item in ("dvc.yaml", "pipelines", "musicdiff"):
        src = REPO / item
        shutil.copytree(src, root / item) if src.is_dir() else shutil.copy(src, root / item)
    folders = {name: root / "audio_in" / name for name in ("wesnoth", "ambient", "drums", "band")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for i, clip in enumerate(fadtk_clips):  # 23 clips: 12 training tracks, 6 ambient, 5 drums (also band)
        target = folders["wesnoth"] if i < 12 else folders["ambient"] if i < 18 else folders["drums"]
        shutil.copy(clip, target / clip.name)
        if i >= 18:
            shutil.copy(clip, folders["band"] / clip.name)
    bad = folders["wesnoth"]
    (bad / "corrupt.ogg").write_bytes(os.urandom(4096))
    (bad / "empty.wav").write_bytes(b"")
    sf.write(bad / "silent.wav", np.zeros(22050 * 3, dtype=np.float32), 22050)
    (root / "params.yaml").write_text(yaml.safe_dump(_tiny_params(folders), sort_keys=False))
    empty = root / "no_weights"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "PYTHONPATH": str(root), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MUSICDIFF_WEIGHTS": str(empty / "musicdiff"), "TORCH_HOME": str(empty / "torch"),
           "HF_HOME": str(empty / "hf"), "HF_HUB_OFFLINE": "1"}
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=root, env=env, check=True)
    first = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return root, env


def _record(root: Path, stage: str, instance: str) -> dict:
    return json.loads((root / "metrics" / stage / f"{instance}.json").read_text())


def test_repro_writes_a_fad_table_with_every_reference_set(workspace):
    root, _ = workspace
    table = (root / "reports" / "tables" / "fad.md").read_text()
    for reference in ("heldout", "train", "ambient", "drums", "band"):
        assert reference in table
    import pandas as pd

    rows = pd.read_csv(root / "reports" / "tables" / "fad.csv")
    # musicnn: 4 variants x 2 samplers x 5 reference sets; vggish: one skip row per evaluation set
    assert len(rows) == 4 * 2 * 5 + 4 * 2
    assert rows["skipped"].isna().sum() == 4 * 2 * 5 and (rows["embedding"][rows["skipped"].notna()] == "vggish").all()
    assert "## KAD" in table and "## FAD-inf" in table and "| musicnn: heldout" in table


def test_embeddings_without_weights_are_recorded_as_skipped_not_failed(workspace):
    root, _ = workspace
    weights = _record(root, "weights", "vggish")
    assert weights["tags"]["weights_status"] == "missing"
    assert "musicdiff weights import" in weights["tags"]["weights_message"]
    embed = _record(root, "embed", "vggish-heldout")
    assert "musicdiff weights import" in embed["tags"]["skipped"] and not embed["metrics"]
    fad = _record(root, "fad", "vggish-mel-32x32-ddpm")
    assert fad["tags"]["skipped"] and not fad["metrics"]
    table = (root / "reports" / "tables" / "fad.md").read_text()
    assert "## Skipped embeddings" in table and "- vggish:" in table and "vggish: heldout" not in table


def test_speed_table_has_every_variant_and_sampler(workspace):
    import pandas as pd

    root, _ = workspace
    speed = pd.read_csv(root / "reports" / "tables" / "speed.csv")
    assert set(speed["Data Type"]) == {"Mel-Spec", "DiT", "VAE Latent Space", "Waveform", "VAE"}
    models = speed[speed["Data Type"] != "VAE"].set_index("Variant")
    assert models.loc["latent-32x32", "Resolution"] == "[32, 32] [16, 16]"
    assert models.loc["waveform-2048", "Resolution"] == "[1, 2048]"
    for sampler, steps in (("ddpm", 4), ("ddim2", 2)):
        assert (models[f"{sampler} ({steps} steps) denoise"] > 0).all()
    assert (models["Timed runs (median of)"] == 3).all()
    assert (models.loc["waveform-2048", ["ddpm decode", "ddim2 decode"]] < 0.01).all()  # nothing to decode
    assert (models.loc["mel-32x32", ["ddpm decode"]] > 0).all()  # Griffin-Lim


def test_every_variant_decodes_clips_of_its_length_and_rate(workspace):
    root, _ = workspace
    expected = {"mel-32x32": 31 * 256, "dit-32x32": 31 * 256, "latent-32x32": 31 * 256, "waveform-2048": 2048}
    for variant, samples in expected.items():
        for sampler in ("ddpm", "ddim2"):
            clips = sorted((root / "data" / "samples" / f"{variant}-{sampler}").glob("*.wav"))
            assert len(clips) == 4
            info = sf.info(clips[0])
            assert (info.samplerate, info.frames, info.channels) == (22050, samples, 1)
            audio, _ = sf.read(clips[-1])
            assert np.isfinite(audio).all() and np.abs(audio).max() > 0


def test_bad_files_are_skipped_and_counted(workspace):
    root, _ = workspace
    metrics = _record(root, "prepare", "wesnoth")["metrics"]
    assert metrics["skipped_unreadable"] + metrics["skipped_empty"] == 2
    assert metrics["skipped_silent"] == 1
    assert metrics["tracks"] == 12
    assert metrics["clips_heldout"] > 0 and metrics["clips_train"] > 0


def test_every_stage_instance_is_one_mlflow_run_with_its_tags(workspace):
    import mlflow
    from mlflow.tracking import MlflowClient

    root, env = workspace
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = MlflowClient()
    experiment = client.get_experiment_by_name("musicdiff")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    names = {r.info.run_name for r in runs}
    records = sorted((root / "metrics").rglob("*.json"))
    # download, prepare, features, vae, train, sample, speed, then per embedding (musicnn, vggish):
    # weights, embed (5 references + 8 sets), fad; bench
    assert len(runs) == len(records) == 4 + 4 + 2 + 1 + 4 + 8 + 4 + 2 * (1 + 13 + 8) + 1
    assert "fad@musicnn-mel-32x32-ddpm" in names and "train@waveform-2048" in names and "vae@vae-32x32" in names
    fad_run = next(r for r in runs if r.info.run_name == "fad@musicnn-latent-32x32-ddim2")
    assert fad_run.data.tags["sampler"] == "ddim2" and fad_run.data.tags["variant"] == "latent-32x32"
    assert fad_run.data.metrics["drums/n_eval_clips"] == 4 and fad_run.data.metrics["drums/fad"] > 0
    for key in ("kad", "kad_ci_low", "kad_bandwidth", "fad_inf", "fad_inf_r2"):
        assert f"heldout/{key}" in fad_run.data.metrics
    assert "version.torch" in fad_run.data.tags and "git_commit" in fad_run.data.tags
    train_run = next(r for r in runs if r.info.run_name == "train@mel-32x32")
    assert len(client.get_metric_history(train_run.info.run_id, "loss")) == 3


def test_second_repro_is_a_no_op_and_report_regenerates_identical_tables(workspace):
    root, env = workspace
    again = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True)
    assert again.returncode == 0
    assert "Running stage" not in again.stdout
    before = (root / "reports" / "tables" / "fad.csv").read_text()
    (root / "reports" / "tables" / "fad.csv").unlink()
    subprocess.run([sys.executable, "-m", "musicdiff.cli", "report"], cwd=root, env=env, check=True)
    assert (root / "reports" / "tables" / "fad.csv").read_text() == before


def test_report_on_a_store_without_the_runs_names_the_fix_and_relog_repairs_it(workspace, tmp_path):
    root, env = workspace
    empty = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}
    failed = subprocess.run([sys.executable, "-m", "musicdiff.cli", "report", "--out", str(tmp_path / "r")],
                            cwd=root, env=empty, capture_output=True, text=True)
    assert failed.returncode != 0 and "musicdiff relog metrics/" in failed.stderr
    subprocess.run([sys.executable, "-m", "musicdiff.cli", "relog", "metrics"], cwd=root, env=empty, check=True)
    subprocess.run([sys.executable, "-m", "musicdiff.cli", "report", "--out", str(tmp_path / "r")],
                   cwd=root, env=empty, check=True)
    assert (tmp_path / "r" / "tables" / "fad.csv").read_text() == (root / "reports" / "tables" / "fad.csv").read_text()


def test_report_stage_relogs_records_of_stages_dvc_skipped_into_a_fresh_store(workspace, tmp_path):
    # A fresh clone: DVC skips stages whose committed outputs still match, so their runs are not in
    # the new store; the report stage must log them from the records instead of failing.
    root, env = workspace
    fresh = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'fresh.db'}"}
    before = (root / "reports" / "tables" / "fad.csv").read_text()
    done = subprocess.run([sys.executable, "-m", "pipelines.report"], cwd=root, env=fresh,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    n_records = len(list((root / "metrics").rglob("*.json")))
    assert f"re-logged {n_records} of {n_records} records" in done.stdout
    assert (root / "reports" / "tables" / "fad.csv").read_text() == before
    again = subprocess.run([sys.executable, "-m", "pipelines.report"], cwd=root, env=fresh,
                           capture_output=True, text=True, check=True)
    assert "re-logged" not in again.stdout
