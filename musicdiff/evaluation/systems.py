"""Systems: music from outside the suite's own variants, scored exactly like them.

A *system* (params.yaml ``systems.<name>``) is one of three kinds, each turned into a folder of audio
files plus its provenance by :func:`musicdiff.evaluation.system_audio.materialize`; the evaluation protocol, bad-input policy, reference
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

``label`` names the row in the tables (default: the system's name). This module reads the entry
(a stage that only scores a system needs no more); ``system_audio`` makes the audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["KINDS", "SystemSpec"]

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
