"""The training loop: data, model, optimiser, EMA, loop, checkpoint (readable top to bottom).

Objective (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", eq. 14, L_simple): sample a
timestep t uniformly, noise ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` and regress the
scheduler's ``prediction_type`` target (epsilon; the clean sample x_0 for "sample", as in seed 003;
``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` for "v_prediction", Salimans & Ho 2022, eq. 11)
with a mean squared error. The optimiser recipe is teticio/audio-diffusion's: AdamW 1e-4, cosine
schedule with warm-up, gradient clipping at 1.0, EMA with warm-up (inv_gamma 1, power 3/4).

Device and precision come from ``accelerate``: fp32 on CPU, bf16 on CUDA (``mixed_precision:
auto``); several processes through ``accelerate launch`` (DDP): ``batch_size`` is the batch of
one process, each step draws a global batch of ``batch_size * num_processes`` examples and every
process trains on its own slice of it (``draw_batch``). State is saved with
``Accelerator.save_state`` at the steps listed in ``checkpoint_steps`` (and at the end) into
``checkpoints/step_<N>``, written to a temporary folder and renamed, so an interrupted run resumes
from the newest complete one and continues exactly: the batch indices, noise and timesteps of step
``s`` come from ``seed + s`` (and the number of processes) alone.

Text conditioning (optional, :class:`TextConditioning`): the denoiser also receives a frozen text
encoder's token states of each example's caption (``encoder_hidden_states``, with their attention
mask), and for classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance",
Algorithm 1) the caption is replaced by the empty caption with probability ``uncond_prob``; that
coin is drawn from the same per-step generator after the batch (``draw_conditioned_batch``), so an
unconditional run draws exactly what it drew before conditioning existed.
"""

from __future__ import annotations

import math
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator, DataLoaderConfiguration
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm


@dataclass
class TrainResult:
    """What a training run produced: final step, timings (seconds) and the last loss."""

    step: int
    resumed_from: int
    final_loss: float
    seconds_per_step: float
    steps_timed: int
    device: str
    mixed_precision: str
    losses: list[float] = field(default_factory=list)
    num_processes: int = 1


@dataclass
class TextConditioning:
    """What a text-conditioned denoiser attends to, for every training example.

    ``hidden``: float32 (n_captions + 1, max_tokens, dim) token states of the text encoder, row 0
    the empty caption ``""`` (the unconditional input of classifier-free guidance); ``mask``:
    (n_captions + 1, max_tokens), 1 for a token, 0 for padding; ``caption_index``: long (examples,),
    the row of each training example's caption, in [1, n_captions]; ``uncond_prob``: probability in
    [0, 1] that an example's caption is dropped to row 0 at a training step (Ho & Salimans 2022
    train with 0.1 or 0.2).
    """

    hidden: torch.Tensor
    mask: torch.Tensor
    caption_index: torch.Tensor
    uncond_prob: float

    def validate(self, n_examples: int) -> None:
        """Raise ``ValueError`` naming the problem unless the shapes fit ``n_examples`` examples."""
        if self.hidden.ndim != 3 or len(self.hidden) < 2:
            raise ValueError(f"hidden must be (n_captions + 1, max_tokens, dim) with row 0 the empty caption, "
                             f"got shape {tuple(self.hidden.shape)}")
        if tuple(self.mask.shape) != tuple(self.hidden.shape[:2]):
            raise ValueError(f"mask must be (n_captions + 1, max_tokens) = {tuple(self.hidden.shape[:2])}, "
                             f"got {tuple(self.mask.shape)}")
        if tuple(self.caption_index.shape) != (n_examples,):
            raise ValueError(f"caption_index must give one caption row per example ({n_examples}), "
                             f"got shape {tuple(self.caption_index.shape)}")
        if self.caption_index.dtype != torch.long:
            raise ValueError(f"caption_index must be long, got {self.caption_index.dtype}")
        if n_examples and (self.caption_index.min() < 1 or self.caption_index.max() >= len(self.hidden)):
            raise ValueError(f"caption_index must lie in [1, {len(self.hidden) - 1}] (row 0 is the empty caption), "
                             f"got [{int(self.caption_index.min())}, {int(self.caption_index.max())}]")
        if not 0.0 <= float(self.uncond_prob) <= 1.0:
            raise ValueError(f"uncond_prob must lie in [0, 1], got {self.uncond_prob}")

    def to(self, device) -> TextConditioning:
        return TextConditioning(self.hidden.to(device), self.mask.to(device), self.caption_index.to(device),
                                float(self.uncond_prob))

    def inputs(self, index: torch.Tensor, drop: torch.Tensor) -> dict[str, torch.Tensor]:
        """The denoiser's keyword inputs for the examples ``index`` (batch,), with the caption of those
        where ``drop`` (batch, bool) is true replaced by the empty caption (row 0)."""
        device = self.caption_index.device
        rows = torch.where(drop.to(device), 0, self.caption_index[index.to(device)])
        return {"encoder_hidden_states": self.hidden[rows], "encoder_attention_mask": self.mask[rows]}


