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
from hostile import make_hostile_folder

from musicdiff.generation import creative
from musicdiff.cli.main import main
from musicdiff.features.mel import MelConfig, MelTransform
from musicdiff.generation.trained import TrainedVariant, infer_family

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
    cli = [sys.executable, "-m", "musicdiff.cli.main"]
    done = subprocess.run([*cli, "vary", str(models["latent"]), str(wav), "--timestep", "500", "--steps", "10",
                           "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    audio, rate = sf.read(out)
    assert rate == SR and audio.ndim == 1 and len(audio) > SR and np.isfinite(audio).all()
    record = json.loads((out.parent / "varied.wav.json").read_text())
    assert record["tool"] == "vary" and record["family"] == "latent" and record["settings"]["timestep"] == 500
    assert len(record["model_weights_sha256"]) == 64 and len(record["input_sha256"]) == 64
    assert "torch" in record["versions"] and len(source_audio) == 96000
    assert record["peak"] == pytest.approx(np.abs(audio).max(), rel=1e-4) and isinstance(record["over_full_scale"], bool)
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(100, dtype=np.float32) + 0.1, SR)
    done = subprocess.run([*cli, "inpaint", str(models["mel"]), str(short), "--start", "0", "--end", "0.001",
                           "--out", str(tmp_path / "x.wav")], capture_output=True, text=True)
    assert done.returncode == 2 and "error" in done.stderr and not (tmp_path / "x.wav").exists()
    done = subprocess.run([*cli, "loop", str(models["mel"]), "--steps", "5", "--out", str(tmp_path / "loop.wav")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(sf.read(tmp_path / "loop.wav")[0]) == 32 * 256


def _cli(argv: list) -> int:
    """``musicdiff ARGV`` in this process: its return value, or the status argparse exits with."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit:
        return exit.code


def _must_not_load(*args, **kwargs):
    raise AssertionError("the model was loaded although the arguments are bad")


def _one_error_line(err: str, tool: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"musicdiff {tool}: error: "), err
    assert "Traceback" not in err
    return lines[0]


BAD_ARGUMENTS = [
    *[("vary", ["--timestep", "500", "--steps", v], "--steps") for v in ("0", "-1", "nan")],
    *[("vary", ["--strength", v], "--strength") for v in ("0", "-0.5", "nan", "1", "inf")],
    *[("generate", ["--seconds", v], "--seconds") for v in ("0", "-3", "nan", "inf")],
    *[("continue", ["--seconds", v], "--seconds") for v in ("0", "-3", "nan")],
    ("generate", ["-n", "0"], "-n"),
    ("generate", ["--guidance-scale", "nan"], "--guidance-scale"),
    ("generate", ["--seed", "-1"], "--seed"),
    ("vary", ["--timestep", "0"], "--timestep"),
    ("vary", ["--strength", "0.5", "--eta", "nan"], "--eta"),
    ("inpaint", ["--start", "1", "--end", "1"], "--end"),
    ("inpaint", ["--start", "nan", "--end", "1"], "--start"),
    ("continue", ["--seconds", "1", "--context", "1"], "--context"),
    ("loop", ["--seam", "0"], "--seam"),
]


@pytest.mark.parametrize("tool, extra, flag", BAD_ARGUMENTS)
def test_cli_refuses_bad_arguments_before_loading_the_model(tool, extra, flag, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(TrainedVariant, "load", _must_not_load)
    wav = tmp_path / "in.wav"
    sf.write(wav, np.sin(np.arange(SR) * 0.05).astype(np.float32) * 0.3, SR)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    inputs = [wav] if tool in ("vary", "inpaint", "continue") else []
    assert _cli([tool, tmp_path, *inputs, *extra, "--out", out_dir / "x.wav"]) == 2
    assert f"argument {flag}:" in _one_error_line(capsys.readouterr().err, tool)
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("case", ["out is a directory", "out under a file", "an output of -n is a directory",
                                  "no model folder", "no input", "input is a directory"])
def test_cli_refuses_bad_paths_before_loading_the_model(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(TrainedVariant, "load", _must_not_load)
    wav = tmp_path / "in.wav"
    sf.write(wav, np.sin(np.arange(SR) * 0.05).astype(np.float32) * 0.3, SR)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    model, source, out, extra, expected = tmp_path, wav, out_dir / "x.wav", [], "argument --out:"
    if case == "out is a directory":
        out = out_dir
    elif case == "out under a file":
        out = wav / "x.wav"
    elif case == "an output of -n is a directory":
        (out_dir / "x_1.wav").mkdir()
        extra = ["-n", "2"]
    elif case == "no model folder":
        model, expected = tmp_path / "no-model", "argument model:"
    elif case == "no input":
        source, expected = tmp_path / "missing.wav", "argument input: no such file"
    else:
        source, expected = out_dir, "not_a_file"
    tool = "generate" if extra else "vary"
    argv = [tool, model, *extra] if extra else [tool, model, source, "--strength", "0.5"]
    before = sorted(out_dir.iterdir())
    assert _cli([*argv, "--out", out]) == 2
    assert expected in _one_error_line(capsys.readouterr().err, tool)
    assert sorted(out_dir.iterdir()) == before


def test_cli_refuses_or_uses_every_hostile_input(models, tmp_path, capsys):
    """``vary`` on each file of the shared hostile folder: refused ones exit 2 with the policy's reason and
    the file's name, in one line, leaving nothing; used ones write the WAV and its sidecar, flags warned."""
    expect = make_hostile_folder(tmp_path / "hostile")
    for name, (outcome, flags) in sorted(expect.items()):
        out_dir = tmp_path / "out" / name
        out_dir.mkdir(parents=True)
        code = _cli(["vary", models["mel"], tmp_path / "hostile" / name, "--timestep", "500", "--steps", "4",
                     "--out", out_dir / "varied.wav"])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err + captured.out, name
        if outcome == "used":
            assert code == 0, (name, captured.err)
            assert sorted(p.name for p in out_dir.iterdir()) == ["varied.wav", "varied.wav.json"], name
            for flag in flags:
                assert f"musicdiff vary: warning: {tmp_path / 'hostile' / name}: flagged" in captured.err
                assert flag in captured.err, (name, captured.err)
        else:
            assert code == 2, (name, captured.err)
            line = _one_error_line(captured.err, "vary")
            assert f"{name}: {outcome}" in line, (name, line)
            assert list(out_dir.iterdir()) == [], name


def _fake_generate(clips: torch.Tensor):
    return lambda *args, **kwargs: clips.clone()


def test_cli_keeps_a_peak_above_full_scale_and_says_so(models, tmp_path, capsys, monkeypatch):
    clip = 0.5 * torch.sin(torch.arange(8192) * 0.05)
    clip[100] = 5.3
    monkeypatch.setattr(creative, "generate", _fake_generate(torch.stack([clip, clip / 10])))
    out = tmp_path / "loud.wav"
    assert _cli(["generate", models["mel"], "-n", "2", "--out", out]) == 0
    err = capsys.readouterr().err
    assert f"musicdiff generate: warning: {tmp_path / 'loud_0.wav'}: peak 5.3 (+14.5 dBFS) is above full scale" in err
    assert "loud_1.wav" not in err
    audio, rate = sf.read(tmp_path / "loud_0.wav")
    assert rate == SR and np.abs(audio).max() == pytest.approx(5.3)  # float WAV, not clipped
    loud, quiet = (json.loads((tmp_path / f"loud_{i}.wav.json").read_text()) for i in range(2))
    assert loud["over_full_scale"] is True and loud["peak"] == pytest.approx(5.3)
    assert loud["peak_dbfs"] == pytest.approx(14.49, abs=0.01)
    assert quiet["over_full_scale"] is False and quiet["peak_dbfs"] == pytest.approx(-5.51, abs=0.01)


def test_cli_writes_nothing_for_non_finite_audio_or_a_failed_write(models, tmp_path, capsys, monkeypatch):
    import musicdiff.data.audio

    clip = 0.5 * torch.sin(torch.arange(8192) * 0.05)
    bad = clip.clone()
    bad[7] = float("nan")
    monkeypatch.setattr(creative, "generate", _fake_generate(torch.stack([clip, bad])))
    assert _cli(["generate", models["mel"], "-n", "2", "--out", tmp_path / "x.wav"]) == 2
    assert "1 NaN or infinite samples" in _one_error_line(capsys.readouterr().err, "generate")
    assert list(tmp_path.iterdir()) == []

    write = musicdiff.data.audio.write_float_wav
    calls = []

    def full_disk(path, x, sr):  # the second WAV fails half-written, as on a full disk
        calls.append(path)
        write(path, x[: len(x) // 2], sr)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(musicdiff.data.audio, "write_float_wav", full_disk)
    monkeypatch.setattr(creative, "generate", _fake_generate(torch.stack([clip, clip])))
    assert _cli(["generate", models["mel"], "-n", "2", "--out", tmp_path / "x.wav"]) == 2
    assert "No space left on device" in _one_error_line(capsys.readouterr().err, "generate")
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []  # the first clip's files are not left either


# Damaged model folders and requests the tools cannot serve: one line naming the cause, exit 2, nothing written.

@pytest.fixture
def untrained(tmp_path):
    from hostile import make_untrained_model

    return make_untrained_model(tmp_path / "models" / "mel-64x64")


def _refused(argv: list, tool: str, capsys, out_dir) -> str:
    assert _cli(argv) == 2
    captured = capsys.readouterr()
    line = _one_error_line(captured.err, tool)
    assert "Traceback" not in captured.out and list(out_dir.iterdir()) == []
    return line


def test_cli_names_a_corrupt_weight_file_and_the_stage_that_writes_it(untrained, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    weights = untrained / "unet_ema" / "diffusion_pytorch_model.safetensors"
    assert TrainedVariant.load(None, untrained).family == "mel"  # intact, it loads
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated copy
    line = _refused(["generate", untrained, "--steps", "2", "--out", out_dir / "x.wav"], "generate", capsys, out_dir)
    assert f"{weights}: cannot be read as model weights" in line and "dvc repro train@mel-64x64" in line


def test_cli_names_a_corrupt_checkpoint_and_the_steps_there_are(untrained, tmp_path, capsys):
    from musicdiff.generation.trained import EMA_STATE

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    step = untrained / "checkpoints" / "step_5"
    step.mkdir(parents=True)
    (step / "COMPLETE").write_text("")
    (step / EMA_STATE).write_bytes(b"\x80\x04 not a pickle of tensors")
    line = _refused(["generate", untrained, "--step", "5", "--steps", "2", "--out", out_dir / "x.wav"], "generate",
                    capsys, out_dir)
    assert f"{step / EMA_STATE}: the EMA state of checkpoint step 5 cannot be read" in line
    assert "dvc repro train@mel-64x64" in line and "--step of [5]" in line
    torch.save({"decay": 0.9}, step / EMA_STATE)  # readable, but not an EMA state
    line = _refused(["generate", untrained, "--step", "5", "--out", out_dir / "x.wav"], "generate", capsys, out_dir)
    assert f"{step / EMA_STATE}: not an EMA state" in line


@pytest.mark.parametrize("text, cause", [("{not json", "not valid JSON"), ("[1, 2]", "holds a JSON list"),
                                         ('{"kind": "mel"}', "lacks ['sample_rate', 'shape']"),
                                         ('{"kind": "mel", "sample_rate": 22050, "shape": [1, 32, 32], "frames": 32, '
                                          '"mel": {"n_mels": 32, "colour": 3}}', "colour"),
                                         ('{"kind": "midi", "sample_rate": 22050, "shape": [1]}', "'midi'")])
def test_cli_names_a_broken_representation_json_and_what_is_wrong(untrained, tmp_path, capsys, text, cause):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (untrained / "representation.json").write_text(text)
    line = _refused(["generate", untrained, "--out", out_dir / "x.wav"], "generate", capsys, out_dir)
    assert f"{untrained / 'representation.json'}: " in line and cause in line


def test_cli_says_why_a_negative_seed_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(TrainedVariant, "load", _must_not_load)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    line = _refused(["generate", tmp_path, "--seed", "-1", "--out", out_dir / "x.wav"], "generate", capsys, out_dir)
    assert "argument --seed: must be in [0, 2**62), got -1" in line and "non-negative" in line


def test_cli_refuses_an_output_larger_than_the_memory_bound_naming_both(untrained, tmp_path, capsys, monkeypatch):
    from musicdiff.cli import creative as cli

    monkeypatch.setattr(creative, "generate", _must_not_load)  # refused before anything is sampled
    monkeypatch.setattr(cli, "available_memory_bytes", lambda: 4 * 2 ** 30)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    line = _refused(["generate", untrained, "--seconds", "100000", "--out", out_dir / "x.wav"], "generate", capsys,
                    out_dir)
    # 100000 s x 22050 Hz x 4 bytes = 8.2 GiB > a quarter of 4 GiB
    assert "argument --seconds:" in line and "need 8.2 GiB" in line and "of the 4.0 GiB of memory available" in line
    assert "at most 12174 s" in line
    line = _refused(["generate", untrained, "--seconds", "10000", "-n", "3", "--out", out_dir / "x.wav"], "generate",
                    capsys, out_dir)
    assert "3 clips of 10000 s" in line and "need 2.5 GiB" in line
    monkeypatch.setattr(creative, "generate", _fake_generate(torch.zeros(1, SR)))
    assert _cli(["generate", untrained, "--seconds", "1", "--out", out_dir / "x.wav"]) == 0  # within the bound


def test_cli_reads_the_inputs_policy_of_the_params_file(untrained, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(creative, "vary", _must_not_load)  # every case here is refused before sampling
    wav = tmp_path / "in.wav"
    sf.write(wav, (0.3 * np.sin(np.arange(2 * SR) * 0.05)).astype(np.float32), SR)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    strict = tmp_path / "strict.yaml"
    strict.write_text("inputs:\n  min_sample_rate: 30000\n")
    argv = ["vary", untrained, wav, "--strength", "0.5", "--out", out_dir / "x.wav"]
    line = _refused([*argv, "--params", strict], "vary", capsys, out_dir)
    assert f"{wav}: low_sample_rate" in line and "inputs.min_sample_rate 30000 Hz" in line
    line = _refused([*argv, "--params", tmp_path / "nosuch.yaml"], "vary", capsys, out_dir)
    assert "--params" in line and "nosuch.yaml: no such file" in line
    monkeypatch.chdir(tmp_path)  # the default: ./params.yaml when present
    (tmp_path / "params.yaml").write_text(strict.read_text())
    assert "low_sample_rate" in _refused(argv, "vary", capsys, out_dir)
