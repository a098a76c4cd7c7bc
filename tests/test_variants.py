"""Model variants: published parameter counts at paper size, and every CPU-size variant training and
sampling on real audio; the VAE round trip and latent scale; the DiT's and waveform UNet's input checks.

Paper-size models are only ever built on the meta device (no memory, no compute).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet1DModel

from musicdiff.data.audio import load_audio
from musicdiff.features.dataset import mel_dataset
from musicdiff.features.mel import MelConfig, MelTransform
from musicdiff.generation.models.dit import build_dit
from musicdiff.generation.latent_codec import decode_latents, encode_latents
from musicdiff.generation.models.latent import build_latent_unet, build_vae, latent_scale, train_vae
from musicdiff.generation.models.registry import VARIANTS, build_denoiser, build_model, count_parameters
from musicdiff.generation.models.waveform import build_waveform_unet, waveform_downsampling
from musicdiff.generation.sampling import generate
from musicdiff.generation.schedulers import build_noise_scheduler, build_sampler
from musicdiff.generation.training import diffusion_target, train_diffusion

REPO = Path(__file__).resolve().parent.parent


def _profile(name: str) -> dict:
    """params.yaml with the profile ``name`` (pipelines/profiles/<name>.yaml) applied: the data files that
    hold every architecture configuration."""
    from musicdiff.cli.profiles import load_profile

    return load_profile(REPO / "params.yaml", REPO / "pipelines" / "profiles" / f"{name}.yaml")


def _configs(params: dict, names: dict) -> dict:
    """``{registry variant: its model config}`` picked from a profile's variants and autoencoders."""
    out = {}
    for variant, (section, key) in names.items():
        out[variant] = params[section][key]["model"]
    return out


# The registry's five builders, configured from the profiles (the only place a configuration lives).
PAPER_CONFIGS = _configs(_profile("paper"), {"mel": ("variants", "mel-1024x128"), "waveform": ("variants", "waveform-65536"),
                                             "vae": ("autoencoders", "vae-256x256"),
                                             "latent_unet": ("variants", "latent-256x256"),
                                             "dit": ("variants", "dit-128x128")})
CPU_CONFIGS = _configs(_profile("cpu-study"), {"mel": ("variants", "mel-64x64"), "waveform": ("variants", "waveform-16384"),
                                               "vae": ("autoencoders", "vae-64x64"),
                                               "latent_unet": ("variants", "latent-64x64"),
                                               "dit": ("variants", "dit-64x64")})
# Published / measured counts: teticio's UNet and VAE (research note A1), the Dance Diffusion
# UNet1DModel (A8, "64 M" in the study), Bojescu's DiT (A4, 5,388,802).
PAPER_PARAMETERS = {"mel": 113.67e6, "waveform": 63.63e6, "vae": 83.61e6, "latent_unet": 113.67e6,
                    "dit": 5_388_802}
PAPER_RESOLUTIONS = {"mel": (1024, 128), "waveform": (65536,), "vae": (256, 256), "latent_unet": (32, 32),
                     "dit": (128, 128)}
# The CPU study's sizes (README "Variants, profiles and GPUs").
CPU_PARAMETERS = {"mel": 1.086e6, "waveform": 1.161e6, "vae": 0.239e6, "latent_unet": 0.701e6, "dit": 1.975e6}
CPU_RESOLUTIONS = {"mel": (64, 64), "waveform": (16384,), "vae": (64, 64), "latent_unet": (16, 16), "dit": (64, 64)}
SCHEDULE = dict(num_train_timesteps=100, beta_schedule="linear", beta_start=1e-3, beta_end=0.2,
                prediction_type="epsilon", clip_sample=True)
WAVE_LENGTH = 1024  # CPU waveform UNet on short windows: a multiple of its 32x downsampling


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def mels(fadtk_clips):
    """(8, 1, 64, 64) scaled log-mels of real clips, in [-1, 1]."""
    return mel_dataset(fadtk_clips[:8], MelTransform(MelConfig(n_mels=64)), frames=64, progress=False)


