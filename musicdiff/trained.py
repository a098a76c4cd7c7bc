"""A trained variant folder (``train`` stage output) loaded for generation: denoiser, noise schedule,
representation and decoder, from the final EMA weights or from the EMA state of a checkpoint.

Folder layout (written by :func:`musicdiff.training.train_diffusion`): ``unet_ema/`` (final EMA
weights), ``scheduler/``, ``representation.json``, ``vae/`` for latent variants, and
``checkpoints/step_<N>/`` (accelerate state; ``custom_checkpoint_0.pkl`` is the diffusers
``EMAModel`` state at step N).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from musicdiff.models.registry import load_denoiser
from musicdiff.representation import Decoder, Representation
from musicdiff.sampling import GenerationResult, generate
from musicdiff.schedulers import build_sampler

EMA_STATE = "custom_checkpoint_0.pkl"


def checkpoint_steps(model_dir: Path) -> list[int]:
    """Steps of the complete checkpoints under ``model_dir/checkpoints``, ascending."""
    found = []
    for path in (Path(model_dir) / "checkpoints").glob("step_*"):
        if (path / "COMPLETE").exists() and path.name[5:].isdigit():
            found.append(int(path.name[5:]))
    return sorted(found)


def load_checkpoint_ema(family: str, model_dir: Path, step: int) -> torch.nn.Module:
    """The denoiser of ``family`` with the EMA weights saved at training step ``step``.

    The architecture comes from ``model_dir/unet_ema/config.json``; the weights from the checkpoint's
    ``EMAModel`` state, copied with diffusers' ``EMAModel.copy_to``. Raises ``FileNotFoundError``
    naming the steps that exist when ``step`` has no complete checkpoint, and ``ValueError`` when the
    state does not fit the architecture.
    """
    from diffusers.training_utils import EMAModel

    model_dir = Path(model_dir)
    folder = model_dir / "checkpoints" / f"step_{step}"
    if not (folder / "COMPLETE").exists() or not (folder / EMA_STATE).exists():
        raise FileNotFoundError(f"no complete checkpoint with EMA state at step {step} in {model_dir / 'checkpoints'}; "
                                f"steps present: {checkpoint_steps(model_dir)} (train.checkpoint_steps in params.yaml)")
    model = load_denoiser(family, model_dir / "unet_ema")  # architecture and final weights, replaced below
    state = torch.load(folder / EMA_STATE, map_location="cpu", weights_only=True)
    parameters = list(model.parameters())
    if len(state["shadow_params"]) != len(parameters):
        raise ValueError(f"EMA state at step {step} holds {len(state['shadow_params'])} tensors; the model has "
                         f"{len(parameters)} parameters")
    ema = EMAModel(parameters)
    ema.load_state_dict(state)
    ema.copy_to(parameters)
    return model


@dataclass
class TrainedVariant:
    """Everything needed to generate audio from a trained variant."""

    family: str
    model: torch.nn.Module
    representation: Representation
    noise_scheduler: object
    decoder: Decoder

    @classmethod
    def load(cls, family: str, model_dir: Path, step: int | None = None) -> "TrainedVariant":
        """Load ``model_dir``: the final EMA weights, or those of checkpoint ``step``.

        Raises ``FileNotFoundError`` for a missing folder, representation, VAE or checkpoint."""
        from diffusers import DDPMScheduler

        model_dir = Path(model_dir)
        representation = Representation.load(model_dir)
        model = load_denoiser(family, model_dir / "unet_ema") if step is None else \
            load_checkpoint_ema(family, model_dir, step)
        return cls(family, model, representation, DDPMScheduler.from_pretrained(model_dir / "scheduler"),
                   Decoder(representation, model_dir))

    def sampler(self, scheduler: str):
        """A fresh sampler (ddpm | ddim | dpmsolver++) built from the training noise schedule."""
        return build_sampler(scheduler, self.noise_scheduler)

    def generate_audio(self, sampler_cfg: dict, n: int, seed: int, batch_size: int, device: str = "cpu",
                       progress: bool = True) -> tuple[torch.Tensor, GenerationResult, float]:
        """Generate ``n`` clips with ``sampler_cfg`` (``scheduler``, ``num_inference_steps``, ``eta``) and
        decode them: returns audio (n, samples) at ``representation.sample_rate`` Hz, the generation
        result and the decoding time in seconds."""
        result = generate(self.model, self.sampler(sampler_cfg["scheduler"]), n, self.representation.shape,
                          sampler_cfg["num_inference_steps"], seed=seed, batch_size=batch_size, device=device,
                          eta=sampler_cfg.get("eta", 0.0), progress=progress)
        began = time.perf_counter()
        audio = self.decoder(result.samples)
        return audio, result, time.perf_counter() - began
