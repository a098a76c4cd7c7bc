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


VARIANTS = ("mel-32x32", "dit-32x32", "latent-32x32", "waveform-8192", "mel-text-32x32")
DDPM_VARIANTS = ("mel-32x32",)  # the variants whose DDPM set is generated and scored; every one has its ddim2 set


def _samplers_of(variant: str) -> tuple[str, ...]:
    """The samplers whose evaluation set the tiny pipeline generates for ``variant``."""
    return ("ddpm", "ddim2") if variant in DDPM_VARIANTS else ("ddim2",)


def _tiny_params(folders: dict[str, Path]) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name in set(params["datasets"]) - set(folders):
        del params["datasets"][name]
        params["reference_sets"] = {k: v for k, v in params["reference_sets"].items()
                                    if not v.startswith(f"data/prepared/{name}/")}
    for name, folder in folders.items():
        params["datasets"][name]["source"] = {"local": str(folder), "include": ["*"]}
        prepare = params["datasets"][name]["prepare"]
        prepare.update({"segment_s": 1.0, "min_duration_s": 1.0, "max_segments_per_track": 2})
        prepare.pop("max_clips", None)
    params["decode"]["griffin_lim_iters"] = 4
    # Every family at a tiny size: mel, DiT and the VAE share one [32, 32] mel set (0.36 s clips), the
    # waveform model makes 8192 samples (0.37 s); the protocol cuts every clip to 0.35 s.
    params["features"] = {"mel-32x32": {"kind": "mel", "resolution": [32, 32]},
                          "waveform-8192": {"kind": "waveform", "samples": 8192, "crops_per_clip": 2}}
    unet = {"block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
            "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1, "norm_num_groups": 4,
            "attention_head_dim": 4}
    # The text-conditioned variant on the three tiny sets; their local folders have no Debian package,
    # so each label has a label-level caption.
    params["captions"].update({"orchestral": "orchestral music", "ambient": "calm ambient music",
                               "band": "rock band music"})
    params["text_features"] = {"mel-text-32x32": {
        "resolution": [32, 32], "crops_per_clip": 1, "max_clips_per_label": 20,
        "labels": {"orchestral": "wesnoth/train", "ambient": "ambient/ref", "band": "band/ref"}}}
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
        "waveform-8192": {"family": "waveform", "data": "features/waveform-8192", "prediction_type": "v_prediction",
                          "model": {"block_out_channels": [8, 32, 32],
                                    "down_block_types": ["DownBlock1DNoSkip", "DownBlock1D", "AttnDownBlock1D"],
                                    "up_block_types": ["AttnUpBlock1D", "UpBlock1D", "UpBlock1DNoSkip"],
                                    "mid_block_type": "UNetMidBlock1D", "time_embedding_dim": 16},
                          "train": {"max_steps": 4, "checkpoint_steps": [3]}},
        "mel-text-32x32": {"family": "mel_text", "data": "text_features/mel-text-32x32", "prediction_type": "sample",
                           "text_encoder": "minilm", "max_tokens": 8, "uncond_prob": 0.1, "guidance_scale": 3.0,
                           "model": text_unet},
    }
    params["train"].update({"max_steps": 6, "batch_size": 4, "checkpoint_steps": [3], "warmup_steps": 1,
                            "log_every": 2})
    params["samplers"] = {"ddpm": {"scheduler": "ddpm", "num_inference_steps": 4},
                          "ddim2": {"scheduler": "ddim", "num_inference_steps": 2, "eta": 0.0}}
    # every variant through ddim2 (the headline), and DDPM through the mel model only: both samplers of every
    # variant are still timed by the speed stage, and one DDPM set is generated and scored end to end
    params["samples"] = {f"{v}-{s}": {"variant": v, "sampler": s, "n_samples": 4, "headline": s == "ddim2"}
                         for v in params["variants"] for s in params["samplers"] if s in _samplers_of(v)}
    params["sample"].update({"batch_size": 4})
    # external systems: a folder a package ships, cut to 1 s per file, and a generator entry point
    params["systems"] = {
        "fadtk-mubert": {"label": "Mubert (fadtk's clips)", "clip_s": 1.0,
                         "source": {"python_package": "fadtk", "path": "test/samples", "include": ["mubert-*.opus"]}},
        "toy": {"label": "toy generator", "generator": "toy_generator.py:generate", "n_clips": 6, "seed": 0,
                "params": {"seconds": 1.0}}}
    params["floors"]["decoders"] = {"real-griffin-lim": {"decoder": "features/mel-32x32", "label": "real via Griffin-Lim"},
                                    "real-vae": {"decoder": "latents/vae-32x32", "label": "real via VAE"}}
    params["floors"]["max_clips"] = 6
    params["speed"].update({"repeats": 5, "warmup": 1})
    # the comparison with fadtk: one timed run per measurement, MusiCNN's throughput only (the others have no weights)
    params["bench"].update({"repeats": 1, "throughput_embeddings": ["musicnn"]})
    params["evaluation"].update({"clip_s": 0.35, "n_bootstrap": 10, "max_reference_clips": 20})
    params["embed"]["embeddings"] = ["musicnn", "logmel-stats"]
    # The analyses: FAD at checkpoints 3 and 6 of the mel model, FAD vs n on the latent model's 4 clips,
    # outliers against the held-out clips, variations of 3 floor clips, graded degradations of 4 clips.
    params["training_curve"].update({"variants": ["mel-32x32"], "steps": [3, 6], "sampler": "ddim2", "n_samples": 4,
                                     "reference_sets": ["heldout", "band"]})
    params["sample_size"].update({"set": "latent-32x32-ddim2", "sizes": [2, 3, 4], "repeats": 3,
                                  "reference_sets": ["heldout", "band"]})
    params["variation"].update({"variants": ["mel-32x32", "waveform-8192"], "timesteps": [750, 250], "n_sources": 3,
                                "sampler": "ddim2", "reference_sets": ["heldout", "band"]})
    params["text_conditioning"].update({"variants": ["mel-text-32x32"], "n_samples": 4, "sampler": "ddim2",
                                        "label_reference_sets": {"orchestral": "heldout", "ambient": "ambient",
                                                                 "band": "band"}})
    params["sensitivity"].update({"n_clips": 4, "degradations": {"white_noise": [20, 0], "lowpass": [2000, 500],
                                                                  "griffin_lim": [32, 8]}})
    return params


