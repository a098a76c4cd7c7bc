"""Training loop and samplers on real mel spectrograms: learning, resume, NaN guard, shared betas,
several processes (DDP on CPU through ``accelerate launch``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from musicdiff.features.dataset import mel_dataset
from musicdiff.features.mel import MelConfig, MelTransform
from musicdiff.generation.models.mel import build_mel_unet
from musicdiff.generation.sampling import generate
from musicdiff.generation.schedulers import build_noise_scheduler, build_sampler
from musicdiff.generation.training import draw_batch, latest_checkpoint, train_diffusion

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


def _draw_before_ddp(generator_seed, data, batch_size, num_timesteps):
    """The draw of one step as train_diffusion made it before it supported several processes."""
    generator = torch.Generator().manual_seed(generator_seed)
    index = torch.randint(0, len(data), (batch_size,), generator=generator)
    x0 = data[index].float()
    noise = torch.randn(x0.shape, generator=generator)
    timesteps = torch.randint(0, num_timesteps, (batch_size,), generator=generator)
    return index, noise, timesteps


def test_one_process_draws_and_trains_exactly_as_before(mels, tmp_path):
    scheduler = build_noise_scheduler(SCHEDULE)
    shape = tuple(mels.shape[1:])
    for step in range(6):
        old = _draw_before_ddp(step, mels, 4, 100)
        for new, before in zip(draw_batch(step, len(mels), shape, 4, 100), old):
            assert torch.equal(new, before)
        # two processes split the draw of one process with the global batch
        ranks = [draw_batch(step, len(mels), shape, 4, 100, num_processes=2, rank=r) for r in (0, 1)]
        for part, whole in zip(zip(*ranks), draw_batch(step, len(mels), shape, 8, 100)):
            assert torch.equal(torch.cat(part), whole)
        assert not torch.equal(ranks[0][1], ranks[1][1])  # the ranks never share noise

    torch.manual_seed(0)
    model = build_mel_unet(TINY, 16, 32)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_diffusion(model, scheduler, mels, _config(max_steps=2, checkpoint_steps=[]), tmp_path)
    assert result.num_processes == 1 and len(result.losses) == 2
    # the first loss is the one of the old draw on the initial weights, to the last bit
    fresh = build_mel_unet(TINY, 16, 32)
    fresh.load_state_dict(init)
    index, noise, timesteps = _draw_before_ddp(0, mels, 4, 100)
    x0 = mels[index].float()
    with torch.no_grad():
        prediction = fresh(scheduler.add_noise(x0, noise, timesteps), timesteps).sample
    assert torch.nn.functional.mse_loss(prediction.float(), noise).item() == result.losses[0]


DDP_SCRIPT = """
    import json
    import sys
    from pathlib import Path

    import torch

    import musicdiff
    from musicdiff.generation import training
    from musicdiff.generation.models.mel import build_mel_unet
    from musicdiff.generation.schedulers import build_noise_scheduler

    work = Path(sys.argv[1])
    args = json.loads((work / "args.json").read_text())
    draws, logged = [], []
    real_draw = training.draw_batch

    def recording_draw(*a, **k):
        drawn = real_draw(*a, **k)
        draws.append(drawn[0].tolist())
        return drawn

    training.draw_batch = recording_draw
    torch.manual_seed(0)
    model = build_mel_unet(args["model"], 16, 32)
    result = training.train_diffusion(
        model, build_noise_scheduler(args["schedule"]), torch.load(work / "mels.pt"), args["config"],
        work / "out", log_metrics=lambda metrics, step: logged.append(step))
    from accelerate import PartialState

    rank = PartialState().process_index
    (work / f"rank_{rank}.json").write_text(json.dumps({
        "num_processes": result.num_processes, "draws": draws, "losses": result.losses, "logged": logged,
        "musicdiff": musicdiff.__file__}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_train_on_disjoint_slices_of_one_global_batch(mels, tmp_path):
    """``accelerate launch`` with two CPU processes (gloo). ``accelerate launch --cpu --num_processes 2``
    starts a single process in accelerate 1.15 (its simple launcher expects ``mpirun`` for several
    CPU processes), so the test launches through torchrun (``--multi_gpu``) with
    ``ACCELERATE_USE_CPU=true``, which gives ``DistributedType.MULTI_CPU`` on the gloo backend."""
    repo = Path(__file__).resolve().parents[1]
    config = _config(max_steps=6, checkpoint_steps=[3])
    (tmp_path / "args.json").write_text(json.dumps({"model": TINY, "schedule": SCHEDULE, "config": config}))
    torch.save(mels, tmp_path / "mels.pt")
    script = tmp_path / "train_ddp.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
           "ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    launched = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", str(_free_port()), str(script), str(tmp_path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert launched.returncode == 0, launched.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert all(Path(r["musicdiff"]).resolve().is_relative_to(repo) for r in ranks)  # this checkout's code
    assert [r["num_processes"] for r in ranks] == [2, 2]
    # each step: the two ranks took the two halves of the global batch drawn from seed + step
    for step in range(6):
        whole = draw_batch(step, len(mels), tuple(mels.shape[1:]), 8, 100)[0].tolist()
        assert ranks[0]["draws"][step] + ranks[1]["draws"][step] == whole
    assert ranks[0]["draws"][0] != ranks[1]["draws"][0]
    # the loss is that of the global batch on every rank; only the main process logs it
    assert ranks[0]["losses"] == ranks[1]["losses"]
    assert ranks[0]["logged"] == [1, 2, 3, 4, 5, 6] and ranks[1]["logged"] == []
    out = tmp_path / "out"
    assert (out / "unet" / "config.json").exists() and (out / "unet_ema" / "config.json").exists()
    for step in (3, 6):
        checkpoint = out / "checkpoints" / f"step_{step}"
        assert (checkpoint / "COMPLETE").read_text() == str(step)
        assert (checkpoint / "random_states_0.pkl").exists() and (checkpoint / "random_states_1.pkl").exists()
    assert not list((out / "checkpoints").glob(".tmp_*"))
    # DDP averages the gradients of the halves: the run trains like one process on the global batch
    torch.manual_seed(0)
    single = train_diffusion(build_mel_unet(TINY, 16, 32), build_noise_scheduler(SCHEDULE), mels,
                             _config(max_steps=6, batch_size=8, checkpoint_steps=[]), tmp_path / "single")
    assert single.num_processes == 1
    assert ranks[0]["losses"] == pytest.approx(single.losses, rel=1e-5)
