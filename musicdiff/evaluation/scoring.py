"""The one scoring path: an evaluation set against a reference set, under one protocol.

:func:`score` takes two :class:`~musicdiff.evaluation.sets.EmbeddedSet` (or shipped reference
statistics) and returns a :class:`Score`: FAD with its bootstrap interval (``musicdiff.evaluation.metrics.fad``),
KAD with its jackknife interval (``musicdiff.evaluation.metrics.kad``), FAD-inf with its fit and reliability
(``musicdiff.evaluation.metrics.fad_inf``), the counts behind them (clips, frames, independent frames, the
embedding dimension) and the checks a reader needs before trusting the number:

* **protocol**: both sides must come from the same clip duration, sample rate, segmentation,
  embedding config and weights, or :class:`~musicdiff.evaluation.protocol.ProtocolMismatchError`
  names both sets and what differs. Shipped statistics (e.g. fadtk's FMA-Pop mean and covariance,
  computed by fadtk from whole tracks) cannot be checked; they are scored only on request and the
  score says ``protocol_matched = False``;
* **sample adequacy**: a covariance of d dimensions estimated from fewer than ``adequacy`` x d
  (default 2 x d) independent frames is poor, and FAD with it mostly measures the sample size.
  Such a score is ``adequate = False`` (flag ``undersampled``): tables mark it and point to KAD,
  which is unbiased and needs no covariance. The reference set is held to the same rule;
* **FAD-inf reliability** (pool large enough for the embedding's dimension, R^2 of the 1/n fit).

Every scoring stage (FAD table, noisy-sample filter, training curve, sample size, variations, text
conditioning, floors, metric sensitivity) calls :func:`score` or :func:`musicdiff.evaluation.compare`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from musicdiff.evaluation.sets import EmbeddedSet
from musicdiff.evaluation.metrics.fad import FadResult, GaussianStats, fad_score, gaussian_stats
from musicdiff.evaluation.metrics.fad_inf import FadInfResult, fad_inf, subset_sizes
from musicdiff.evaluation.metrics.kad import KadResult, kad_score, median_bandwidth


@dataclass(frozen=True)
class ScoreSettings:
    """Knobs of :func:`score` (params.yaml ``evaluation``): bootstrap resamples and seed, interval level,
    the adequacy factor (independent frames per dimension), and FAD-inf's subsets (``fad_inf_sizes``
    sizes spanning ``fad_inf_span`` up to half the pool, ``fad_inf_repeats`` draws each) and the R^2
    below which its fit is not trusted."""

    n_bootstrap: int = 200
    ci: float = 0.95
    seed: int = 0
    adequacy: float = 2.0
    fad_inf_sizes: int = 6
    fad_inf_span: float = 8.0
    fad_inf_repeats: int = 8
    fad_inf_min_r2: float = 0.95

    @classmethod
    def from_params(cls, section: dict) -> "ScoreSettings":
        """From params.yaml's ``evaluation`` section (unknown keys are other stages' and ignored)."""
        known = {k: section[k] for k in cls.__dataclass_fields__ if k in section}
        return cls(**known)

    def to_dict(self) -> dict:
        return asdict(self)


class Reference:
    """A reference set ready to score against: its frames (or shipped statistics), its Gaussian
    statistics with the covariance's square root computed once, and KAD's bandwidth frozen from it."""

    def __init__(self, name: str, embedded: EmbeddedSet | None = None, stats: GaussianStats | None = None,
                 meta: dict | None = None):
        if (embedded is None) == (stats is None):
            raise ValueError("a reference is either an embedding set or shipped statistics")
        self.name, self.embedded, self._stats = name, embedded, stats
        self.meta = embedded.meta if embedded is not None else dict(meta or {})

    @classmethod
    def from_set(cls, embedded: EmbeddedSet) -> "Reference":
        return cls(embedded.name, embedded=embedded)

    @classmethod
    def from_stats(cls, name: str, stats: GaussianStats, embedding: str, source: str) -> "Reference":
        """Shipped statistics (mean, covariance) of ``embedding`` from ``source``: FAD and FAD-inf only;
        the protocol that made them cannot be checked."""
        return cls(name, stats=stats, meta={"embedding": embedding, "source": source})

    @property
    def has_clips(self) -> bool:
        return self.embedded is not None

    @cached_property
    def stats(self) -> GaussianStats:
        return self._stats if self._stats is not None else gaussian_stats(self.embedded.frames)

    @cached_property
    def frames(self) -> np.ndarray:
        return np.asarray(self.embedded.frames, dtype=np.float64)

    @cached_property
    def bandwidth(self) -> float:
        return median_bandwidth(self.frames)

    @property
    def dim(self) -> int:
        return int(self.stats.mu.shape[0])

    @property
    def n_clips(self) -> int:
        return len(self.embedded.clips) if self.embedded is not None else 0

    @property
    def n_independent(self) -> int:
        return self.embedded.n_independent if self.embedded is not None else 0


@dataclass
class Score:
    """One evaluation set scored against one reference set (see the module docstring)."""

    evaluation: str
    reference: str
    embedding: str
    dim: int
    n_clips: int
    n_frames: int
    n_independent: int
    ref_clips: int
    ref_frames: int
    ref_independent: int
    adequate: bool
    reference_adequate: bool
    protocol_matched: bool
    needed: float  # independent frames an adequate set needs: adequacy x dim
    fad: FadResult
    kad: KadResult | None = None
    fad_inf: FadInfResult | None = None
    fad_inf_error: str = ""

    def flags(self) -> list[str]:
        """Why this score should not be read plainly (empty when nothing is wrong)."""
        flags = []
        if not self.adequate:
            flags.append(f"undersampled: {self.n_independent} independent evaluation frames < "
                         f"{math.ceil(self.needed)} for {self.dim} dimensions; read KAD")
        if not self.reference_adequate:
            flags.append(f"reference undersampled: {self.ref_independent} independent frames < "
                         f"{math.ceil(self.needed)}")
        if not self.protocol_matched:
            flags.append("reference computed under another protocol (shipped statistics): not like for like")
        return flags

    def metrics(self) -> dict[str, float]:
        """Flat numbers for a record and MLflow: fad (+ CI, terms, bootstrap bias), counts, adequacy
        (1/0), kad (+ CI, bandwidth), fad_inf (+ CI, slope, R^2, pool, reliable 1/0)."""
        f = self.fad
        out = {"fad": f.fad, "fad_ci_low": f.ci_low, "fad_ci_high": f.ci_high, "mean_term": f.mean_term,
               "trace_term": f.trace_term, "bootstrap_bias": f.bootstrap_bias, "bootstrap_sd": f.bootstrap_sd,
               "n_clips": self.n_clips, "n_frames": self.n_frames, "n_independent": self.n_independent,
               "dim": self.dim, "adequate": float(self.adequate), "ref_clips": self.ref_clips,
               "ref_frames": self.ref_frames, "ref_independent": self.ref_independent,
               "reference_adequate": float(self.reference_adequate), "protocol_matched": float(self.protocol_matched)}
        if self.kad is not None:
            out.update({"kad": self.kad.kad, "kad_ci_low": self.kad.ci_low, "kad_ci_high": self.kad.ci_high,
                        "kad_se": self.kad.se, "kad_bandwidth": self.kad.bandwidth})
        if self.fad_inf is not None:
            i = self.fad_inf
            out.update({"fad_inf": i.fad_inf, "fad_inf_ci_low": i.ci_low, "fad_inf_ci_high": i.ci_high,
                        "fad_inf_slope": i.slope, "fad_inf_r2": i.r2, "fad_inf_pool": i.pool,
                        "fad_inf_min_subset": i.sizes[0], "fad_inf_reliable": float(i.reliable)})
        return {k: float(v) for k, v in out.items() if v is not None}

    def tags(self) -> dict[str, str]:
        """Text that does not fit a number: the flags and why FAD-inf is unreliable or missing."""
        out = {}
        if self.flags():
            out["flags"] = "; ".join(self.flags())
        if self.fad_inf is not None and not self.fad_inf.reliable:
            out["fad_inf_unreliable"] = self.fad_inf.reason
        if self.fad_inf_error:
            out["fad_inf_missing"] = self.fad_inf_error
        return out


def _clips64(evaluation: EmbeddedSet) -> list[np.ndarray]:
    return [np.asarray(c, dtype=np.float64) for c in evaluation.clips]


def score(evaluation: EmbeddedSet, reference: Reference, settings: ScoreSettings = ScoreSettings(),
          kad: bool = True, fad_inf_: bool = True) -> Score:
    """Score ``evaluation`` against ``reference`` (see the module docstring).

    FAD's interval is the clip bootstrap (``settings.n_bootstrap`` resamples, seeded); KAD (when the
    reference has clips and ``kad``) uses the bandwidth frozen from the reference; FAD-inf (when
    ``fad_inf_`` and the pool allows :func:`~musicdiff.evaluation.metrics.fad_inf.subset_sizes`) draws subsets up to
    half the pool and is reliable only if its smallest subset holds as many independent frames as the
    embedding has dimensions and R^2 >= ``settings.fad_inf_min_r2``.

    Raises ``ProtocolMismatchError`` when the two sides were made differently, and ``ValueError`` for an
    empty evaluation set or one with fewer than 2 frames.
    """
    matched = reference.has_clips
    if matched:
        evaluation.check_comparable(reference.embedded)
    elif reference.meta.get("embedding") != evaluation.embedding:
        raise ValueError(f"reference {reference.name!r} holds {reference.meta.get('embedding')} statistics; "
                         f"{evaluation.name!r} was embedded with {evaluation.embedding}")
    if not evaluation.clips:
        raise ValueError(f"evaluation set {evaluation.name!r} holds no clips")
    clips = _clips64(evaluation)
    dim = int(clips[0].shape[1])
    needed = settings.adequacy * dim
    fad = fad_score(reference.stats, clips, n_bootstrap=settings.n_bootstrap, seed=settings.seed, ci=settings.ci)
    kad_result = None
    if kad and matched and len(clips) >= 3:
        kad_result = kad_score(reference.frames, clips, bandwidth=reference.bandwidth, ci=settings.ci)
    inf, inf_error = None, ""
    if fad_inf_:
        try:
            sizes = subset_sizes(len(clips), span=settings.fad_inf_span, count=settings.fad_inf_sizes)
            min_clips = math.ceil(dim / evaluation.independent_per_clip)
            inf = fad_inf(reference.stats, clips, sizes=sizes, repeats=settings.fad_inf_repeats, seed=settings.seed,
                          pool_sd=fad.bootstrap_sd, ci=settings.ci, min_r2=settings.fad_inf_min_r2,
                          min_subset_clips=min_clips)
        except ValueError as error:  # pool too small for any subsets: no FAD-inf at all
            inf_error = str(error)
    return Score(evaluation.name, reference.name, evaluation.embedding, dim, len(clips), fad.n_eval,
                 evaluation.n_independent, reference.n_clips, reference.stats.n, reference.n_independent,
                 evaluation.n_independent >= needed, (not matched) or reference.n_independent >= needed,
                 matched, needed, fad, kad_result, inf, inf_error)


def score_against(evaluation: EmbeddedSet, references: dict, settings: ScoreSettings = ScoreSettings(),
                  fad_inf_: bool = True, kad: bool = True) -> tuple[dict, dict]:
    """Score ``evaluation`` against every :class:`Reference` of ``references`` (``{name: Reference}``):
    ``(metrics, tags)`` keyed ``<embedding>/<reference>/<name>`` (e.g. ``musicnn/heldout/fad``), the keys
    every stage record, MLflow run and report table uses. Raises as :func:`score`."""
    metrics, tags = {}, {}
    for name, reference in references.items():
        result = score(evaluation, reference, settings, kad=kad, fad_inf_=fad_inf_)
        prefix = f"{evaluation.embedding}/{name}"
        metrics.update({f"{prefix}/{k}": v for k, v in result.metrics().items()})
        tags.update({f"{prefix}/{k}": v[:5000] for k, v in result.tags().items()})
    return metrics, tags