def diffusion_target(scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor,
                     timesteps: torch.Tensor) -> torch.Tensor:
    """The regression target of ``scheduler.config.prediction_type`` for clean ``x0`` (batch, ...).

    Raises ``ValueError`` for an unknown prediction type.
    """
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "sample":
        return x0
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, timesteps)
    raise ValueError(f"unknown prediction_type {kind!r}")


def draw_batch(generator_seed: int, n_examples: int, example_shape: tuple[int, ...], batch_size: int,
               num_timesteps: int, num_processes: int = 1, rank: int = 0,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Example indices, noise and timesteps of one training step for process ``rank``.

    The global batch of ``batch_size * num_processes`` is drawn on the CPU from a generator seeded
    with ``generator_seed``: all indices, then all noise (float32, ``example_shape`` per example),
    then all timesteps; process ``rank`` takes rows ``[rank * batch_size, (rank + 1) * batch_size)``.
    With one process this is the whole draw, so the global batch does not depend on which process
    asks, and a single-process run draws exactly what it drew before several processes were supported.
    """
    _, index, noise, timesteps = _draw_global(generator_seed, n_examples, example_shape,
                                              batch_size * num_processes, num_timesteps)
    rows = slice(rank * batch_size, (rank + 1) * batch_size)
    return index[rows], noise[rows], timesteps[rows]


def draw_conditioned_batch(generator_seed: int, n_examples: int, example_shape: tuple[int, ...], batch_size: int,
                           num_timesteps: int, uncond_prob: float, num_processes: int = 1, rank: int = 0,
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``draw_batch``'s indices, noise and timesteps (identical, from the same generator) and then,
    from that generator, the classifier-free guidance coin of each example: ``drop`` (batch, bool)
    is true with probability ``uncond_prob`` (uniform draw in [0, 1) below it) and marks the examples
    trained with the empty caption."""
    total = batch_size * num_processes
    generator, index, noise, timesteps = _draw_global(generator_seed, n_examples, example_shape, total, num_timesteps)
    drop = torch.rand((total,), generator=generator) < uncond_prob
    rows = slice(rank * batch_size, (rank + 1) * batch_size)
    return index[rows], noise[rows], timesteps[rows], drop[rows]


def _draw_global(generator_seed: int, n_examples: int, example_shape: tuple[int, ...], total: int,
                 num_timesteps: int) -> tuple[torch.Generator, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The global batch of one step (indices, noise, timesteps, in that order) and the generator after it."""
    generator = torch.Generator().manual_seed(generator_seed)
    index = torch.randint(0, n_examples, (total,), generator=generator)
    noise = torch.randn((total, *example_shape), generator=generator)
    timesteps = torch.randint(0, num_timesteps, (total,), generator=generator)
    return generator, index, noise, timesteps


def _mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def latest_checkpoint(checkpoint_dir: Path) -> tuple[int, Path] | None:
    """Newest complete ``step_<N>`` folder under ``checkpoint_dir`` as ``(N, path)``, or None."""
    found = []
    for path in checkpoint_dir.glob("step_*"):
        if path.is_dir() and (path / "COMPLETE").exists():
            found.append((int(path.name.split("_")[1]), path))
    return max(found) if found else None


def train_diffusion(
    model: torch.nn.Module,
    noise_scheduler: DDPMScheduler,
    data: torch.Tensor,
    config: dict,
    out_dir: Path,
    log_metrics: Callable[[dict, int], None] | None = None,
    resume_key: str = "",
    conditioning: TextConditioning | None = None,
) -> TrainResult:
    """Train the diffusers ``model`` to denoise ``data`` in [-1, 1]: (examples, channels, height,
    width) for 2-D models (mel, latent, DiT), (examples, channels, samples) for the waveform UNet.

    An interrupted run resumes from its newest checkpoint, but only when it was written under the
    same ``resume_key`` (a digest of everything that defines the run: data, model, schedule, training
    config, code); checkpoints of another key, or of a run that already reached ``max_steps``, are
    deleted first, so a changed configuration never continues from stale state and a forced re-run
    trains (and times) afresh. Under ``accelerate launch`` with several processes the key also names
    the number of processes (the global batch), and each process trains on its slice of the global
    batch; checkpoints are written by all processes together and completed by the main one, which
    alone logs metrics and writes the final weights.

    ``config`` keys: ``seed``, ``batch_size``, ``max_steps``, ``learning_rate``, ``warmup_steps``,
    ``adam_betas``, ``weight_decay``, ``grad_clip``, ``ema`` (``decay``, ``inv_gamma``, ``power``),
    ``checkpoint_steps`` (list of steps), ``mixed_precision`` (auto | no | bf16 | fp16),
    ``log_every``; ``batch_size`` is per process. Checkpoints and the final weights go under
    ``out_dir``: ``checkpoints/step_<N>/`` (accelerate state) and ``unet/`` + ``unet_ema/`` +
    ``scheduler/`` (diffusers ``save_pretrained``). ``log_metrics(metrics, step)`` receives the loss
    (the mean over the global batch) and learning rate, on the main process only.

    With ``conditioning`` (a ``UNet2DConditionModel``-like ``model``), each example's caption states
    go in as ``encoder_hidden_states`` / ``encoder_attention_mask``, dropped to the empty caption
    with probability ``conditioning.uncond_prob`` (classifier-free guidance training); the caller's
    ``resume_key`` should then also name the text encoder and the captions.

    Raises ``FloatingPointError`` when the loss becomes NaN or infinite (with the step), and
    ``ValueError`` for an empty dataset or a ``conditioning`` whose shapes do not fit ``data``.
    """
    if len(data) == 0:
        raise ValueError("no training examples")
    if conditioning is not None:
        conditioning.validate(len(data))
    out_dir = Path(out_dir)
    checkpoint_dir = out_dir / "checkpoints"
    max_steps = int(config["max_steps"])
    accelerator = _accelerator(config)
    _claim_for_run(accelerator, checkpoint_dir, resume_key, max_steps)
    model, optimizer, lr_scheduler, ema = _optimisation(accelerator, model, config, max_steps)
    start = _resume(accelerator, checkpoint_dir)
    data = data.to(accelerator.device)
    if conditioning is not None:
        conditioning = conditioning.to(accelerator.device)
    loop = _Loop(accelerator, model, optimizer, lr_scheduler, ema, noise_scheduler, data, conditioning, config,
                 checkpoint_dir, log_metrics)
    loop.run(start, max_steps)
    _save_final(accelerator, model, ema, noise_scheduler, out_dir)
    timed = loop.step_times[1:] if len(loop.step_times) > 1 else loop.step_times
    return TrainResult(
        step=max_steps, resumed_from=start, final_loss=loop.loss_value,
        seconds_per_step=statistics.median(timed) if timed else math.nan, steps_timed=len(timed),
        device=str(accelerator.device), mixed_precision=accelerator.mixed_precision, losses=loop.losses,
        num_processes=accelerator.num_processes,
    )


def _accelerator(config: dict) -> Accelerator:
    """The run's ``Accelerator``: device, mixed precision and processes.

    split_batches: the learning-rate schedule counts global steps, so the prepared scheduler steps once
    per optimiser step (by default accelerate steps it num_processes times, as it would for a data loader
    sharded across processes); there is no data loader here for it to affect otherwise."""
    return Accelerator(mixed_precision=_mixed_precision(config.get("mixed_precision", "auto")),
                       dataloader_config=DataLoaderConfiguration(split_batches=True))


def _claim_for_run(accelerator: Accelerator, checkpoint_dir: Path, resume_key: str, max_steps: int) -> None:
    """Keep the checkpoints only when they belong to this run (``resume_key`` and, with several processes,
    their number: another global batch never resumes) and it has not finished; otherwise start afresh."""
    if accelerator.num_processes > 1:
        resume_key = f"{resume_key}|num_processes={accelerator.num_processes}"
    if accelerator.is_main_process:
        _claim_checkpoints(checkpoint_dir, resume_key)
        finished = latest_checkpoint(checkpoint_dir)
        if finished is not None and finished[0] >= max_steps:  # a finished run: train again from scratch
            _claim_checkpoints(checkpoint_dir, "")
            _claim_checkpoints(checkpoint_dir, resume_key)
    accelerator.wait_for_everyone()


def _optimisation(accelerator: Accelerator, model: torch.nn.Module, config: dict, max_steps: int):
    """Seed torch with ``config["seed"]``, then build AdamW, the cosine schedule with warm-up and the EMA
    (registered for checkpointing); returns the prepared ``(model, optimizer, lr_scheduler, ema)``."""
    torch.manual_seed(int(config["seed"]))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config["learning_rate"], betas=tuple(config.get("adam_betas", (0.95, 0.999))),
        weight_decay=config.get("weight_decay", 1e-6), eps=1e-8,
    )
    lr_scheduler = get_scheduler(
        "cosine", optimizer=optimizer, num_warmup_steps=config.get("warmup_steps", 0),
        num_training_steps=max_steps,
    )
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    ema_cfg = config.get("ema", {})
    ema = EMAModel(
        accelerator.unwrap_model(model).parameters(), decay=ema_cfg.get("decay", 0.9999),
        use_ema_warmup=True, inv_gamma=ema_cfg.get("inv_gamma", 1.0), power=ema_cfg.get("power", 0.75),
        model_cls=type(accelerator.unwrap_model(model)), model_config=accelerator.unwrap_model(model).config,
    )
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)
    return model, optimizer, lr_scheduler, ema


def _resume(accelerator: Accelerator, checkpoint_dir: Path) -> int:
    """Load the newest complete checkpoint, if any; the step to start from (0 without one)."""
    resumed = latest_checkpoint(checkpoint_dir)
    if resumed is None:
        return 0
    start, path = resumed
    accelerator.load_state(str(path))
    return start


@dataclass
class _Loop:
    """The training steps of one run and what they measured (``losses``, ``step_times``, ``loss_value``)."""

    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: object
    ema: EMAModel
    noise_scheduler: DDPMScheduler
    data: torch.Tensor
    conditioning: TextConditioning | None
    config: dict
    checkpoint_dir: Path
    log_metrics: Callable[[dict, int], None] | None
    losses: list[float] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    loss_value: float = math.nan

    def run(self, start: int, max_steps: int) -> None:
        """Steps ``start`` to ``max_steps``: each draws its batch, steps the optimiser and the EMA, logs
        every ``log_every`` steps (and the last) and saves the checkpoints of ``checkpoint_steps``."""
        accelerator = self.accelerator
        checkpoint_steps = sorted({int(s) for s in self.config.get("checkpoint_steps", [])} | {max_steps})
        log_every = int(self.config.get("log_every", 10))
        self.model.train()
        progress = tqdm(range(start, max_steps), desc="train", initial=start, total=max_steps,
                        disable=not accelerator.is_local_main_process)
        for step in progress:
            began = time.perf_counter()
            self.loss_value = self.step(step)
            self.losses.append(self.loss_value)
            self.step_times.append(time.perf_counter() - began)
            done = step + 1
            if self.log_metrics and accelerator.is_main_process and (done % log_every == 0 or done == max_steps):
                self.log_metrics({"loss": self.loss_value, "lr": self.lr_scheduler.get_last_lr()[0],
                                  "ema_decay": self.ema.cur_decay_value or 0.0}, done)
            progress.set_postfix(loss=f"{self.loss_value:.4f}")
            if done in checkpoint_steps:
                _save_checkpoint(accelerator, self.checkpoint_dir, done)

    def step(self, step: int) -> float:
        """One optimiser step; the loss of the global batch. Raises ``FloatingPointError`` when it is not finite."""
        accelerator = self.accelerator
        loss = self.loss(step)
        # the loss of the global batch, the same on every process, so that all of them stop together
        global_loss = accelerator.reduce(loss.detach(), "mean") if accelerator.num_processes > 1 else loss
        if not torch.isfinite(global_loss):
            raise FloatingPointError(f"loss is {global_loss.item()} at step {step + 1}; stopping")
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(self.model.parameters(), self.config.get("grad_clip", 1.0))
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad()
        self.ema.step(accelerator.unwrap_model(self.model).parameters())
        return global_loss.item()

    def loss(self, step: int) -> torch.Tensor:
        """This process's loss at ``step``: its slice of the batch drawn from ``seed + step``, noised and denoised."""
        data, conditioning, noise_scheduler = self.data, self.conditioning, self.noise_scheduler
        seed, batch_size = int(self.config["seed"]), int(self.config["batch_size"])
        num_timesteps = noise_scheduler.config.num_train_timesteps
        processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        if conditioning is None:
            index, noise, timesteps = draw_batch(seed + step, len(data), tuple(data.shape[1:]), batch_size,
                                                 num_timesteps, processes, rank)
            context = {}
        else:
            index, noise, timesteps, drop = draw_conditioned_batch(
                seed + step, len(data), tuple(data.shape[1:]), batch_size, num_timesteps, conditioning.uncond_prob,
                processes, rank)
            context = conditioning.inputs(index, drop)
        x0 = data[index.to(data.device)].float()
        noise = noise.to(x0.device)
        timesteps = timesteps.to(x0.device)
        noisy = noise_scheduler.add_noise(x0, noise, timesteps)
        with self.accelerator.autocast():
            prediction = self.model(noisy, timesteps, **context).sample
        return F.mse_loss(prediction.float(), diffusion_target(noise_scheduler, x0, noise, timesteps))


def _save_final(accelerator: Accelerator, model: torch.nn.Module, ema: EMAModel, noise_scheduler: DDPMScheduler,
                out_dir: Path) -> None:
    """The main process writes ``unet/``, ``unet_ema/`` and ``scheduler/``; no process returns before they exist."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        _atomic_save_pretrained(unwrapped, out_dir / "unet")
        ema_model = type(unwrapped).from_config(unwrapped.config)
        ema.copy_to(ema_model.parameters())
        _atomic_save_pretrained(ema_model, out_dir / "unet_ema")
        _atomic_save_pretrained(noise_scheduler, out_dir / "scheduler")
    accelerator.wait_for_everyone()


def _claim_checkpoints(checkpoint_dir: Path, resume_key: str) -> None:
    """Keep ``checkpoint_dir`` only if it belongs to ``resume_key``; otherwise start it afresh."""
    marker = checkpoint_dir / "RESUME_KEY"
    if checkpoint_dir.exists() and (not marker.exists() or marker.read_text() != resume_key):
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(resume_key)


def _save_checkpoint(accelerator: Accelerator, checkpoint_dir: Path, step: int) -> None:
    """Save the state of all processes into ``step_<step>``: every process calls ``save_state`` (the
    main one writes model, optimiser, scheduler and EMA; each one its random states), then the main
    process marks the folder complete and renames it. The barriers keep the others from writing into
    a folder being cleared, and the rename from happening before they have finished."""
    final = checkpoint_dir / f"step_{step}"
    tmp = checkpoint_dir / f".tmp_step_{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "COMPLETE").write_text(str(step))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    accelerator.wait_for_everyone()


def _atomic_save_pretrained(obj, path: Path) -> None:
    tmp = path.with_name(f".tmp_{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    obj.save_pretrained(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
