"""What a replication audit detects: training clips planted in a generated set, exact and transformed.

The design of MiRA (Batlle-Roca et al. 2024, "Towards Assessing Data Replication in Music Generation
with Music Similarity Metrics on Raw Audio", ISMIR): replace a fraction (0, 1, 5, 10, 25%) of a
generated set with training clips, as they are and transformed, and count how many of the planted
clips each space flags (:class:`~musicdiff.evaluation.replication.ReplicationAudit`, its calibrated
threshold). The transforms, on mono float waveforms:

* ``exact``: the training clip itself;
* ``gain +6 dB`` / ``gain -6 dB``: scaled by 10^(+-6/20) (not clipped: float audio);
* ``noise 20 dB SNR``: white Gaussian noise at 1/100 of the clip's mean power (seeded);
* ``pitch +1 semitone``: ``librosa.effects.pitch_shift`` (phase vocoder + resampling), same length;
* ``offset 0.25 s``: the clip advanced by 0.25 s, the end padded with silence (a copy that starts
  at another point of the training audio).

A row per space, transform and fraction (:class:`DetectionRow`): planted clips and how many were
flagged (detection rate with a Wilson interval), how many found their own source as the nearest
training clip, and the false flags among the generated clips left in place. Read the detection rate
per transform: 100% for exact copies is the least a space must do; what it misses tells which kinds of
replication a clean audit cannot exclude. The planted fraction does not change a clip's own
similarity; the rows by fraction show how the set's flagged fraction grows against the floor.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from musicdiff.evaluation.metrics.intervals import wilson_count
from musicdiff.evaluation.replication import ClipSet, ReplicationAudit, TooFewClipsForReplicationError, nearest

FRACTIONS = (0.0, 0.01, 0.05, 0.10, 0.25)


def gain(audio: np.ndarray, db: float) -> np.ndarray:
    """``audio`` scaled by ``db`` decibels."""
    return (np.asarray(audio, dtype=np.float32) * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def white_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``audio`` plus white Gaussian noise at ``snr_db`` below its mean power."""
    audio = np.asarray(audio, dtype=np.float32)
    power = float(np.mean(audio.astype(np.float64) ** 2)) / 10.0 ** (snr_db / 10.0)
    return (audio + rng.normal(scale=math.sqrt(power), size=audio.shape)).astype(np.float32)