@pytest.fixture(scope="module")
def workspace(fadtk_clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    for item in ("dvc.yaml", "pipelines", "musicdiff"):
        src = REPO / item
        # the regression benchmark (pipelines/regress/) is another DVC pipeline, tested in test_regress.py
        ignore = shutil.ignore_patterns("regress", "__pycache__")
        shutil.copytree(src, root / item, ignore=ignore) if src.is_dir() else shutil.copy(src, root / item)
    folders = {name: root / "audio_in" / name for name in ("wesnoth", "ambient", "band")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for i, clip in enumerate(fadtk_clips):  # 23 clips: 12 training tracks, 6 ambient, 5 band
        target = folders["wesnoth"] if i < 12 else folders["ambient"] if i < 18 else folders["band"]
        shutil.copy(clip, target / clip.name)
    bad = folders["wesnoth"]
    (bad / "corrupt.ogg").write_bytes(os.urandom(4096))
    (bad / "empty.wav").write_bytes(b"")
    sf.write(bad / "silent.wav", np.zeros(22050 * 3, dtype=np.float32), 22050)
    (root / "params.yaml").write_text(yaml.safe_dump(_tiny_params(folders), sort_keys=False))
    shutil.copy(REPO / "tests" / "toy_generator.py", root / "toy_generator.py")  # a user's generator entry point
    empty = root / "no_weights"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "PYTHONPATH": str(root), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MUSICDIFF_WEIGHTS": str(empty / "musicdiff"), "TORCH_HOME": str(empty / "torch"),
           "HF_HOME": str(empty / "hf"), "HF_HUB_OFFLINE": "1"}
    # A git repository, as a user's clone is (DVC experiments need one); the inputs outside it are absolute.
    (root / ".gitignore").write_text("/audio_in/\n/no_weights/\n/mlflow.db\n/mlruns/\n__pycache__/\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=root, env=env, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=root, env=env, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tiny pipeline"], cwd=root, env=env, check=True)
    first = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "results"], cwd=root, env=env, check=True)
    return root, env


