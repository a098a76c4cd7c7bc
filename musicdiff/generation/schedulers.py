"""Noise schedule and samplers built from one shared configuration.

Training uses ``DDPMScheduler`` (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", eq. 4
for the forward process ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``). Every sampler is
created with ``from_config`` of that scheduler, so DDPM, DDIM (Song et al. 2021, eq. 12, eta = 0)
and DPM-Solver++ (Lu et al. 2022) share exactly the same betas and ``prediction_type``.
"""

from __future__ import annotations

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

SAMPLERS = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "dpmsolver++": DPMSolverMultistepScheduler,
}


def build_noise_scheduler(config: dict) -> DDPMScheduler:
    """The training noise schedule from ``config`` (``num_train_timesteps``, ``beta_schedule``,
    ``beta_start``, ``beta_end``, ``prediction_type``: epsilon | sample | v_prediction,
    ``clip_sample``)."""
    return DDPMScheduler(
        num_train_timesteps=config["num_train_timesteps"],
        beta_schedule=config.get("beta_schedule", "linear"),
        beta_start=config.get("beta_start", 1e-4),
        beta_end=config.get("beta_end", 0.02),
        prediction_type=config.get("prediction_type", "epsilon"),
        clip_sample=config.get("clip_sample", True),
    )


def build_sampler(name: str, noise_scheduler: DDPMScheduler):
    """A sampler ``name`` (ddpm | ddim | dpmsolver++) sharing ``noise_scheduler``'s betas.

    Raises ``KeyError`` naming the known samplers for an unknown name.
    """
    if name not in SAMPLERS:
        raise KeyError(f"unknown sampler {name!r}; known: {sorted(SAMPLERS)}")
    kwargs = {"algorithm_type": "dpmsolver++"} if name == "dpmsolver++" else {}
    return SAMPLERS[name].from_config(noise_scheduler.config, **kwargs)
