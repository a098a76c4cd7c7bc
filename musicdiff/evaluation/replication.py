"""Does a model replicate its training set? Each generated clip's nearest training clip, against a
threshold calibrated on real music the model never saw.

For every generated clip, in one space of :mod:`musicdiff.evaluation.replication_spaces` (cosine of
mean embeddings, or the offset- and gain-robust log-mel correlation), the most similar training clip
and the most similar held-out real clip. A clip is **flagged** when its nearest-training similarity
exceeds a threshold set so that real held-out clips are flagged at a stated false-positive rate
(default 1%):

* **calibration** (:func:`calibrate`): the held-out real clips are split in two by source (clips
  named ``<file>#<k>`` stay with their file), seeded: the *calibration* half sets the threshold, the
  *floor* half is audited like a generated set and reported as the floor, the rate at which music
  the model never saw is flagged. The threshold is never scored on the clips that set it (those are
  flagged at most at the stated rate by construction, so they would show nothing). The threshold is
  the r-th smallest of the n calibration similarities, ``r = ceil((1 - rate) n)``, and flagging is
  strict (``>``), so at most ``rate x n`` calibration clips are flagged; a fresh clip exchangeable
  with them is flagged with probability ``(n + 1 - r) / (n + 1)`` (``Threshold.fresh_rate``): with
  fewer than ``1 / rate`` calibration clips the threshold is their maximum and that rate is
  ``1 / (n + 1)``, not the one asked for. Report ``fresh_rate`` with the threshold;
* **per set** (:class:`ReplicationResult`): the fraction flagged with its Wilson 95% interval, the three
  closest pairs (generated name, training name, similarity), and every clip's nearest training and
  held-out similarities. Read the fraction against the floor's: a set flagged at the floor's rate
  shows no sign of replication in this space; one above it holds clips closer to training clips than
  unseen real music comes. The nearest held-out similarity says how close real music comes anyway: a
  clip as close to a held-out clip as to its nearest training clip is similar in style, not a copy.

What it does not say: a clip can copy a melody in another key, tempo or instrumentation, which neither
space sees (MiRA's planted-copy calibration, :mod:`musicdiff.evaluation.replication_calibration`,
measures what each space does detect); training clips must cover the training audio densely enough
(see the mel space's lag rule); a flag is a candidate for listening, not proof.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from musicdiff.evaluation.metrics.intervals import wilson_count

CLOSEST = 3


class TooFewClipsForReplicationError(ValueError):
    """A set holds too few clips (or sources) for the audit."""


@dataclass(frozen=True)
class ClipSet:
    """A named set of clips (waveforms or per-clip embeddings, as the space takes them) with a name per
    clip (``<file>#<k>`` for the k-th clip of a file keeps a file's clips together when splitting)."""

    name: str
    names: list[str]
    clips: list

    def __post_init__(self):
        if len(self.names) != len(self.clips):
            raise ValueError(f"set {self.name!r}: {len(self.names)} names for {len(self.clips)} clips")

    def take(self, idx) -> "ClipSet":
        return ClipSet(self.name, [self.names[i] for i in idx], [self.clips[i] for i in idx])


def source_of(name: str) -> str:
    """The file a clip named ``<file>#<k>`` came from (the whole name when it has no ``#``)."""
    return name.rsplit("#", 1)[0]


def nearest(similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and similarity of each row's most similar column of a (n_q, n_r) similarity matrix."""
    idx = similarity.argmax(axis=1)
    return idx, similarity[np.arange(len(similarity)), idx]


@dataclass(frozen=True)
class Threshold:
    """Similarity above which a clip is flagged (``value``), the asked-for rate, the calibration clips
    (``n``) and the rank ``r`` of the threshold among them, and ``fresh_rate`` = (n + 1 - r)/(n + 1)."""

    space: str
    value: float
    rate: float
    n: int
    rank: int

    @property
    def fresh_rate(self) -> float:
        return (self.n + 1 - self.rank) / (self.n + 1)

    def flags(self, similarity: np.ndarray) -> np.ndarray:
        return np.asarray(similarity) > self.value


def calibrate(similarities: np.ndarray, rate: float = 0.01, space: str = "") -> Threshold:
    """The threshold that flags at most ``rate`` of the calibration clips whose nearest-training
    similarities are ``similarities`` (n,): their r-th smallest, r = ceil((1 - rate) n) (module
    docstring). Raises ``ValueError`` for no similarities or a rate outside (0, 1)."""
    s = np.sort(np.asarray(similarities, dtype=np.float64))
    if s.size == 0:
        raise ValueError("no calibration similarities")
    if not 0.0 < rate < 1.0:
        raise ValueError(f"the false-positive rate must lie in (0, 1), got {rate}")
    rank = min(s.size, max(1, math.ceil((1.0 - rate) * s.size - 1e-9)))
    return Threshold(space, float(s[rank - 1]), rate, int(s.size), rank)


def split_by_source(names: list[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded half of the sources (:func:`source_of`) and of the other half, each sorted;
    the first half gets the extra source of an odd count. Raises
    :class:`TooFewClipsForReplicationError` for fewer than 2 sources."""
    sources = sorted({source_of(n) for n in names})
    if len(sources) < 2:
        raise TooFewClipsForReplicationError(f"{len(names)} held-out clips from {len(sources)} source(s); calibrating "
                                             "a threshold and measuring its floor needs at least 2 sources")
    order = np.random.default_rng(seed).permutation(len(sources))
    first = {sources[i] for i in order[: (len(sources) + 1) // 2]}
    mask = np.array([source_of(n) in first for n in names])
    return np.flatnonzero(mask), np.flatnonzero(~mask)


@dataclass(frozen=True)
class ReplicationResult:
    """One set audited in one space (module docstring)."""

    set: str
    space: str
    n: int
    n_flagged: int
    fraction: float
    low: float
    high: float
    threshold: float
    closest: list[tuple[str, str, float]]
    nearest_training: list[str] = field(repr=False)
    training_similarity: np.ndarray = field(repr=False)
    heldout_similarity: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["training_similarity"] = self.training_similarity.tolist()
        out["heldout_similarity"] = self.heldout_similarity.tolist()
        return out


class ReplicationAudit:
    """A training set, held-out real clips and one space, prepared for auditing generated sets.

    The held-out clips are split by source (:func:`split_by_source`, ``seed``): the calibration half
    sets ``threshold`` at ``rate``, the floor half is audited as ``floor``. Features of the training and
    held-out clips are computed once. Raises ``ValueError`` naming the set for an empty training set,
    :class:`TooFewClipsForReplicationError` for held-out clips from fewer than 2 sources.
    """

    def __init__(self, space, training: ClipSet, heldout: ClipSet, rate: float = 0.01, seed: int = 0):
        if len(training.clips) == 0:
            raise ValueError(f"training set {training.name!r} is empty: there is nothing to compare with")
        if len(heldout.clips) == 0:
            raise TooFewClipsForReplicationError(f"held-out set {heldout.name!r} is empty: the threshold is calibrated "
                                                 "on real clips the model never saw")
        self.training, self.heldout = training, heldout
        self.train_features = space.features(training.clips)
        self.space = space.fitted(self.train_features)
        calibration, floor = split_by_source(heldout.names, seed)
        self.calibration, self.floor_set = heldout.take(calibration), heldout.take(floor)
        features = self.space.features(heldout.clips)
        self.calibration_features = self.space.take(features, calibration)
        floor_features = self.space.take(features, floor)
        similarity = nearest(self.space.similarity(self.calibration_features, self.train_features))[1]
        self.threshold = calibrate(similarity, rate, self.space.name)
        self.calibration_similarity = similarity
        self.floor = self.evaluate_features(self.floor_set, floor_features)

    def evaluate(self, clips: ClipSet) -> ReplicationResult:
        """Audit ``clips`` (generated, or any set): flagged fraction, closest pairs, nearest similarities.
        Raises :class:`TooFewClipsForReplicationError` for an empty set."""
        if len(clips.clips) == 0:
            raise TooFewClipsForReplicationError(f"set {clips.name!r} is empty: nothing to audit")
        return self.evaluate_features(clips, self.space.features(clips.clips))

    def evaluate_features(self, clips: ClipSet, features) -> ReplicationResult:
        """:meth:`evaluate` of clips whose features in this space are given; the nearest held-out clip
        is sought among the calibration half (the floor half may be the set itself)."""
        idx, train_sim = nearest(self.space.similarity(features, self.train_features))
        held_sim = nearest(self.space.similarity(features, self.calibration_features))[1]
        flagged = int(np.count_nonzero(self.threshold.flags(train_sim)))
        low, high = wilson_count(flagged, len(train_sim))
        top = np.argsort(-train_sim, kind="stable")[:CLOSEST]
        closest = [(clips.names[i], self.training.names[idx[i]], float(train_sim[i])) for i in top]
        return ReplicationResult(clips.name, self.space.name, len(train_sim), flagged, flagged / len(train_sim), low,
                                 high, self.threshold.value, closest, [self.training.names[i] for i in idx],
                                 train_sim, held_sim)
