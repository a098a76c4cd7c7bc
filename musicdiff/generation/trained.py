"""A trained variant folder (``train`` stage output) loaded for generation: denoiser, noise schedule,
representation and decoder, from the final EMA weights or from the EMA state of a checkpoint.

Folder layout (written by :func:`musicdiff.generation.training.train_diffusion`): ``unet_ema/`` (final EMA
weights), ``scheduler/``, ``representation.json``, ``vae/`` for latent variants, and
``checkpoints/step_<N>/`` (accelerate state; ``custom_checkpoint_0.pkl`` is the diffusers
``EMAModel`` state at step N). A text-conditioned (``mel_text``) folder also holds
``conditioning.json``: the text encoder's name, weight SHA-256 and token count, the captions it was
trained on by label, the caption dropout and the default guidance scale.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from musicdiff.generation.models.registry import family_module, load_denoiser
from musicdiff.generation.representation import Decoder, Encoder, Representation
from musicdiff.generation.sampling import GenerationResult, TextCondition, generate
from musicdiff.generation.schedulers import build_sampler

EMA_STATE = "custom_checkpoint_0.pkl"
CONDITIONING = "conditioning.json"
_CLASS_FAMILIES = {"UNet1DModel": "waveform", "UNet2DConditionModel": "mel_text", "UnconditionalDiT2DModel": "dit"}


class CorruptModelError(RuntimeError):
    """A weight file of a trained model folder exists but cannot be read (truncated, overwritten); the
    message names the file, the cause and the command that writes it again."""


def _retrain_hint(model_dir: Path) -> str:
    return f"re-run `dvc repro train@{Path(model_dir).resolve().name}` to write it again"


def _cause(error: BaseException) -> str:
    """``Type: first line of the message`` (at most 160 characters), for one-line errors."""
    text = (str(error).strip().splitlines() or ["no detail"])[0]
    return f"{type(error).__name__}: {text[:160]}"


def _weight_file(folder: Path) -> Path:
    """The weight file diffusers reads from a ``save_pretrained`` folder (the folder itself when none is found)."""
    found = sorted(Path(folder).glob("*.safetensors")) or sorted(Path(folder).glob("*.bin"))
    return found[0] if found else Path(folder)


def _load_final_denoiser(family: str, model_dir: Path) -> torch.nn.Module:
    """``load_denoiser`` of ``model_dir/unet_ema``; raises :class:`CorruptModelError` naming the weight file
    when diffusers cannot read it (it raises a bare ``OSError``)."""
    try:
        return load_denoiser(family, model_dir / "unet_ema")
    except OSError as error:
        raise CorruptModelError(f"{_weight_file(model_dir / 'unet_ema')}: cannot be read as model weights "
                                f"(diffusers: {_cause(error)}); the file is damaged or incomplete: "
                                f"{_retrain_hint(model_dir)}") from error


def infer_family(model_dir: Path) -> str:
    """The variant family (mel | waveform | latent | dit | mel_text) of a trained model folder, read from
    the denoiser class in ``unet_ema/config.json`` and the representation (a ``UNet2DModel`` on VAE
    latents is ``latent``). Raises ``FileNotFoundError`` naming the missing file and ``ValueError``
    for a denoiser class musicdiff does not train."""
    model_dir = Path(model_dir)
    config = model_dir / "unet_ema" / "config.json"
    if not config.exists():
        raise FileNotFoundError(f"{config} is missing: {model_dir} is not a model folder written by the train "
                                "stage (expected unet_ema/, scheduler/, representation.json)")
    name = json.loads(config.read_text()).get("_class_name", "")
    if name in _CLASS_FAMILIES:
        return _CLASS_FAMILIES[name]
    if name == "UNet2DModel":
        return "latent" if Representation.load(model_dir).kind == "latent" else "mel"
    raise ValueError(f"{config}: denoiser class {name!r} is not one musicdiff trains")


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
    state does not fit the architecture, and :class:`CorruptModelError` naming the state file (or the final
    weights) when it cannot be read.
    """
    from diffusers.training_utils import EMAModel

    model_dir = Path(model_dir)
    folder = model_dir / "checkpoints" / f"step_{step}"
    if not (folder / "COMPLETE").exists() or not (folder / EMA_STATE).exists():
        raise FileNotFoundError(f"no complete checkpoint with EMA state at step {step} in {model_dir / 'checkpoints'}; "
                                f"steps present: {checkpoint_steps(model_dir)} (train.checkpoint_steps in params.yaml)")
    model = _load_final_denoiser(family, model_dir)  # architecture and final weights, replaced below
    try:
        with warnings.catch_warnings():  # a damaged file makes torch warn about its pickle protocol first
            warnings.simplefilter("ignore")
            state = torch.load(folder / EMA_STATE, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds (UnpicklingError, RuntimeError, EOFError)
        raise CorruptModelError(f"{folder / EMA_STATE}: the EMA state of checkpoint step {step} cannot be read "
                                f"(torch.load: {type(error).__name__}); the checkpoint is damaged or incomplete: "
                                f"{_retrain_hint(model_dir)}, or pick another --step of {checkpoint_steps(model_dir)}"
                                ) from error
    if not isinstance(state, dict) or "shadow_params" not in state:
        raise CorruptModelError(f"{folder / EMA_STATE}: not an EMA state (no shadow_params); {_retrain_hint(model_dir)}")
    parameters = list(model.parameters())
    if len(state["shadow_params"]) != len(parameters):
        raise ValueError(f"{folder / EMA_STATE}: EMA state at step {step} holds {len(state['shadow_params'])} tensors; the model has "
                         f"{len(parameters)} parameters; {_retrain_hint(model_dir)}")
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
    conditioning: dict | None = None
    _text_encoder: object = field(default=None, repr=False)

    @classmethod
    def load(cls, family: str | None, model_dir: Path, step: int | None = None,
             decode: dict | None = None) -> "TrainedVariant":
        """Load ``model_dir``: the final EMA weights, or those of checkpoint ``step``; ``family`` None reads
        it from the folder (:func:`infer_family`); ``decode`` overrides the decoder's decode-only settings
        (Griffin-Lim iterations and momentum, see ``representation.Decoder``).

        Raises ``FileNotFoundError`` for a missing folder, representation, VAE, checkpoint or, for a
        text-conditioned model, ``conditioning.json``; :class:`CorruptModelError` (a ``RuntimeError``) naming
        a weight file that cannot be read; ``ValueError`` naming a broken ``representation.json``."""
        from diffusers import DDPMScheduler

        model_dir = Path(model_dir)
        family = family or infer_family(model_dir)
        representation = Representation.load(model_dir)
        model = _load_final_denoiser(family, model_dir) if step is None else \
            load_checkpoint_ema(family, model_dir, step)
        conditioning = None
        if family == "mel_text":
            path = model_dir / CONDITIONING
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: a text-conditioned model folder names its text encoder there")
            conditioning = json.loads(path.read_text())
        return cls(family, model, representation, DDPMScheduler.from_pretrained(model_dir / "scheduler"),
                   Decoder(representation, model_dir, decode), conditioning)

    @property
    def encoder(self) -> Encoder:
        """Audio -> this variant's tensors (the creative tools' way in)."""
        return Encoder(self.representation, self.decoder)

    @property
    def captions(self) -> list[str]:
        """The captions the text-conditioned model was trained on, label by label (empty otherwise)."""
        if not self.conditioning:
            return []
        return [c for label in sorted(self.conditioning["captions"]) for c in self.conditioning["captions"][label]]

    def text_condition(self, captions: list[str], guidance_scale: float | None = None) -> TextCondition | None:
        """The cross-attention inputs for one caption per clip (None for an unconditional variant).

        ``guidance_scale`` defaults to the one in ``conditioning.json``. Raises ``ValueError`` when the
        text encoder found here is not the one the model was trained with (weight SHA-256 differs) or
        when captions are given to an unconditional model."""
        if self.conditioning is None:
            if captions and any(captions):
                raise ValueError(f"the {self.family} variant is not text-conditioned; captions cannot be used")
            return None
        if self._text_encoder is None:
            c = self.conditioning  # only the text-conditioned family imports a text encoder
            encoder = family_module(self.family).load_text_encoder(c["text_encoder"], int(c["max_tokens"]))
            if encoder.weights_sha256 != c["weights_sha256"]:
                raise ValueError(f"text encoder {c['text_encoder']!r} has weights {encoder.weights_sha256[:12]}, the "
                                 f"model was trained with {c['weights_sha256'][:12]}")
            self._text_encoder = encoder
        hidden, mask = self._text_encoder.encode(list(captions))
        uncond_hidden, uncond_mask = self._text_encoder.encode([""])
        scale = self.conditioning["guidance_scale"] if guidance_scale is None else guidance_scale
        return TextCondition(hidden, mask, uncond_hidden, uncond_mask, float(scale))

    def default_captions(self, n: int) -> list[str]:
        """Captions for ``n`` clips of a benchmark set: the training captions in turn (empty strings for
        an unconditional variant)."""
        known = self.captions
        return [known[i % len(known)] for i in range(n)] if known else [""] * n

    def sampler(self, scheduler: str):
        """A fresh sampler (ddpm | ddim | dpmsolver++) built from the training noise schedule."""
        return build_sampler(scheduler, self.noise_scheduler)

    def generate_audio(self, sampler_cfg: dict, n: int, seed: int, batch_size: int, device: str = "cpu",
                       progress: bool = True, captions: list[str] | None = None,
                       guidance_scale: float | None = None) -> tuple[torch.Tensor, GenerationResult, float]:
        """Generate ``n`` clips with ``sampler_cfg`` (``scheduler``, ``num_inference_steps``, ``eta``) and
        decode them: returns audio (n, samples) at ``representation.sample_rate`` Hz, the generation
        result and the decoding time in seconds. A text-conditioned variant takes one caption per clip
        (default: :meth:`default_captions`) and ``guidance_scale`` (default: its own)."""
        condition = self.text_condition(captions or self.default_captions(n), guidance_scale) \
            if self.conditioning else None
        result = generate(self.model, self.sampler(sampler_cfg["scheduler"]), n, self.representation.shape,
                          sampler_cfg["num_inference_steps"], seed=seed, batch_size=batch_size, device=device,
                          eta=sampler_cfg.get("eta", 0.0), progress=progress, condition=condition)
        began = time.perf_counter()
        audio = self.decoder(result.samples)
        return audio, result, time.perf_counter() - began
