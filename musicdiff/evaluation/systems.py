"""Systems: music from outside the suite's own variants, scored exactly like them.

A *system* (params.yaml ``systems.<name>``) is one of three kinds, each turned into a folder of audio
files plus its provenance by :func:`materialize`; the evaluation protocol, bad-input policy, reference
sets, embeddings, FAD/KAD/FAD-inf, comparisons and noisy-sample filtering then treat that folder as
they treat a generated set.

* **a folder of audio** -- any set spec of :func:`musicdiff.data.sources.download_set` under ``source``
  (``{local: FOLDER, include: [...]}`` or files a Python package ships, ``{python_package: fadtk, path:
  test/samples, include: ["mg-*.opus"]}``); with ``clip_s`` each file is cut to its first ``clip_s``
  seconds (channels and rate kept, float WAV);
* **a generator entry point** -- ``generator: "module:function"`` (a module on ``sys.path`` or a
  ``path/to/file.py:function``), called as ``function(n_clips=..., seed=..., **params)`` and returning
  ``(audio, sample_rate)``: audio ``(n_clips, samples)`` (or a list of 1-D arrays, or
  ``(n_clips, channels, samples)``), float, full scale 1.0; sample rate in Hz. Any model can be
  benchmarked so, e.g. a diffusers pipeline the function loads with ``from_pretrained(local_dir)``;
  nothing is downloaded here;
* **a trained model folder of this suite** from another checkout or experiment -- ``model:
  path/to/data/models/<variant>`` with ``sampler`` (a ``samplers`` entry), ``n_clips``, ``seed`` and an
  optional checkpoint ``step``.

``label`` names the row in the tables (default: the system's name).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["KINDS", "SystemSpec", "materialize", "load_generator"]

KINDS = ("source", "generator", "model")


@dataclass(frozen=True)
class SystemSpec:
    """One ``systems.<name>`` entry (see the module docstring). Raises ``ValueError`` naming the entry for
    a malformed one."""

    name: str
    kind: str
    label: str
    source: dict | None = None
    clip_s: float | None = None
    generator: str | None = None
    model: str | None = None
    sampler: str | None = None
    step: int | None = None
    n_clips: int | None = None
    seed: int = 0
    params: dict = field(default_factory=dict)

    @classmethod
    def from_params(cls, name: str, entry: dict) -> "SystemSpec":
        entry = dict(entry or {})
        kinds = [k for k in KINDS if k in entry]
        if len(kinds) != 1:
            raise ValueError(f"systems.{name}: give exactly one of {KINDS}, got {sorted(entry)}")
        known = {"label", "clip_s", "n_clips", "seed", "params", "sampler", "step", *KINDS}
        unknown = set(entry) - known
        if unknown:
            raise ValueError(f"systems.{name}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        kind = kinds[0]
        spec = cls(name=name, kind=kind, label=str(entry.get("label") or name), source=entry.get("source"),
                   clip_s=entry.get("clip_s"), generator=entry.get("generator"), model=entry.get("model"),
                   sampler=entry.get("sampler"), step=entry.get("step"), n_clips=entry.get("n_clips"),
                   seed=int(entry.get("seed", 0)), params=dict(entry.get("params") or {}))
        if spec.clip_s is not None and not (math.isfinite(float(spec.clip_s)) and float(spec.clip_s) > 0):
            raise ValueError(f"systems.{name}.clip_s must be a positive number of seconds, got {spec.clip_s!r}")
        if kind in ("generator", "model") and not (isinstance(spec.n_clips, int) and spec.n_clips >= 1):
            raise ValueError(f"systems.{name}.n_clips must be a positive integer for a {kind}, got {spec.n_clips!r}")
        if kind == "model" and not spec.sampler:
            raise ValueError(f"systems.{name}: a model needs `sampler:` (a name of params.yaml samplers)")
        if kind == "generator" and ":" not in str(spec.generator):
            raise ValueError(f"systems.{name}.generator must be 'module:function', got {spec.generator!r}")
        return spec


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
