"""The paper profile switch (params.yaml rewritten with comments kept) and the speed timer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from musicdiff.features.dataset import mel_dataset
from musicdiff.features.mel import MelConfig, MelTransform
from musicdiff.models.registry import build_denoiser
from musicdiff.representation import Decoder, Representation
from musicdiff.schedulers import build_noise_scheduler, build_sampler
from musicdiff.speed import time_inference

REPO = Path(__file__).resolve().parent.parent


def test_profile_paper_rewrites_params_keeping_comments_and_replacing_variants(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "pipelines" / "profiles", tmp_path / "profiles")
    before = yaml.safe_load((tmp_path / "params.yaml").read_text())
    subprocess.run([sys.executable, "-m", "musicdiff.cli", "profile", "paper", "--profiles", "profiles"],
                   cwd=tmp_path, check=True, capture_output=True)
    text = (tmp_path / "params.yaml").read_text()
    after = yaml.safe_load(text)
    assert "# Reference sets that every evaluation set is scored against" in text  # comments survive
    profile = yaml.safe_load((tmp_path / "profiles" / "paper.yaml").read_text())
    assert set(after["variants"]) == set(profile["variants"])  # CPU variants replaced, not merged
    assert "dit-64x64" in before["variants"] and after["variants"]["mel-64x64"]["model"]["layers_per_block"] == 2
    assert after["datasets"]["wesnoth"]["prepare"]["segment_s"] == 11.9
    assert after["datasets"]["ambient"] == before["datasets"]["ambient"]  # untouched keys kept
    assert after["train"]["seed"] == before["train"]["seed"] and after["train"]["max_steps"] == 40000
    study = subprocess.run([sys.executable, "-m", "musicdiff.cli", "profile", "cpu-study", "--dry-run", "--profiles",
                            "profiles"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    study = yaml.safe_load(study)
    assert len(study["samples"]) == 20 and {"drums", "chorales"} <= set(study["reference_sets"])
    assert sum(s.get("headline", False) for s in study["samples"].values()) == 5 and study["bench"]["suites"] == ["fadtk"]
    missing = subprocess.run([sys.executable, "-m", "musicdiff.cli", "profile", "nope", "--profiles", "profiles"],
                             cwd=tmp_path, capture_output=True, text=True)
    assert missing.returncode == 2 and "paper" in missing.stderr


@pytest.fixture(scope="module")
def tiny_mel_model(fadtk_clips):
    config = MelConfig(n_mels=16, griffin_lim_iters=2)
    data = mel_dataset(fadtk_clips[:2], MelTransform(config), frames=32, progress=False)
    model = build_denoiser("mel", {"block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "DownBlock2D"],
                                   "up_block_types": ["UpBlock2D", "UpBlock2D"], "layers_per_block": 1, "attention_head_dim": 4,
                                   "norm_num_groups": 4}, tuple(data.shape[1:]))
    representation = Representation("mel", 22050, tuple(data.shape[1:]), frames=32, mel=config.to_dict())
    return model, representation


def test_time_inference_reports_medians_per_second_of_audio(tiny_mel_model):
    model, representation = tiny_mel_model
    noise = build_noise_scheduler({"num_train_timesteps": 100, "prediction_type": "sample"})
    result = time_inference(model, build_sampler("ddim", noise), Decoder(representation), representation.shape, 4,
                            22050, batch_size=2, warmup=1, repeats=3)
    assert len(result.denoise_seconds) == len(result.decode_seconds) == 3
    assert result.audio_seconds == pytest.approx(2 * 31 * 256 / 22050)
    assert result.denoise_rtf > 0 and result.decode_rtf > 0
    assert result.seconds_per_step == pytest.approx(sorted(result.denoise_seconds)[1] / 4)
    with pytest.raises(ValueError, match="at least 3"):
        time_inference(model, build_sampler("ddim", noise), Decoder(representation), representation.shape, 2, 22050,
                       repeats=2)


def test_decoder_checks_shapes_and_needs_the_vae_of_a_latent_model(tiny_mel_model, tmp_path):
    _, representation = tiny_mel_model
    audio = Decoder(representation)(torch.zeros(1, *representation.shape))
    assert audio.shape == (1, representation.audio_samples) == (1, 31 * 256)
    with pytest.raises(ValueError, match="expected samples of shape"):
        Decoder(representation)(torch.zeros(1, 1, 8, 8))
    latent = Representation("latent", 22050, (1, 8, 16), frames=32, mel=representation.mel)
    with pytest.raises(FileNotFoundError, match="must contain the VAE"):
        Decoder(latent, tmp_path)
    representation.save(tmp_path)
    assert Representation.load(tmp_path) == representation
    assert Representation("waveform", 22050, (1, 2048), samples=2048).resolution == "[1, 2048]"
    assert latent.resolution == "[32, 16] [16, 8]"