def _weights_stage(root: Path, work: Path, embeddings: list[str], env: dict) -> subprocess.CompletedProcess:
    """Run the weights stage in ``work`` with the workspace's params, listing ``embeddings``."""
    work.mkdir()
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["embed"]["embeddings"] = embeddings
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run([sys.executable, "-m", "pipelines.weights"], cwd=work, env=env, capture_output=True,
                          text=True)


def _record(root: Path, stage: str, instance: str) -> dict:
    return json.loads((root / "metrics" / stage / f"{instance}.json").read_text())


SETS = [f"{v}-{s}" for v in VARIANTS for s in _samplers_of(v)]
FLOORS = ["real-heldout", "real-griffin-lim", "real-vae"]


def test_repro_writes_a_score_table_with_floors_marks_and_every_reference_set(workspace):
    import pandas as pd

    root, _ = workspace
    table = (root / "reports" / "tables" / "fad.md").read_text()
    for reference in ("heldout", "train", "ambient", "band"):
        assert f"musicnn: {reference}" in table and f"logmel-stats: {reference}" in table
    for label in ("real: held-out", "real via Griffin-Lim", "real via VAE", "mel-32x32 ddim2 (headline)"):
        assert f"| {label}" in table
    assert "## KAD" in table and "## FAD-inf" in table and "Evaluation protocol" in table
    rows = pd.read_csv(root / "reports" / "tables" / "fad.csv")
    # 2 embeddings x (6 generated sets + 3 floors + 2 external systems) x 4 reference sets
    assert len(rows) == 2 * (len(SETS) + len(FLOORS) + 2) * 4 == 88
    assert set(rows["system"]) == set(SETS) | set(FLOORS) | {"fadtk-mubert", "toy"}
    # 4 one-frame clips in 200 (musicnn) or 128 (logmel) dimensions: every FAD is under-sampled and marked
    assert not rows["adequate"].astype(bool).any() and "†" in table
    assert (rows["n_independent"] == rows["n_clips"]).all()  # one 0.35 s clip: one padded window
    assert rows["kad"].notna().all()


def test_every_evaluation_set_is_embedded_under_one_protocol(workspace):
    from musicdiff.evaluation.sets import EmbeddedSet

    root, _ = workspace
    reference = EmbeddedSet.load(root / "data" / "embeddings" / "reference" / "heldout" / "musicnn.npz")
    assert reference.protocol["clip_s"] == 0.35 and reference.protocol["sample_rate"] == 22050
    for name in SETS + FLOORS:
        folder = "floors" if name in FLOORS else "eval"
        evaluation = EmbeddedSet.load(root / "data" / "embeddings" / folder / name / "musicnn.npz")
        evaluation.check_comparable(reference)  # raises when anything differs
        assert evaluation.dim == 200 and len(evaluation.clips) == (6 if name in FLOORS else 4)


