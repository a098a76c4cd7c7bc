"""Tiny trained model folders of the mel, waveform and latent families, built on real music (the clips
fadtk ships) the way the features, vae and train stages build them, for the creative-tool tests."""

from __future__ import annotations

from pathlib import Path

import torch

SR = 22050
SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                prediction_type="sample", clip_sample=True)
UNET = dict(block_out_channels=[16, 32], down_block_types=["DownBlock2D", "AttnDownBlock2D"],
            up_block_types=["AttnUpBlock2D", "UpBlock2D"], layers_per_block=1, norm_num_groups=8,
            attention_head_dim=8)
TRAIN = dict(seed=0, batch_size=8, learning_rate=2e-3, warmup_steps=5, grad_clip=1.0, ema={"decay": 0.99},
             checkpoint_steps=[], mixed_precision="no", log_every=50)


def train_folder(family: str, clips: list[Path], out: Path, steps: int = 150) -> Path:
    """Train a tiny ``family`` (mel | waveform | latent) denoiser on ``clips`` into the model folder ``out``
    (unet_ema/, scheduler/, representation.json and vae/ for latents). Mel windows are [32, 32]
    ([frames, mels], 0.37 s), waveform windows 4096 samples (0.19 s), latents 8 x 8 of the [32, 32] mels."""
    from musicdiff.features.dataset import mel_dataset, waveform_dataset
    from musicdiff.features.mel import MelConfig, MelTransform
    from musicdiff.generation.latent_codec import encode_latents
    from musicdiff.generation.models.latent import build_vae, train_vae
    from musicdiff.generation.models.registry import build_denoiser
    from musicdiff.generation.representation import Representation
    from musicdiff.generation.schedulers import build_noise_scheduler
    from musicdiff.generation.training import train_diffusion

    torch.manual_seed(0)
    config = MelConfig(n_mels=32, griffin_lim_iters=16)
    schedule = dict(SCHEDULE, clip_sample=family != "latent")
    if family == "waveform":
        data = waveform_dataset(clips, SR, 4096, crops_per_clip=8, progress=False)
        representation = Representation("waveform", SR, (1, 4096), samples=4096)
        model = build_denoiser("waveform", dict(
            block_out_channels=[8, 16, 16, 32, 32],
            down_block_types=["DownBlock1DNoSkip", "DownBlock1D", "DownBlock1D", "DownBlock1D", "AttnDownBlock1D"],
            up_block_types=["AttnUpBlock1D", "UpBlock1D", "UpBlock1D", "UpBlock1D", "UpBlock1DNoSkip"],
            mid_block_type="UNetMidBlock1D", time_embedding_dim=16), (1, 4096))
    else:
        data = mel_dataset(clips, MelTransform(config), frames=32, crops_per_clip=8, progress=False)
        representation = Representation("mel", SR, (1, 32, 32), frames=32, mel=config.to_dict())
        if family == "latent":
            vae = build_vae(dict(block_out_channels=[8, 8, 8], layers_per_block=1, norm_num_groups=4, sample_size=32))
            scale = train_vae(vae, data, dict(seed=0, batch_size=8, max_steps=steps, learning_rate=2e-3,
                                              kl_weight=1e-6, log_every=50), out)["latent_scale"]
            data = encode_latents(vae, data, scale)
            representation = Representation("latent", SR, tuple(data.shape[1:]), frames=32, mel=config.to_dict())
        model = build_denoiser(family, UNET, tuple(data.shape[1:]))
    train_diffusion(model, build_noise_scheduler(schedule), data, dict(TRAIN, max_steps=steps), out)
    representation.save(out)
    return out
