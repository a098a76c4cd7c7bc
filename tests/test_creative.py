"""The creative tools (generate, vary, inpaint, continue, loop) on tiny models trained on real music."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from creative_models import SR, train_folder

from musicdiff import creative
from musicdiff.features.mel import MelConfig, MelTransform
from musicdiff.trained import TrainedVariant, infer_family

FAST = creative.SamplerSettings("ddim", 20)
STEPS = {"mel": 150, "latent": 100, "waveform": 200}


@pytest.fixture(scope="module")
def models(fadtk_clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("creative")
    return {family: train_folder(family, fadtk_clips[:8], root / family, steps=steps)
            for family, steps in STEPS.items()}


@pytest.fixture(scope="module")
def source(fadtk_clips, models):
    """Seconds 1-3 of a real clip the models did not train on (it fades in over its first second), 22050 Hz."""
    return creative.load_wav(fadtk_clips[12], TrainedVariant.load(None, models["mel"]))[SR: 3 * SR]


def _mel_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    mel = MelTransform(MelConfig(n_mels=64))
    n = min(len(a), len(b))
    return float((mel(a[:n]) - mel(b[:n])).abs().mean())


@pytest.mark.parametrize("family", sorted(STEPS))
def test_generate_and_vary_move_away_from_the_source_with_the_start_timestep(models, source, family):
    trained = TrainedVariant.load(None, models[family])
    assert trained.family == family == infer_family(models[family])
    clips = creative.generate(trained, 2, seed=0, sampler=FAST, progress=False)
    assert clips.shape == (2, trained.representation.audio_samples) and torch.isfinite(clips).all()
    assert not torch.equal(clips[0], clips[1])
    distances = {t: _mel_distance(creative.vary(trained, source, timestep=t, seed=0, sampler=FAST, progress=False),
                                  source) for t in (250, 950)}
    assert distances[250] < distances[950], distances
    decoded = creative.round_trip(trained, source)  # the decoder alone: the floor of every variation's distance
    assert _mel_distance(decoded, source) < distances[950]
    if family == "waveform":
        torch.testing.assert_close(decoded, source[: len(decoded)].clamp(-1, 1))
    same = creative.vary(trained, source, strength=0.25, seed=0, sampler=FAST, progress=False)
    again = creative.vary(trained, source, timestep=250, seed=0, sampler=FAST, progress=False)
    assert torch.equal(same, again)  # strength 0.25 is T = 250 of 1000, and runs are seeded


@pytest.mark.parametrize("family", sorted(STEPS))
def test_inpainting_keeps_the_unmasked_region(models, source, family):
    trained = TrainedVariant.load(None, models[family])
    window = trained.representation.audio_samples / SR
    start, end = 1.0, 1.0 + window / 3
    out = creative.inpaint(trained, source, start, end, seed=0, sampler=FAST, progress=False)
    assert out.shape == source.shape
    fade = int(creative.CROSSFADE_S * SR)
    a, b = int(start * SR), int(end * SR)
    assert torch.equal(out[:a], source[:a]) and torch.equal(out[b:], source[b:])  # outside: the input itself
    assert (out[a + fade:b - fade] - source[a + fade:b - fade]).abs().mean() > 1e-3  # inside: regenerated

    # Before splicing: the decoded window outside the range differs from the source only by what the
    # decoder loses (Griffin-Lim, and the VAE for latents): at most 1.5 times its round trip of the source.
    enc = trained.encoder
    tensors = enc(source[: enc.samples_for_units(enc.units)].unsqueeze(0))[..., : enc.units]
    keep = torch.ones_like(tensors)
    keep[..., enc.units // 3: 2 * enc.units // 3] = 0
    x = creative.denoise(trained, tuple(tensors.shape), 0, FAST, source=tensors, keep=keep)
    assert torch.equal(x * keep, tensors * keep)
    decoded, round_trip = enc.decode(x)[0], enc.decode(tensors)[0]
    if family == "waveform":  # no decoder: the kept samples are the source's
        third = enc.units // 3
        assert torch.equal(decoded[:third], source[:third]) and torch.equal(decoded[-third:], source[enc.units - third:enc.units])
        assert not torch.equal(decoded[third:2 * third], source[third:2 * third])
        return
    kept = slice(0, enc.samples_for_units(enc.units // 3) - 1024)
    reference = source[: len(decoded)]
    assert _mel_distance(decoded[kept], reference[kept]) <= 1.5 * _mel_distance(round_trip[kept], reference[kept]) + 1e-3
    middle = slice(enc.samples_for_units(enc.units // 3) + 512, enc.samples_for_units(2 * enc.units // 3) - 512)
    assert _mel_distance(decoded[middle], reference[middle]) > _mel_distance(round_trip[middle], reference[middle])


@pytest.mark.parametrize("family", sorted(STEPS))
def test_continuation_keeps_the_prompt(models, source, family):
    trained = TrainedVariant.load(None, models[family])
    out = creative.continue_audio(trained, source, 1.0, seed=0, sampler=FAST, progress=False)
    fade = int(creative.CROSSFADE_S * SR)
    assert len(out) == len(source) + SR
    assert torch.equal(out[: len(source) - fade], source[: -fade])
    new = out[len(source):]
    assert torch.isfinite(new).all() and new.abs().max() > 1e-3  # something, not silence
    assert _mel_distance(new, source[:SR]) > 0.01  # and not the prompt again


def _wrap_flux(clip: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Spectral flux (mean |log-mel difference| of neighbouring frames) where ``clip`` repeats, and the
    flux between its own frames away from the wrap."""
    mel = MelTransform(MelConfig(n_mels=64))(torch.cat([clip, clip]))
    flux = (mel[:, 1:] - mel[:, :-1]).abs().mean(0)
    period = len(clip) // 256
    return float(flux[period - 2:period + 1].max()), torch.cat([flux[2:period - 3], flux[period + 2:-3]])