def test_listing_an_embedding_without_weights_stops_the_weights_stage_naming_the_fix(workspace, tmp_path):
    root, env = workspace
    # its own MLflow store: the workspace's store keeps one run per stage instance of the repro
    done = _weights_stage(root, tmp_path / "w", ["vggish"],
                          {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert done.returncode != 0 and "musicdiff weights import" in done.stderr
    record = _record(root, "weights", "all")
    assert "musicdiff weights import" in record["tags"]["unavailable.vggish"]
    assert "## Embeddings not run" in (root / "reports" / "tables" / "fad.md").read_text()


def test_speed_table_has_every_variant_and_sampler(workspace):
    import pandas as pd
    import torch

    root, _ = workspace
    speed = pd.read_csv(root / "reports" / "tables" / "speed.csv")
    assert set(speed["Data Type"]) == {"Mel-Spec", "DiT", "VAE Latent Space", "Waveform", "VAE", "Mel-Spec + text"}
    models = speed[speed["Data Type"] != "VAE"].set_index("Variant")
    assert models.loc["latent-32x32", "Resolution"] == "[32, 32] [16, 16]"
    assert models.loc["waveform-8192", "Resolution"] == "[1, 8192]"
    for sampler, steps in (("ddpm", 4), ("ddim2", 2)):
        assert (models[f"{sampler} ({steps} steps) denoise"] > 0).all()
    assert (models["Timed runs (median of)"] == 5).all() and (models["Threads"] >= 1).all()
    assert (models["ddim2/ddpm step ratio"] == 0.5).all() and set(models["Ratio check"]) <= {"ok", *(f"¶{i}" for i in range(1, 6))}
    text = (root / "reports" / "tables" / "speed.md").read_text()
    assert "## GPU, paper size" in text and ("Not timed: no CUDA device" in text) != torch.cuda.is_available()
    assert (models.loc["waveform-8192", ["ddpm decode", "ddim2 decode"]] < 0.01).all()  # nothing to decode
    assert (models.loc["mel-32x32", ["ddpm decode"]] > 0).all()  # Griffin-Lim


def test_every_variant_decodes_clips_of_its_length_and_rate(workspace):
    root, _ = workspace
    expected = {"mel-32x32": 31 * 256, "dit-32x32": 31 * 256, "latent-32x32": 31 * 256, "waveform-8192": 8192,
                "mel-text-32x32": 31 * 256}
    for variant, samples in expected.items():
        for sampler in _samplers_of(variant):
            clips = sorted((root / "data" / "samples" / f"{variant}-{sampler}").glob("*.wav"))
            assert len(clips) == 4
            info = sf.info(clips[0])
            assert (info.samplerate, info.frames, info.channels) == (22050, samples, 1)
            audio, _ = sf.read(clips[-1])
            assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    # the floors: the same real clips, alone (protocol length) and through each decoder (its window)
    assert sf.info(next((root / "data" / "floors" / "real-heldout").glob("*.wav"))).frames == round(0.35 * 22050)
    for floor in ("real-griffin-lim", "real-vae"):
        assert sf.info(next((root / "data" / "floors" / floor).glob("*.wav"))).frames == 31 * 256


def test_external_systems_are_scored_like_the_variants_and_shown_as_external_rows(workspace):
    from musicdiff.evaluation.sets import EmbeddedSet

    root, _ = workspace
    table = (root / "reports" / "tables" / "fad.md").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("|")]  # first column
    assert "Mubert (fadtk's clips) (external)" in rows and "toy generator (external)" in rows
    assert "## External systems" in table and "generator: toy_generator.py:generate" in table
    for name, files in (("fadtk-mubert", 7), ("toy", 6)):
        record = _record(root, "evaluate", name)
        assert record["tags"]["kind"] == "external" and record["metrics"]["input_files"] == files
        assert record["metrics"]["skipped_files"] == 0
        assert "musicnn/heldout/fad" in record["metrics"] and "musicnn/heldout/kad" in record["metrics"]
        embedded = EmbeddedSet.load(root / "data" / "embeddings" / "eval" / name / "musicnn.npz")
        assert embedded.protocol["clip_s"] == 0.35 and len(embedded.clips) == files * 2  # 1 s files, 0.35 s clips
    assert (root / "data" / "systems" / "fadtk-mubert" / "source" / "manifest.csv").is_file()  # provenance
    compared = _record(root, "compare", "all")
    assert any("fadtk-mubert" in key for key in compared["metrics"])
    filtered = _record(root, "filter", "all")["metrics"]  # counted in evaluated clips, as the FAD rests on them
    assert filtered["toy/n_files"] == 6 and filtered["toy/n_clips"] == 12
    assert filtered["toy/n_kept"] + filtered["toy/n_removed"] == 12
    noisy = (root / "reports" / "tables" / "noisy_filtering.md").read_text()
    assert "## System toy generator: FAD original / filtered" in noisy  # not split into model 'toy'


def test_bad_files_are_skipped_and_counted(workspace):
    root, _ = workspace
    record = _record(root, "prepare", "wesnoth")
    metrics = record["metrics"]
    assert metrics["skipped/unreadable"] == 1 and metrics["skipped/empty"] == 1
    assert metrics["skipped/silent"] == 1 and metrics["skipped_files"] == 3
    (listed,) = record["inputs"].values()  # the files themselves, with their reasons, in the record
    assert {Path(s["path"]).name: s["reason"] for s in listed["skipped"]} == {
        "corrupt.ogg": "unreadable", "empty.wav": "empty", "silent.wav": "silent"}
    assert metrics["tracks"] == 12
    assert metrics["clips_heldout"] > 0 and metrics["clips_train"] > 0


def test_every_stage_instance_is_one_mlflow_run_with_its_tags(workspace):
    import mlflow
    from mlflow.tracking import MlflowClient

    root, env = workspace
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = MlflowClient()
    experiment = client.get_experiment_by_name("musicdiff")
    everything = client.search_runs([experiment.experiment_id], max_results=1000)
    runs = [r for r in everything if r.data.tags.get("stage") not in ("repro", "report")]  # parent, report
    names = {r.info.run_name for r in runs}
    records = sorted((root / "metrics").rglob("*.json"))
    # download, prepare (3 sets), features 2, text_features, vae, train 5, sample 6, speed 5 + GPU paper size (one stage),
    # weights, reference 4 (one stage), evaluate 6 + 2 external systems, floors 3 (one stage), compare, filter,
    # outliers, steps, sample_size, variation 2, text_conditioning, sensitivity, system 2, bench: one run and
    # record each
    assert len(runs) == len(records) == (3 + 3 + 2 + 1 + 1 + 5 + 6 + 6 + 1 + 4 + 8 + 3 + 1 + 1 + 1 + 1 + 1 + 2 + 1
                                         + 1 + 2 + 1)
    assert "evaluate@mel-32x32-ddpm" in names and "train@waveform-8192" in names and "floor@real-vae" in names
    assert "speed@dit-32x32" in names and "reference@band" in names
    run = next(r for r in runs if r.info.run_name == "evaluate@latent-32x32-ddim2")
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["sampler"] == "ddim2" and tags["variant"] == "latent-32x32" and tags["headline"] == "true"
    assert metrics["musicnn/band/n_clips"] == 4 and metrics["musicnn/band/fad"] > 0 and metrics["musicnn/band/dim"] == 200
    for key in ("kad", "kad_ci_low", "kad_bandwidth", "n_independent", "adequate", "fad_ci_low"):
        assert f"musicnn/heldout/{key}" in metrics and f"logmel-stats/heldout/{key}" in metrics
    assert "undersampled" in tags["musicnn/heldout/flags"]
    # the run names the sample and train runs it came from
    sample = next(r for r in runs if r.info.run_name == "sample@latent-32x32-ddim2")
    train = next(r for r in runs if r.info.run_name == "train@latent-32x32")
    assert tags["upstream.sample"] == sample.info.run_id and tags["upstream.train"] == train.info.run_id
    assert sample.data.tags["upstream.train"] == train.info.run_id
    assert "version.torch" in tags and "git_commit" in tags
    assert len(client.get_metric_history(train.info.run_id, "loss")) == 3


def test_second_repro_is_a_no_op_and_report_regenerates_every_file(workspace):
    root, env = workspace
    again = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True)
    assert again.returncode == 0
    assert "Running stage" not in again.stdout
    files = sorted(p for p in (root / "reports").rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    shutil.rmtree(root / "reports")
    subprocess.run([sys.executable, "-m", "musicdiff.cli.main", "report"], cwd=root, env=env, check=True)
    assert sorted(p for p in (root / "reports").rglob("*") if p.is_file()) == files
    for path, content in before.items():  # tables and figures, byte for byte
        assert path.read_bytes() == content, path


def test_report_on_a_store_without_the_runs_names_the_fix_and_relog_repairs_it(workspace, tmp_path):
    root, env = workspace
    empty = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}
    failed = subprocess.run([sys.executable, "-m", "musicdiff.cli.main", "report", "--out", str(tmp_path / "r")],
                            cwd=root, env=empty, capture_output=True, text=True)
    assert failed.returncode != 0 and "musicdiff relog metrics/" in failed.stderr
    subprocess.run([sys.executable, "-m", "musicdiff.cli.main", "relog", "metrics"], cwd=root, env=empty, check=True)
    subprocess.run([sys.executable, "-m", "musicdiff.cli.main", "report", "--out", str(tmp_path / "r")],
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


def test_report_leaves_out_the_record_of_a_stage_no_longer_in_the_graph(workspace, tmp_path):
    # A set dropped from `samples` leaves its record behind (DVC does not delete a removed stage's
    # outputs); the report stage names it and keeps it out of every table.
    root, env = workspace
    fresh = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'fresh.db'}"}
    before = (root / "reports" / "tables" / "fad.csv").read_text()
    record = json.loads((root / "metrics" / "evaluate" / "mel-32x32-ddpm.json").read_text())
    record.update(instance="mel-32x32-removed", key=record["key"] + "-removed", run_id="0" * 32)
    stale = root / "metrics" / "evaluate" / "mel-32x32-removed.json"
    stale.write_text(json.dumps(record))
    try:
        done = subprocess.run([sys.executable, "-m", "pipelines.report"], cwd=root, env=fresh,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "left out metrics/evaluate/mel-32x32-removed.json" in done.stdout
        assert (root / "reports" / "tables" / "fad.csv").read_text() == before
    finally:
        stale.unlink()


def test_report_writes_every_table_in_three_formats_and_indexes_every_file(workspace):
    root, _ = workspace
    reports = root / "reports"
    for table in ("fad", "comparisons", "metric_sensitivity", "speed", "noisy_filtering", "fad_vs_steps",
                  "fad_vs_n_samples", "outliers", "variation_strength", "text_conditioning"):
        for ext in ("md", "csv", "tex"):
            assert (reports / "tables" / f"{table}.{ext}").stat().st_size > 0, (table, ext)
        assert "\\begin{tabular}" in (reports / "tables" / f"{table}.tex").read_text()
    index = (reports / "README.md").read_text()
    for path in (p for p in reports.rglob("*") if p.is_file() and p.name != "README.md"):
        line = next(line for line in index.splitlines() if f"]({path.relative_to(reports)})" in line)
        assert line.split("): ", 1)[1].endswith("."), line  # a sentence describes each file
    import matplotlib.image

    for figure in ("clip_levels", "fad_vs_steps", "fad_vs_n_samples", "variation_strength", "metric_sensitivity"):
        pixels = matplotlib.image.imread(reports / "figures" / f"{figure}.png")
        assert pixels.shape[0] > 300 and pixels.shape[1] > 500 and pixels.std() > 0.05


def test_noisy_filter_removes_the_clips_above_the_threshold(workspace):
    import pandas as pd

    root, _ = workspace
    record = _record(root, "filter", "all")
    for name in ("mel-32x32-ddpm", "waveform-8192-ddim2"):
        levels = pd.read_csv(root / "data" / "samples" / name / "levels.csv")
        louder = sorted(levels["file"][levels["rms_dbfs"] > -12])
        assert record["params"]["removed"][name] == louder
        assert record["metrics"][f"{name}/n_removed"] == len(louder)
        assert record["metrics"][f"musicnn/{name}/heldout/fad"] > 0
        assert (f"musicnn/{name}/heldout/filtered_fad" in record["metrics"]) == (4 - len(louder) >= 3)
    table = (root / "reports" / "tables" / "noisy_filtering.md").read_text()
    assert "| Reference set   | Sampler   | musicnn (original / filtered)" in table
    assert "## Model mel-32x32" in table and "## Level of the generated clips" in table
    rows = pd.read_csv(root / "reports" / "tables" / "noisy_filtering.csv")
    assert set(rows["reference"].dropna()) == {"heldout", "train", "ambient", "band"}


def test_fad_vs_steps_scores_each_checkpoint(workspace):
    import pandas as pd

    root, _ = workspace
    rows = pd.read_csv(root / "reports" / "tables" / "fad_vs_steps.csv")
    assert sorted(set(rows["step"])) == [3, 6] and set(rows["variant"]) == {"mel-32x32"}
    assert (rows["fad"] > 0).all() and (rows["n_eval_clips"] == 4).all()
    clips = sorted((root / "data" / "steps" / "mel-32x32" / "step_3").glob("*.wav"))
    assert len(clips) == 4
    # different weights at steps 3 and 6 generate different audio from the same noise
    early, late = sf.read(clips[0])[0], sf.read(root / "data" / "steps" / "mel-32x32" / "step_6" /
                                                 clips[0].name.replace("step_3", "step_6"))[0]
    assert not np.allclose(early, late)


def test_fad_vs_n_samples_outliers_comparisons_and_sensitivity_are_reported(workspace):
    import pandas as pd

    root, _ = workspace
    rows = pd.read_csv(root / "reports" / "tables" / "fad_vs_n_samples.csv")
    assert sorted(set(rows["n"])) == [2, 3, 4] and set(rows["reference"]) == {"heldout", "band"}
    record = _record(root, "outliers", "all")
    top = record["params"]["top"]["musicnn.mel-32x32-ddpm"]
    assert len(top) == 4 and [c["z"] for c in top] == sorted((c["z"] for c in top), reverse=True)
    assert record["metrics"]["musicnn/mel-32x32-ddpm/z_max"] == pytest.approx(top[0]["z"], abs=1e-3)
    assert {"train", "band", "real-heldout"} <= set(record["params"]["sets"])
    assert "## Top outliers" in (root / "reports" / "tables" / "outliers.md").read_text()
    compared = pd.read_csv(root / "reports" / "tables" / "comparisons.csv")
    block = compared[(compared["embedding"] == "musicnn") & (compared["reference"] == "heldout")]
    everything = set(SETS) | set(FLOORS) | {"fadtk-mubert", "toy"}  # external systems ranked beside the rest
    assert sorted(block["rank"]) == list(range(1, len(everything) + 1)) and set(block["system"]) == everything
    # every system but the first is compared with the one above
    assert block["diff_kad"].notna().sum() == len(everything) - 1
    assert "## musicnn: heldout" in (root / "reports" / "tables" / "comparisons.md").read_text()
    sensitivity = _record(root, "sensitivity", "all")["metrics"]
    for embedding in ("musicnn", "logmel-stats"):
        for kind in ("white_noise", "lowpass", "griffin_lim"):
            assert -1 <= sensitivity[f"{embedding}/heldout/{kind}/kad_rho"] <= 1
    assert "Rank correlation" in (root / "reports" / "tables" / "metric_sensitivity.md").read_text()


def test_dvc_plots_show_renders_the_figures(workspace, tmp_path):
    root, env = workspace
    done = subprocess.run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], cwd=root, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "plots" / "index.html").read_text()
    for figure in ("clip_levels", "fad_vs_steps", "fad_vs_n_samples", "variation_strength", "metric_sensitivity"):
        assert figure in page


