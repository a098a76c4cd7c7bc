"""A folder of hostile audio files, the same for every entry point's bad-input test.

:func:`make_hostile_folder` writes the files and returns ``{file name: expected outcome}``: a skip
reason of ``musicdiff.data.screening`` or ``"used"`` (with the flags a used file must carry).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050


def _music(seconds: float, sr: int = SR, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A few decaying harmonic notes plus a little noise: something an embedding sees as sound."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = np.zeros_like(t)
    for k, f0 in enumerate(rng.uniform(110, 880, size=6)):
        start = k * seconds / 6
        env = np.where(t >= start, np.exp(-3 * np.clip(t - start, 0, None)), 0.0)
        x += env * sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
    x = 0.3 * x / np.max(np.abs(x)) + 0.01 * rng.standard_normal(len(t))
    x = x.astype(np.float32)
    return x if channels == 1 else np.stack([x * (1 - 0.1 * c) for c in range(channels)], axis=1)


def make_hostile_folder(folder: Path, seconds: float = 2.0, good: int = 3) -> dict[str, tuple[str, tuple]]:
    """Write ``good`` ordinary files and one of each hostile kind into ``folder``.

    Returns ``{name: (outcome, flags)}``: outcome ``"used"`` or the skip reason; flags only for used files.
    The unreadable file is made with mode 000 (as root it stays readable, so its expected outcome is then
    ``"used"``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expect: dict[str, tuple[str, tuple]] = {}

    def wav(name, x, sr=SR, subtype="FLOAT", outcome="used", flags=()):
        sf.write(str(folder / name), x, sr, subtype=subtype)
        expect[name] = (outcome, tuple(flags))

    for i in range(good):
        wav(f"good {i} ñé.wav" if i == 0 else f"good_{i}.wav", _music(seconds, seed=i))
    (folder / "zero-bytes.wav").write_bytes(b"")
    expect["zero-bytes.wav"] = ("empty", ())
    sf.write(str(folder / "whole.wav"), _music(seconds, seed=9), SR, subtype="PCM_16")
    data = (folder / "whole.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(data[:40])  # a header that promises samples, then nothing
    (folder / "whole.wav").unlink()
    expect["truncated.wav"] = ("unreadable", ())
    (folder / "random.flac").write_bytes(np.random.default_rng(1).bytes(4096))
    expect["random.flac"] = ("unreadable", ())
    (folder / "notes.mp3").write_text("this is not audio, only text with an audio extension\n" * 20)
    expect["notes.mp3"] = ("unreadable", ())
    x = _music(seconds, seed=3)
    x[100] = np.nan
    wav("nan.wav", x, outcome="non_finite")
    x = _music(seconds, seed=4)
    x[200] = np.inf
    wav("inf.wav", x, outcome="non_finite")
    wav("silence.wav", np.zeros(int(seconds * SR), np.float32), outcome="silent")
    wav("quiet -61dBFS.wav", (10 ** (-61 / 20) * np.sqrt(2) * np.sin(np.linspace(0, 2000, int(seconds * SR))))
        .astype(np.float32), outcome="silent")
    wav("dc-only.wav", np.full(int(seconds * SR), 0.5, np.float32), outcome="dc_only")
    wav("too-short.wav", _music(0.2, seed=5), outcome="too_short")
    wav("one-sample.wav", np.array([0.5], np.float32), outcome="too_short")
    wav("eight-channels-96k.wav", _music(seconds, sr=96000, seed=6, channels=8), sr=96000,
        flags=("multichannel",))
    wav("7350Hz.wav", _music(seconds, sr=7350, seed=7), sr=7350, outcome="low_sample_rate")
    x = _music(seconds, seed=8)
    wav("anti-phase.wav", np.stack([x, -x], axis=1), outcome="silent")
    wav("clipped.wav", np.clip(_music(seconds, seed=10) * 8, -1, 1), flags=("clipped",))
    wav("dc-offset.wav", _music(seconds, seed=11) + 0.2, flags=("dc_offset",))
    wav("peak-1e6.wav", _music(seconds, seed=12) * 3e6, outcome="over_range")
    wav("peak-1.5.wav", _music(seconds, seed=13) * 5, flags=("over_full_scale",))
    os.symlink(folder / "does-not-exist.wav", folder / "dangling.wav")
    expect["dangling.wav"] = ("dangling_link", ())
    (folder / "folder.wav").mkdir()
    expect["folder.wav"] = ("not_a_file", ())
    wav("locked.wav", _music(seconds, seed=14))
    os.chmod(folder / "locked.wav", 0)
    expect["locked.wav"] = ("used", ()) if os.geteuid() == 0 else ("no_permission", ())
    return expect


def make_untrained_model(folder: Path) -> Path:
    """A model folder as the train stage writes it (``unet_ema/``, ``scheduler/``, ``representation.json``)
    holding an untrained tiny mel denoiser: loads in a second, for the tests of damaged model files."""
    from creative_models import SCHEDULE, UNET
    from musicdiff.features.mel import MelConfig
    from musicdiff.generation.models.registry import build_denoiser
    from musicdiff.generation.representation import Representation
    from musicdiff.generation.schedulers import build_noise_scheduler

    folder = Path(folder)
    build_denoiser("mel", UNET, (1, 32, 32)).save_pretrained(folder / "unet_ema")
    build_noise_scheduler(SCHEDULE).save_pretrained(folder / "scheduler")
    Representation("mel", SR, (1, 32, 32), frames=32, mel=MelConfig(n_mels=32, griffin_lim_iters=16).to_dict()
                   ).save(folder)
    return folder
