"""Training loop and samplers on real mel spectrograms: learning, resume, NaN guard, shared betas."""

from __future__ import annotations


import pytest
import torch

from musicdiff.features.dataset import mel_dataset
from musicdiff.features.mel import MelConfig, MelTransform
from musicdiff.models.mel import build_mel_unet
from musicdiff.sampling import generate
from musicdiff.schedulers import build_noise_scheduler, build_sampler
from musicdiff.training import latest_checkpoint, train_diffusion

TINY = dict(block_out_channels=[8, 16], down_block_types=["DownBlock2D", "AttnDownBlock2D"],
            up_block_types=["AttnUpBlock2D", "UpBlock2D"], layers_per_block=1, norm_num_groups=4,
            attention_head_dim=4)
SCHEDULE = dict(num_train_timesteps=100, beta_schedule="linear", beta_start=1e-3, beta_end=0.2,
                prediction_type="epsilon", clip_sample=True)


def _config(**overrides):
    config = dict(seed=0, batch_size=4, max_steps=6, learning_rate=1e-3, warmup_steps=1, grad_clip=1.0,
                  ema={"decay": 0.999}, checkpoint_steps=[3], mixed_precision="no", log_every=1)
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def mels(fadtk_clips):
    return mel_dataset(fadtk_clips[:6], MelTransform(MelConfig(n_mels=16)), frames=32, progress=False)


def test_mel_dataset_has_the_declared_resolution(mels):
    assert mels.shape == (6, 1, 16, 32)
    assert mels.min() >= -1 and mels.max() <= 1 and mels.std() > 0.1


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_training_lowers_the_loss_for_every_prediction_type(mels, tmp_path, prediction_type):
    torch.manual_seed(0)
    model = build_mel_unet(TINY, n_mels=16, frames=32)
    scheduler = build_noise_scheduler({**SCHEDULE, "prediction_type": prediction_type})
    result = train_diffusion(model, scheduler, mels, _config(max_steps=40, checkpoint_steps=[]), tmp_path)
    first, last = sum(result.losses[:8]) / 8, sum(result.losses[-8:]) / 8
    assert last < first
    assert (tmp_path / "unet_ema" / "config.json").exists() and (tmp_path / "scheduler").exists()


def test_interrupted_training_resumes_to_the_same_weights(mels, tmp_path):
    scheduler = build_noise_scheduler(SCHEDULE)
    torch.manual_seed(0)
    straight = build_mel_unet(TINY, 16, 32)
    init = {k: v.clone() for k, v in straight.state_dict().items()}
    train_diffusion(straight, scheduler, mels, _config(), tmp_path / "a")

    class Interrupt(Exception):
        pass

    def interrupt_at_step_5(metrics, step):
        if step == 5:
            raise Interrupt

    resumed = build_mel_unet(TINY, 16, 32)
    resumed.load_state_dict(init)
    with pytest.raises(Interrupt):
        train_diffusion(resumed, scheduler, mels, _config(), tmp_path / "b", log_metrics=interrupt_at_step_5)
    assert latest_checkpoint(tmp_path / "b" / "checkpoints")[0] == 3
    fresh = build_mel_unet(TINY, 16, 32)
    fresh.load_state_dict(init)
    result = train_diffusion(fresh, scheduler, mels, _config(), tmp_path / "b")
    assert result.resumed_from == 3
    for (name, a), b in zip(straight.state_dict().items(), fresh.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_checkpoints_of_another_configuration_are_not_resumed(mels, tmp_path):
    scheduler = build_noise_scheduler(SCHEDULE)
    train_diffusion(build_mel_unet(TINY, 16, 32), scheduler, mels, _config(), tmp_path, resume_key="a")
    assert latest_checkpoint(tmp_path / "checkpoints")[0] == 6
    # a finished run is trained again from scratch (and timed), not "resumed" at its last step
    again = train_diffusion(build_mel_unet(TINY, 16, 32), scheduler, mels, _config(), tmp_path, resume_key="a")
    assert again.resumed_from == 0 and again.steps_timed == 5

    def stop_at_5(metrics, step):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_diffusion(build_mel_unet(TINY, 16, 32), scheduler, mels, _config(), tmp_path, stop_at_5, "a")
    changed = train_diffusion(build_mel_unet(TINY, 16, 32), scheduler, mels, _config(), tmp_path, resume_key="b")
    assert changed.resumed_from == 0 and latest_checkpoint(tmp_path / "checkpoints")[0] == 6


def test_nan_loss_stops_training_with_the_step(mels, tmp_path):
    model = build_mel_unet(TINY, 16, 32)
    bad = mels.clone()
    bad[:] = float("nan")
    with pytest.raises(FloatingPointError, match="step 1"):
        train_diffusion(model, build_noise_scheduler(SCHEDULE), bad, _config(), tmp_path)


def test_ddpm_and_ddim_share_betas_and_generate_reproducibly():
    ddpm = build_noise_scheduler(SCHEDULE)
    ddim, dpm = build_sampler("ddim", ddpm), build_sampler("dpmsolver++", ddpm)
    assert torch.equal(ddpm.betas, ddim.betas) and torch.equal(ddpm.betas, dpm.betas)
    assert ddim.config.prediction_type == ddpm.config.prediction_type
    torch.manual_seed(0)
    model = build_mel_unet(TINY, 16, 32)
    a = generate(model, ddim, 3, (1, 16, 32), 5, seed=7, batch_size=2, progress=False)
    b = generate(model, build_sampler("ddim", ddpm), 3, (1, 16, 32), 5, seed=7, batch_size=2, progress=False)
    assert a.samples.shape == (3, 1, 16, 32) and torch.equal(a.samples, b.samples)
    c = generate(model, build_sampler("ddpm", ddpm), 2, (1, 16, 32), 10, seed=7, batch_size=2, progress=False)
    assert torch.isfinite(c.samples).all() and not torch.equal(c.samples, a.samples[:2])
    with pytest.raises(KeyError, match="known"):
        build_sampler("euler", ddpm)


def test_resolution_must_fit_the_unet():
    with pytest.raises(ValueError, match="divisible"):
        build_mel_unet(TINY, n_mels=15, frames=32)