def test_variations_and_text_conditioning_are_scored_and_reported(workspace):
    root, _ = workspace
    record = _record(root, "variation", "mel-32x32")["metrics"]
    for t in (0, 250, 750):
        ci = [record[f"T_{t}/musicnn/heldout/{k}"] for k in ("fad_ci_low", "fad", "fad_ci_high")]
        assert ci[0] <= ci[1] <= ci[2]
    assert record["T_0/embedding_distance"] == 0 and record["T_250/embedding_distance"] > 0
    assert record["T_0/mel_distance"] == 0 and record["T_750/mel_distance"] > 0
    assert 0 < record["decoded/mel_distance"]  # Griffin-Lim alone moves the clip
    assert len(list((root / "data" / "variation" / "mel-32x32" / "T_750").glob("*.wav"))) == 3
    text = _record(root, "text_conditioning", "mel-text-32x32")["metrics"]
    for group in ("orchestral", "ambient", "band", "unconditional"):
        assert text[f"{group}/musicnn/heldout/fad"] > 0 and text[f"{group}/musicnn/band/kad_se"] >= 0
    table = (root / "reports" / "tables" / "text_conditioning.md").read_text()
    for label, ref in (("orchestral", "heldout"), ("ambient", "ambient"), ("band", "band")):
        assert any(line.startswith(f"| {label}") and f"| {ref}" in line for line in table.splitlines()), table
    assert "| model" in (root / "reports" / "tables" / "variation_strength.md").read_text()


