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
    # The text-conditioned variant on three tiny sets; their local folders have no Debian package, so
    # each label has a label-level caption.
    params["captions"].update({"orchestral": "orchestral music", "ambient": "calm ambient music",
                               "drums": "drum loops and percussion"})
    params["text_features"] = {"mel-text-32x32": {
        "resolution": [32, 32], "crops_per_clip": 1, "max_clips_per_label": 20,
        "labels": {"orchestral": "wesnoth/train", "ambient": "ambient/ref", "drums": "drums/ref"}}}
    text_unet = {"block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
                 "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1, "norm_num_groups": 4,
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
                          "train": {"max_steps": 4, "checkpoint_steps": [3]}},
        "mel-text-32x32": {"family": "mel-text", "data": "text_features/mel-text-32x32", "prediction_type": "sample",
                           "text_encoder": "minilm", "max_tokens": 8, "uncond_prob": 0.1, "guidance_scale": 3.0,
                           "model": text_unet},
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
    # The analyses: FAD at checkpoints 3 and 6 (the waveform variant stops at 4: step 6 is not reached),
    # FAD vs n on 8 latent clips, outliers against the held-out clips.
    params["training_curve"].update({"steps": [3, 6], "sampler": "ddim2", "n_samples": 4,
                                     "reference_sets": ["heldout", "drums"]})
    params["sample_size"].update({"variant": "latent-32x32", "sampler": "ddim2", "n_samples": 8, "sizes": [2, 4, 8],
                                  "repeats": 3, "reference_sets": ["heldout", "drums"]})
    # The creative tools measured: variations of 3 held-out clips from T = 750 and 250, and per-label FAD of
    # the text-conditioned variant.
    params["variation"].update({"variants": ["mel-32x32", "waveform-2048"], "timesteps": [750, 250], "n_sources": 3,
                                "sampler": "ddim2", "reference_sets": ["heldout", "drums"]})
    params["text_conditioning"].update({"variants": ["mel-text-32x32"], "n_samples": 4, "sampler": "ddim2",
                                        "label_reference_sets": {"orchestral": "heldout", "ambient": "ambient",
                                                                 "drums": "drums"}})
    return params