def pitch_shift(audio: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """``audio`` shifted by ``semitones`` (``librosa.effects.pitch_shift``), same length."""
    import librosa

    return librosa.effects.pitch_shift(np.asarray(audio, dtype=np.float32), sr=sample_rate,
                                       n_steps=semitones).astype(np.float32)


def time_offset(audio: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """``audio`` advanced by ``seconds`` (delayed if negative), padded with silence to its length."""
    audio = np.asarray(audio, dtype=np.float32)
    d = min(len(audio), int(round(abs(seconds) * sample_rate)))
    pad = np.zeros(d, np.float32)
    return np.concatenate([audio[d:], pad]) if seconds >= 0 else np.concatenate([pad, audio[:len(audio) - d]])


TRANSFORMS = {
    "exact": lambda x, sr, rng: np.asarray(x, dtype=np.float32),
    "gain +6 dB": lambda x, sr, rng: gain(x, 6.0),
    "gain -6 dB": lambda x, sr, rng: gain(x, -6.0),
    "noise 20 dB SNR": lambda x, sr, rng: white_noise(x, 20.0, rng),
    "pitch +1 semitone": lambda x, sr, rng: pitch_shift(x, sr, 1.0),
    "offset 0.25 s": lambda x, sr, rng: time_offset(x, sr, 0.25),
}


@dataclass(frozen=True)
class DetectionRow:
    """One space, transform and planted fraction: ``n_planted`` clips, ``n_detected`` of them flagged
    (``detection_rate``, Wilson ``low``/``high``; NaN with none planted), ``n_source_found`` whose nearest
    training clip was their source, and ``n_other_flagged`` of the ``n_other`` clips left in place;
    ``fraction_flagged`` of the whole set."""

    space: str
    transform: str
    fraction: float
    n_planted: int
    n_detected: int
    detection_rate: float
    low: float
    high: float
    n_source_found: int
    n_other: int
    n_other_flagged: int
    fraction_flagged: float

    def to_dict(self) -> dict:
        return asdict(self)


def planted_count(fraction: float, n: int) -> int:
    """Clips to plant for ``fraction`` of ``n``: rounded, at least 1 for a fraction above 0."""
    return 0 if fraction <= 0 else max(1, int(round(fraction * n)))


def _checked(audits: list[ReplicationAudit], generated: ClipSet, fractions, transforms) -> int:
    """The largest planted count; raises for unknown transforms, mismatched audits or too few clips."""
    unknown = [t for t in transforms if t not in TRANSFORMS]
    if unknown:
        raise KeyError(f"unknown transforms {unknown}; known: {list(TRANSFORMS)}")
    if not audits:
        raise ValueError("no audits: give one ReplicationAudit per space")
    training = audits[0].training
    if any(a.training.names != training.names for a in audits):
        raise ValueError("the audits were prepared on different training sets")
    if any(a.space.sample_rate is None for a in audits):
        raise ValueError("a space without a sample rate takes embeddings, not waveforms: planted copies are audio")
    if len(generated.clips) == 0:
        raise TooFewClipsForReplicationError(f"generated set {generated.name!r} is empty")
    most = max(planted_count(f, len(generated.clips)) for f in fractions)
    if most > len(training.clips):
        raise TooFewClipsForReplicationError(
            f"planting {most} clips needs as many training clips; {training.name!r} has {len(training.clips)}")
    return most


def planted_copy_calibration(audits: list[ReplicationAudit], generated: ClipSet, fractions=FRACTIONS,
                             transforms=tuple(TRANSFORMS), seed: int = 0) -> list[DetectionRow]:
    """Detection rates of planted training clips (module docstring) for each audit's space: ``generated``
    holds waveforms at every space's sample rate, as do the audits' common training set. The planted
    positions and source clips are a seeded draw, nested across fractions (5% holds the 1% clips).

    Raises ``KeyError`` for an unknown transform, :class:`TooFewClipsForReplicationError` for an empty
    generated set or a fraction that needs more training clips than there are, ``ValueError`` for audits
    on different training sets or a space that takes no waveforms.
    """
    most = _checked(list(audits), generated, fractions, transforms)
    training = audits[0].training
    rng = np.random.default_rng(seed)
    positions = rng.permutation(len(generated.clips))
    sources = rng.permutation(len(training.clips))[:most]
    rows = []
    for audit in audits:
        own = nearest(audit.space.similarity(audit.space.features(generated.clips), audit.train_features))[1]
        flagged_own = audit.threshold.flags(own)
        for name in transforms:
            sr = audit.space.sample_rate
            noise = np.random.default_rng([seed, zlib.crc32(name.encode())])
            copies = [TRANSFORMS[name](training.clips[i], sr, noise) for i in sources]
            idx, sim = nearest(audit.space.similarity(audit.space.features(copies), audit.train_features)) if most \
                else (np.zeros(0, np.int64), np.zeros(0))
            for fraction in fractions:
                k = planted_count(fraction, len(generated.clips))
                if k == 0 and name != transforms[0]:
                    continue  # nothing planted: one row per space
                detected = int(np.count_nonzero(audit.threshold.flags(sim[:k])))
                others = np.ones(len(generated.clips), bool)
                others[positions[:k]] = False
                other_flagged = int(np.count_nonzero(flagged_own & others))
                low, high = wilson_count(detected, k)
                rows.append(DetectionRow(audit.space.name, name if k else "none", float(fraction), k, detected,
                                         detected / k if k else float("nan"), low, high,
                                         int(np.count_nonzero(idx[:k] == sources[:k])), len(generated.clips) - k,
                                         other_flagged, (detected + other_flagged) / len(generated.clips)))
    return rows