@pytest.fixture(scope="module")
def waves(fadtk_clips):
    """(12, 1, 1024) windows of real audio at 22050 Hz, in [-1, 1]."""
    windows = []
    for path in fadtk_clips[:3]:
        audio = load_audio(path, 22050)
        start = len(audio) // 2
        windows += [audio[start + i * WAVE_LENGTH: start + (i + 1) * WAVE_LENGTH] for i in range(4)]
    return torch.from_numpy(np.clip(np.stack(windows), -1, 1)).float()[:, None]


def _few_steps(model, scheduler, data, steps=3, batch_size=2, seed=0):
    """A minimal diffusion loop (the objective of ``train_diffusion``) for models it cannot export yet."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    model.train()
    for step in range(steps):
        generator = torch.Generator().manual_seed(seed + step)
        x0 = data[torch.randint(0, len(data), (batch_size,), generator=generator)]
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        prediction = model(scheduler.add_noise(x0, noise, t), t).sample
        loss = F.mse_loss(prediction, diffusion_target(scheduler, x0, noise, t))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _train_config(**overrides):
    config = dict(seed=0, batch_size=2, max_steps=3, learning_rate=1e-3, warmup_steps=1, grad_clip=1.0,
                  ema={"decay": 0.999}, checkpoint_steps=[], mixed_precision="no", log_every=1)
    config.update(overrides)
    return config


@pytest.mark.parametrize("variant", VARIANTS)
def test_paper_size_models_match_the_published_parameter_counts(variant):
    with torch.device("meta"):
        model = build_model(variant, PAPER_CONFIGS[variant], PAPER_RESOLUTIONS[variant])
    assert count_parameters(model) == pytest.approx(PAPER_PARAMETERS[variant], rel=0.02)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cpu_size_models_have_the_design_sizes(variant):
    model = build_model(variant, CPU_CONFIGS[variant], CPU_RESOLUTIONS[variant])
    assert count_parameters(model) == pytest.approx(CPU_PARAMETERS[variant], rel=0.02)


def _paper_profile() -> dict:
    return _profile("paper")


# The study's table (seed 002) and seed 003: mel and latent UNets 113.67 M, VAE 83.61 M (research
# note A1), waveform "64 M" (63.63 M measured for the Dance Diffusion layout), DiT "5,388,802".
STUDY_PARAMETERS = {"mel": 113.67e6, "latent": 113.67e6, "waveform": 64e6, "dit": 5_388_802}


def test_the_paper_profile_builds_every_study_variant_at_its_published_size():
    params = _paper_profile()
    variants = params["variants"]
    resolutions = sorted(tuple(f["resolution"]) for f in params["features"].values() if f["kind"] == "mel")
    assert {(64, 64), (256, 256), (512, 32), (512, 64), (512, 128), (1024, 128)} <= set(resolutions)
    assert sorted(v["family"] for v in variants.values()).count("mel") == 6
    for name, variant in variants.items():
        source = params["features"].get(variant["data"].split("/", 1)[1])
        if variant["family"] == "latent":
            vae_spec = params["autoencoders"][variant["data"].split("/", 1)[1]]
            frames, mels = params["features"][vae_spec["features"]]["resolution"]
            factor = 2 ** (len(vae_spec["model"]["block_out_channels"]) - 1)
            shape = (1, mels // factor, frames // factor)
            with torch.device("meta"):
                vae = build_model("vae", vae_spec["model"], (frames, mels))
            assert count_parameters(vae) == pytest.approx(83.61e6, rel=0.02)
            assert shape == (1, 32, 32)
        elif variant["family"] == "waveform":
            shape = (1, source["samples"])
        else:
            frames, mels = source["resolution"]
            shape = (1, mels, frames)
        with torch.device("meta"):
            model = build_denoiser(variant["family"], variant["model"], shape)
        assert count_parameters(model) == pytest.approx(STUDY_PARAMETERS[variant["family"]], rel=0.02), name
    assert params["samplers"]["ddpm"]["num_inference_steps"] == 1000
    assert {s["num_inference_steps"] for s in params["samplers"].values()} == {1000, 50, 100, 20}


def test_paper_size_models_keep_their_shapes_on_the_meta_device():
    with torch.device("meta"):
        vae = build_model("vae", PAPER_CONFIGS["vae"], (256, 256))
        assert vae.encode(torch.zeros(1, 1, 256, 256)).latent_dist.mean.shape == (1, 1, 32, 32)
        wave = build_model("waveform", PAPER_CONFIGS["waveform"], (65536,))
        assert wave(torch.zeros(1, 1, 65536), torch.tensor(999)).sample.shape == (1, 1, 65536)
        dit = build_model("dit", PAPER_CONFIGS["dit"], (128, 128))
        assert dit(torch.zeros(2, 1, 128, 128), torch.tensor(999)).sample.shape == (2, 1, 128, 128)
    assert waveform_downsampling(PAPER_CONFIGS["waveform"]) == 8192


def test_waveform_unet_trains_and_samples_audio_shaped_output(waves):
    scheduler = build_noise_scheduler(SCHEDULE)
    torch.manual_seed(0)
    model = build_model("waveform", CPU_CONFIGS["waveform"], (WAVE_LENGTH,), num_train_timesteps=100)
    before = [p.detach().clone() for p in model.parameters()]
    losses = _few_steps(model, scheduler, waves)
    assert all(np.isfinite(losses))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    result = generate(model, build_sampler("ddim", scheduler), 2, (1, WAVE_LENGTH), 2, seed=0, progress=False)
    assert result.samples.shape == (2, 1, WAVE_LENGTH) and torch.isfinite(result.samples).all()
    with torch.no_grad():  # the CPU layout (one attention level) also runs at its design length
        assert model(torch.zeros(1, 1, 16384), torch.tensor(5)).sample.shape == (1, 1, 16384)


def test_waveform_time_features_are_those_of_t_over_T():
    torch.manual_seed(0)
    model = build_waveform_unet(CPU_CONFIGS["waveform"], 8192, num_train_timesteps=100)
    torch.manual_seed(0)
    reference = UNet1DModel(in_channels=1, out_channels=1, extra_in_channels=16, time_embedding_dim=16,
                            block_out_channels=tuple(CPU_CONFIGS["waveform"]["block_out_channels"]),
                            down_block_types=tuple(CPU_CONFIGS["waveform"]["down_block_types"]),
                            up_block_types=tuple(CPU_CONFIGS["waveform"]["up_block_types"]))
    t = torch.tensor([0, 17, 99])
    assert torch.allclose(model.time_proj(t), reference.time_proj(t / 100), atol=1e-5)


def test_waveform_builder_rejects_lengths_that_do_not_fit_its_downsampling():
    config = CPU_CONFIGS["waveform"]
    assert waveform_downsampling(config) == 128
    with pytest.raises(ValueError, match="multiple of 128"):
        build_waveform_unet(config, 8192 + 16)
    with pytest.raises(ValueError, match="at least 384"):
        build_waveform_unet(config, 128)
    with pytest.raises(ValueError, match="extra_in_channels"):
        build_waveform_unet({**config, "extra_in_channels": 32}, 8192)


def test_dit_trains_with_x0_prediction_and_samples(mels):
    scheduler = build_noise_scheduler({**SCHEDULE, "prediction_type": "sample"})
    torch.manual_seed(0)
    model = build_model("dit", CPU_CONFIGS["dit"], (64, 64))
    losses = _few_steps(model, scheduler, mels)
    assert all(np.isfinite(losses))
    result = generate(model, build_sampler("ddim", scheduler), 2, (1, 64, 64), 2, seed=0, progress=False)
    assert result.samples.shape == (2, 1, 64, 64) and torch.isfinite(result.samples).all()


def test_dit_rejects_non_square_spectrograms():
    with pytest.raises(ValueError, match="square"):
        build_dit(CPU_CONFIGS["dit"], height=64, width=128)
    with pytest.raises(ValueError, match="square"):
        build_model("dit", CPU_CONFIGS["dit"], (128, 64))
    model = build_dit(CPU_CONFIGS["dit"], 32, 32)
    with pytest.raises(ValueError, match="square"):
        model(torch.zeros(1, 1, 32, 64), 0)
    with pytest.raises(ValueError, match="patch size"):
        model(torch.zeros(1, 1, 30, 30), 0)


@pytest.mark.parametrize("variant", ["waveform", "dit"])
def test_train_diffusion_trains_and_exports_waveform_and_dit(variant, waves, mels, tmp_path):
    # the EMA export is built with the model's own class, so the loop serves every variant
    data, shape = (waves, (1, WAVE_LENGTH)) if variant == "waveform" else (mels, (1, 64, 64))
    resolution = (WAVE_LENGTH,) if variant == "waveform" else (64, 64)
    model = build_model(variant, CPU_CONFIGS[variant], resolution, num_train_timesteps=100)
    train_diffusion(model, build_noise_scheduler(SCHEDULE), data, _train_config(max_steps=2), tmp_path)
    ema = type(model).from_pretrained(tmp_path / "unet_ema")
    if variant == "waveform":  # the 1/T-scaled Fourier frequencies survive the EMA export
        assert torch.equal(ema.time_proj.weight, model.time_proj.weight)
    assert generate(ema, build_sampler("ddim", build_noise_scheduler(SCHEDULE)), 1, shape, 1, seed=0,
                    progress=False).samples.shape == (1, *shape)


def test_vae_round_trip_and_unit_std_latents(mels, tmp_path):
    torch.manual_seed(0)
    vae = build_vae(CPU_CONFIGS["vae"])
    result = train_vae(vae, mels, dict(seed=0, batch_size=4, max_steps=4, learning_rate=1e-3), tmp_path)
    assert np.isfinite(result["losses"]).all() and result["kl"] >= 0
    scale = latent_scale(vae, mels, batch_size=4)
    assert scale == pytest.approx(result["latent_scale"])
    latents = encode_latents(vae, mels, scale)
    assert latents.shape == (8, 1, 16, 16)
    assert latents.std().item() == pytest.approx(1.0, abs=1e-4)
    assert decode_latents(vae, latents, scale).shape == mels.shape
    saved = AutoencoderKL.from_pretrained(tmp_path / "vae")
    assert saved.config.scaling_factor == pytest.approx(scale) and not (tmp_path / ".tmp_vae").exists()


def test_vae_nan_loss_stops_training_with_the_step(mels, tmp_path):
    bad = mels.clone()
    bad[:] = float("nan")
    with pytest.raises(FloatingPointError, match="step 1"):
        train_vae(build_vae(CPU_CONFIGS["vae"]), bad, dict(seed=0, batch_size=2, max_steps=2, learning_rate=1e-3),
                  tmp_path)


def test_latent_diffusion_trains_on_scaled_latents_and_decodes_samples(mels, tmp_path):
    torch.manual_seed(0)
    vae = build_vae(CPU_CONFIGS["vae"])
    train_vae(vae, mels, dict(seed=0, batch_size=4, max_steps=2, learning_rate=1e-3), tmp_path)
    scale = vae.config.scaling_factor
    latents = encode_latents(vae, mels, scale)
    scheduler = build_noise_scheduler({**SCHEDULE, "clip_sample": False})  # latents are not in [-1, 1]
    unet = build_latent_unet(CPU_CONFIGS["latent_unet"], height=16, width=16)
    result = train_diffusion(unet, scheduler, latents, _train_config(), tmp_path / "unet")
    assert np.isfinite(result.losses).all()
    samples = generate(unet, build_sampler("ddim", scheduler), 2, (1, 16, 16), 2, seed=0, progress=False).samples
    assert samples.shape == (2, 1, 16, 16)
    assert decode_latents(vae, samples, scale).shape == (2, 1, 64, 64)


def test_unknown_variant_and_bad_resolutions_are_refused():
    with pytest.raises(KeyError, match="known"):
        build_model("wavenet", {}, (64, 64))
    with pytest.raises(ValueError, match="divisible"):
        build_model("vae", CPU_CONFIGS["vae"], (64, 30))
    with pytest.raises(ValueError, match="divisible"):
        build_model("latent_unet", CPU_CONFIGS["latent_unet"], (16, 15))