@pytest.fixture(scope="module")
def workspace(fadtk_clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    for item in ("dvc.yaml", "pipelines", "musicdiff"):
        src = REPO / item
        # the regression benchmark (pipelines/regress/) is another DVC pipeline, tested in test_regress.py
        ignore = shutil.ignore_patterns("regress", "__pycache__")
        shutil.copytree(src, root / item, ignore=ignore) if src.is_dir() else shutil.copy(src, root / item)
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
    # musicnn: 5 variants x 2 samplers x 5 reference sets; vggish: one skip row per evaluation set
    assert len(rows) == 5 * 2 * 5 + 5 * 2
    assert rows["skipped"].isna().sum() == 5 * 2 * 5 and (rows["embedding"][rows["skipped"].notna()] == "vggish").all()
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
    assert set(speed["Data Type"]) == {"Mel-Spec", "DiT", "VAE Latent Space", "Waveform", "VAE", "Mel-Spec + text"}
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
    expected = {"mel-32x32": 31 * 256, "dit-32x32": 31 * 256, "latent-32x32": 31 * 256, "waveform-2048": 2048,
                "mel-text-32x32": 31 * 256}
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
    # download, prepare, features, text_features, vae, train, sample, speed, then per embedding
    # (musicnn, vggish): weights, embed (5 references + 10 sets), fad; bench; levels (10 sets), filter
    # and outliers per embedding, steps per variant, sample_size, variation (2 variants), text_conditioning
    assert len(runs) == len(records) == 4 + 4 + 2 + 1 + 1 + 5 + 10 + 5 + 2 * (1 + 15 + 10) + 1 + 10 + 2 + 2 + 5 + 1 + 2 + 1
    assert "fad@musicnn-mel-32x32-ddpm" in names and "train@waveform-2048" in names and "vae@vae-32x32" in names
    fad_run = next(r for r in runs if r.info.run_name == "fad@musicnn-latent-32x32-ddim2")
    assert fad_run.data.tags["sampler"] == "ddim2" and fad_run.data.tags["variant"] == "latent-32x32"
    assert fad_run.data.metrics["drums/n_eval_clips"] == 4 and fad_run.data.metrics["drums/fad"] > 0
    for key in ("kad", "kad_ci_low", "kad_bandwidth", "fad_inf", "fad_inf_r2"):
        assert f"heldout/{key}" in fad_run.data.metrics
    assert "version.torch" in fad_run.data.tags and "git_commit" in fad_run.data.tags
    train_run = next(r for r in runs if r.info.run_name == "train@mel-32x32")
    assert len(client.get_metric_history(train_run.info.run_id, "loss")) == 3


def test_second_repro_is_a_no_op_and_report_regenerates_every_file(workspace):
    root, env = workspace
    again = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True)
    assert again.returncode == 0
    assert "Running stage" not in again.stdout
    files = sorted(p for p in (root / "reports").rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    shutil.rmtree(root / "reports")
    subprocess.run([sys.executable, "-m", "musicdiff.cli", "report"], cwd=root, env=env, check=True)
    assert sorted(p for p in (root / "reports").rglob("*") if p.is_file()) == files
    for path, content in before.items():  # tables and figures, byte for byte
        assert path.read_bytes() == content, path


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


def test_report_writes_every_table_in_three_formats_and_indexes_every_file(workspace):
    root, _ = workspace
    reports = root / "reports"
    for table in ("fad", "speed", "bench", "noisy_filtering", "fad_vs_steps", "fad_vs_n_samples", "outliers",
                  "variation_strength", "text_conditioning"):
        for ext in ("md", "csv", "tex"):
            assert (reports / "tables" / f"{table}.{ext}").stat().st_size > 0, (table, ext)
        assert "\\begin{tabular}" in (reports / "tables" / f"{table}.tex").read_text()
    index = (reports / "README.md").read_text()
    for path in (p for p in reports.rglob("*") if p.is_file() and p.name != "README.md"):
        line = next(line for line in index.splitlines() if f"]({path.relative_to(reports)})" in line)
        assert line.split("): ", 1)[1].endswith("."), line  # a sentence describes each file
    import matplotlib.image

    for figure in ("clip_levels", "fad_vs_steps", "fad_vs_n_samples", "variation_strength"):
        pixels = matplotlib.image.imread(reports / "figures" / f"{figure}.png")
        assert pixels.shape[0] > 300 and pixels.shape[1] > 500 and pixels.std() > 0.05


def test_noisy_filter_removes_the_clips_above_the_threshold(workspace):
    import pandas as pd

    root, _ = workspace
    record = _record(root, "filter", "musicnn")
    for name in ("mel-32x32-ddpm", "waveform-2048-ddim2"):
        levels = _record(root, "levels", name)
        louder = [f for i, f in enumerate(levels["params"]["files"]) if levels["metrics"][f"clip_{i:04d}/rms_dbfs"] > -12]
        assert record["params"]["removed"][name] == louder
        assert record["metrics"][f"{name}/n_removed"] == len(louder)
        assert record["metrics"][f"{name}/heldout/fad"] > 0
        assert (f"{name}/heldout/filtered_fad" in record["metrics"]) == (4 - len(louder) >= 2)
    assert _record(root, "filter", "vggish")["tags"]["skipped"]
    table = (root / "reports" / "tables" / "noisy_filtering.md").read_text()
    assert "| Reference set   | Sampler   | musicnn (original / filtered)" in table
    assert "## Model mel-32x32" in table and "## Level of the generated clips" in table
    rows = pd.read_csv(root / "reports" / "tables" / "noisy_filtering.csv")
    assert set(rows["reference"].dropna()) == {"heldout", "train", "ambient", "drums", "band"}


def test_fad_vs_steps_scores_each_checkpoint_the_variant_reached(workspace):
    import pandas as pd

    root, _ = workspace
    rows = pd.read_csv(root / "reports" / "tables" / "fad_vs_steps.csv")
    steps = rows.groupby("variant")["step"].apply(lambda s: sorted(set(s))).to_dict()
    assert steps == {"mel-32x32": [3, 6], "dit-32x32": [3, 6], "latent-32x32": [3, 6], "waveform-2048": [3],
                     "mel-text-32x32": [3, 6]}
    assert _record(root, "steps", "waveform-2048")["tags"]["steps_not_reached"] == "6"
    assert (rows["fad"] > 0).all() and (rows["n_eval_clips"] == 4).all()
    clips = sorted((root / "data" / "steps" / "mel-32x32" / "step_3").glob("*.wav"))
    assert len(clips) == 4
    # different weights at steps 3 and 6 generate different audio from the same noise
    early, late = sf.read(clips[0])[0], sf.read(root / "data" / "steps" / "mel-32x32" / "step_6" /
                                                 clips[0].name.replace("step_3", "step_6"))[0]
    assert not np.allclose(early, late)


def test_fad_vs_n_samples_and_outliers_are_reported(workspace):
    import pandas as pd

    root, _ = workspace
    rows = pd.read_csv(root / "reports" / "tables" / "fad_vs_n_samples.csv")
    assert sorted(set(rows["n"])) == [2, 4, 8] and set(rows["reference"]) == {"heldout", "drums"}
    assert rows["fad_inf"].notna().all()
    assert len(list((root / "data" / "sample_size" / "latent-32x32-ddim2").glob("*.wav"))) == 8
    record = _record(root, "outliers", "musicnn")
    top = record["params"]["top"]["mel-32x32-ddpm"]
    assert len(top) == 4 and all((root / clip["path"]).exists() for clip in top)
    assert [c["z"] for c in top] == sorted((c["z"] for c in top), reverse=True)
    assert record["metrics"]["mel-32x32-ddpm/z_max"] == pytest.approx(top[0]["z"], abs=1e-3)
    assert "train" in record["params"]["sets"] and "drums" in record["params"]["sets"]
    assert "## Top outliers with their audio" in (root / "reports" / "tables" / "outliers.md").read_text()


def test_dvc_plots_show_renders_the_figures(workspace, tmp_path):
    root, env = workspace
    done = subprocess.run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], cwd=root, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "plots" / "index.html").read_text()
    for figure in ("clip_levels", "fad_vs_steps", "fad_vs_n_samples", "variation_strength"):
        assert figure in page