def test_loop_end_joins_its_start(models, source):
    trained = TrainedVariant.load(None, models["mel"])
    length = trained.representation.audio_samples
    # a clip that fades from full level to -26 dB: repeated as it is, its end jumps back to the loud start
    ramp = source[:length + 256] * torch.linspace(1.0, 0.05, length + 256)
    wrap, inside = _wrap_flux(ramp[: (trained.representation.frames) * 256])
    assert wrap > inside.max()
    for audio in (ramp, source, None):
        looped = creative.loop(trained, audio, seed=3, sampler=FAST, progress=False)
        assert len(looped) == trained.representation.frames * 256  # one period: frames x hop length
        wrap, inside = _wrap_flux(looped)
        assert wrap <= float(inside.quantile(0.9)), (wrap, inside)
        steps = (looped[1:] - looped[:-1]).abs()
        assert (looped[0] - looped[-1]).abs() <= steps.max()  # no click: the wrap is a step like the others


def test_tools_reject_bad_requests(models, source):
    trained = TrainedVariant.load(None, models["mel"])
    with pytest.raises(ValueError, match="exactly one"):
        creative.vary(trained, source, strength=0.5, timestep=500)
    with pytest.raises(ValueError, match="outside"):
        creative.start_timestep(trained, timestep=1000)
    with pytest.raises(ValueError, match="shorter than one model window"):
        creative.vary(trained, source[:1000], timestep=500)
    with pytest.raises(ValueError, match="too long"):
        creative.inpaint(trained, source, 0.1, 1.9)
    with pytest.raises(ValueError, match="not text-conditioned"):
        creative.generate(trained, caption="calm ambient music")
    with pytest.raises(ValueError, match="seconds"):
        creative.continue_audio(trained, source, 0)


def test_cli_varies_a_wav_and_records_how(models, fadtk_clips, tmp_path):
    wav = tmp_path / "in.wav"
    sf.write(wav, np.stack([source_audio := sf.read(fadtk_clips[12])[0][: 48000 * 2]] * 2, axis=1), 48000)
    out = tmp_path / "out" / "varied.wav"
    cli = [sys.executable, "-m", "musicdiff.cli"]
    done = subprocess.run([*cli, "vary", str(models["latent"]), str(wav), "--timestep", "500", "--steps", "10",
                           "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    audio, rate = sf.read(out)
    assert rate == SR and audio.ndim == 1 and len(audio) > SR and np.isfinite(audio).all()
    record = json.loads((out.parent / "varied.wav.json").read_text())
    assert record["tool"] == "vary" and record["family"] == "latent" and record["settings"]["timestep"] == 500
    assert len(record["model_weights_sha256"]) == 64 and len(record["input_sha256"]) == 64
    assert "torch" in record["versions"] and len(source_audio) == 96000
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(100, dtype=np.float32) + 0.1, SR)
    done = subprocess.run([*cli, "inpaint", str(models["mel"]), str(short), "--start", "0", "--end", "0.001",
                           "--out", str(tmp_path / "x.wav")], capture_output=True, text=True)
    assert done.returncode == 2 and "error" in done.stderr and not (tmp_path / "x.wav").exists()
    done = subprocess.run([*cli, "loop", str(models["mel"]), "--steps", "5", "--out", str(tmp_path / "loop.wav")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(sf.read(tmp_path / "loop.wav")[0]) == 32 * 256
