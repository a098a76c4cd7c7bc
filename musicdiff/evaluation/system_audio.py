"""A system (``musicdiff.evaluation.systems.SystemSpec``) made into a folder of audio files plus its
provenance: files of a source cut to ``clip_s``, the clips a generator entry point returns, or the clips
a trained model folder generates (see ``systems`` for the three kinds)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from musicdiff.evaluation.systems import SystemSpec


def load_generator(entry_point: str):
    """The function of ``"module:function"`` or ``"path/to/file.py:function"``, and the SHA-256 of its source
    file. Raises ``ImportError``/``FileNotFoundError`` naming the entry point, ``TypeError`` when it is not
    callable."""
    module_name, _, function = entry_point.rpartition(":")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(f"generator {entry_point!r}: no file {path}")
        loader_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ImportError(f"generator {entry_point!r}: cannot import {module_name!r} ({error}); put it on "
                              "PYTHONPATH or give path/to/file.py:function") from error
    fn = getattr(module, function, None)
    if not callable(fn):
        raise TypeError(f"generator {entry_point!r}: {module_name} has no function {function!r}")
    source = getattr(module, "__file__", None)
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest() if source and Path(source).is_file() else ""
    return fn, digest


def _as_clips(audio, n_clips: int, where: str) -> list[np.ndarray]:
    """(samples,) or (samples, channels) float32 arrays of a generator's output; raises ``ValueError``."""
    if hasattr(audio, "detach"):  # a torch tensor
        audio = audio.detach().cpu().numpy()
    clips = list(audio) if isinstance(audio, (list, tuple)) else list(np.asarray(audio))
    if len(clips) != n_clips:
        raise ValueError(f"{where} returned {len(clips)} clips, {n_clips} were asked for")
    out = []
    for i, clip in enumerate(clips):
        clip = np.asarray(clip.detach().cpu().numpy() if hasattr(clip, "detach") else clip, dtype=np.float32)
        if clip.ndim == 2:  # (channels, samples) -> (samples, channels)
            clip = clip.T
        if clip.ndim not in (1, 2) or clip.shape[0] == 0:
            raise ValueError(f"{where}: clip {i} has shape {clip.shape}; expected (samples,) or (channels, samples)")
        out.append(clip)
    return out


def _write_clips(folder: Path, clips: list[np.ndarray], sample_rate: int, prefix: str) -> list[str]:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, clip in enumerate(clips):
        name = f"{prefix}_{i:04d}.wav"
        sf.write(str(folder / name), clip, int(sample_rate), subtype="FLOAT")
        names.append(name)
    return names


def _from_source(spec: SystemSpec, tmp: Path) -> dict:
    import soundfile as sf

    from musicdiff.data.audio import decode_audio
    from musicdiff.data.sources import download_set

    manifest = download_set(spec.source, tmp / "source", progress=False)
    provenance = {"source": spec.source, "files": int(len(manifest)),
                  "manifest_sha256": hashlib.sha256((tmp / "source" / "manifest.csv").read_bytes()).hexdigest()}
    if spec.clip_s is None:
        os.replace(tmp / "source" / "audio", tmp / "audio")
        return provenance
    for rel in manifest["path"]:  # the first clip_s seconds of every file, channels and rate kept
        data, sr = decode_audio(tmp / "source" / rel)
        target = (tmp / "audio" / Path(rel).relative_to("audio")).with_suffix(".wav")
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(target), data[: int(round(float(spec.clip_s) * sr))], sr, subtype="FLOAT")
    return {**provenance, "clip_s": float(spec.clip_s)}


def _from_generator(spec: SystemSpec, tmp: Path) -> dict:
    fn, digest = load_generator(spec.generator)
    returned = fn(n_clips=spec.n_clips, seed=spec.seed, **spec.params)
    if not (isinstance(returned, tuple) and len(returned) == 2):
        raise TypeError(f"generator {spec.generator!r} must return (audio, sample_rate), got {type(returned).__name__}")
    audio, sample_rate = returned
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise ValueError(f"generator {spec.generator!r} returned sample rate {sample_rate!r}; expected a positive "
                         "integer (Hz)")
    clips = _as_clips(audio, spec.n_clips, f"generator {spec.generator!r}")
    if spec.clip_s is not None:
        clips = [c[: int(round(float(spec.clip_s) * sample_rate))] for c in clips]
    _write_clips(tmp / "audio", clips, int(sample_rate), spec.name)
    return {"generator": spec.generator, "generator_sha256": digest, "params": spec.params, "seed": spec.seed,
            "n_clips": spec.n_clips, "sample_rate": int(sample_rate)}


def _from_model(spec: SystemSpec, tmp: Path, sampler_cfg: dict, batch_size: int, decode: dict | None) -> dict:
    import torch

    from musicdiff.data.hashing import sha256_tree
    from musicdiff.generation.trained import TrainedVariant

    model_dir = Path(spec.model)
    if not (model_dir / "representation.json").is_file():
        raise FileNotFoundError(f"systems.{spec.name}.model: {model_dir} is not a trained model folder of this suite "
                                "(no representation.json; give data/models/<variant> of a checkout that trained it)")
    trained = TrainedVariant.load(None, model_dir, step=spec.step, decode=decode)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    audio, _, _ = trained.generate_audio(sampler_cfg, spec.n_clips, spec.seed, batch_size, device=device,
                                         progress=False)
    clips = _as_clips(audio, spec.n_clips, f"model {model_dir}")
    rate = trained.representation.sample_rate
    _write_clips(tmp / "audio", clips, rate, spec.name)
    weights = model_dir / "unet_ema" if spec.step is None else model_dir / "checkpoints" / f"step_{spec.step}"
    return {"model": str(model_dir.resolve()), "family": trained.family, "step": spec.step, "sampler": sampler_cfg,
            "seed": spec.seed, "n_clips": spec.n_clips, "sample_rate": rate,
            "model_weights_sha256": sha256_tree(sorted(p for p in weights.rglob("*") if p.is_file()))}


def materialize(spec: SystemSpec, out_dir: Path, *, sampler_cfg: dict | None = None, batch_size: int = 32,
                decode: dict | None = None) -> dict:
    """Write the system's audio under ``out_dir/audio/`` (and, for a folder, its download under
    ``out_dir/source/``), atomically, and return its provenance (kind, where it came from, hashes).

    ``sampler_cfg`` (a ``samplers`` entry), ``batch_size`` and ``decode`` are used by a model system only.

    Raises:
        ValueError, TypeError: a generator that returns something else than ``(audio, sample_rate)`` of
            ``n_clips`` clips.
        FileNotFoundError, ImportError: a missing folder, model folder, module or file (named).
    """
    from musicdiff.data.hashing import replace_folder

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    import tempfile

    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        if spec.kind == "source":
            provenance = _from_source(spec, tmp)
        elif spec.kind == "generator":
            provenance = _from_generator(spec, tmp)
        else:
            if sampler_cfg is None:
                raise ValueError(f"systems.{spec.name}: sampler {spec.sampler!r} is not in params.yaml samplers")
            provenance = _from_model(spec, tmp, sampler_cfg, batch_size, decode)
        replace_folder(tmp, out_dir)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"kind": spec.kind, "label": spec.label, **provenance, "python": sys.version.split()[0]}