def test_variations_and_text_conditioning_are_scored_and_reported(workspace):
    root, _ = workspace
    record = _record(root, "variation", "mel-32x32")["metrics"]
    for t in (0, 250, 750):
        assert record[f"T_{t}/heldout/fad_ci_low"] <= record[f"T_{t}/heldout/fad"] <= record[f"T_{t}/heldout/fad_ci_high"]
    assert record["T_0/embedding_distance"] == 0 and record["T_250/embedding_distance"] > 0
    assert record["T_0/mel_distance"] == 0 and record["T_750/mel_distance"] > 0
    assert 0 < record["decoded/mel_distance"]  # Griffin-Lim alone moves the clip
    assert len(list((root / "data" / "variation" / "mel-32x32" / "T_750").glob("*.wav"))) == 3
    text = _record(root, "text_conditioning", "mel-text-32x32")["metrics"]
    for group in ("orchestral", "ambient", "drums", "unconditional"):
        assert text[f"{group}/heldout/fad"] > 0 and text[f"{group}/drums/fad"] > 0
    table = (root / "reports" / "tables" / "text_conditioning.md").read_text()
    for label, ref in (("orchestral", "heldout"), ("ambient", "ambient"), ("drums", "drums")):
        assert any(line.startswith(f"| {label}") and f"| {ref}" in line for line in table.splitlines()), table
    assert "| model" in (root / "reports" / "tables" / "variation_strength.md").read_text()