def test_one_repro_is_one_parent_run_with_every_stage_run_nested(workspace):
    from mlflow.tracking import MlflowClient

    root, env = workspace
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = MlflowClient()
    experiment = client.get_experiment_by_name("musicdiff")
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'repro'")
    first = min(parents, key=lambda r: r.info.start_time)
    children = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{first.info.run_id}'", max_results=1000)
    assert {r.data.tags["stage"] for r in children} >= {"download", "train", "evaluate", "floor", "compare", "report"}
    report = next(r for r in children if r.data.tags["stage"] == "report")
    artifacts = {a.path for a in client.list_artifacts(report.info.run_id, "reports/tables")}
    assert "reports/tables/fad.md" in artifacts and "reports/tables/comparisons.md" in artifacts
    sample = next(r for r in children if r.info.run_name == "sample@mel-32x32-ddim2")
    examples = {a.path for a in client.list_artifacts(sample.info.run_id, "examples")}
    assert any(p.endswith(".wav") for p in examples) and any(p.endswith(".png") for p in examples)


def test_a_parameter_sweep_through_the_dvc_experiment_queue(workspace):
    root, env = workspace
    for value in (-20, -6):
        queued = subprocess.run(["dvc", "exp", "run", "--queue", "-S", f"noisy_filter.max_db={value}"], cwd=root,
                                env=env, capture_output=True, text=True)
        assert queued.returncode == 0, queued.stderr
    started = subprocess.run(["dvc", "queue", "start", "-j", "1"], cwd=root, env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    import time

    for _ in range(120):  # at most 10 minutes
        status = subprocess.run(["dvc", "queue", "status"], cwd=root, env=env, capture_output=True, text=True).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    assert status.count("Success") == 2, status
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=root, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    experiments = [e for row in json.loads(shown.stdout) for e in (row.get("experiments") or [])]
    assert len(experiments) >= 2
    for exp in experiments:
        data = exp["revs"][0]["data"]
        metrics = data["metrics"]["reports/headline.json"]["data"]
        assert set(metrics) == {"fad", "kad"} and "musicnn" in metrics["fad"]
        assert not any(path.startswith("metrics/") for path in data["metrics"])  # records are not columns
    # every MLflow run of an experiment carries its name
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = MlflowClient()
    experiment = client.get_experiment_by_name("musicdiff")
    names = {exp["revs"][0]["name"] for exp in experiments}
    for name in names:
        runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.dvc_experiment = '{name}'")
        assert {r.data.tags["stage"] for r in runs} >= {"filter", "report"}, name


def test_stages_log_to_an_mlflow_tracking_server(workspace, tmp_path):
    import socket
    import time
    import urllib.request

    root, env = workspace
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                               "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        work = tmp_path / "stage"
        done = _weights_stage(root, work, ["logmel-stats"], {**env, "MLFLOW_TRACKING_URI": url})
        assert done.returncode == 0, done.stderr[-2000:]
        record = json.loads((work / "metrics" / "weights" / "all.json").read_text())
        from mlflow.tracking import MlflowClient

        run = MlflowClient(tracking_uri=url).get_run(record["run_id"])
        assert run.data.tags["stage"] == "weights" and "version.torch" in run.data.tags
    finally:
        server.terminate()
        server.wait(timeout=30)
