"""One bad-input policy for every entry point that reads audio: ``prepare``, embedding sets (the
``evaluate``, ``reference`` and system stages), ``musicdiff fad`` and the creative tools.

Each file is either **used** (possibly with *flags* that are counted and reported per set) or
**skipped** with a reason and a detail that names the file; a set whose skipped fraction exceeds
``max_skip_fraction`` stops with the list (:class:`TooManySkippedError`): a reference set that lost
most of its files is not that set. Nothing ends in a traceback; an exception this policy does not
know stops the run with the file named (:class:`UnexpectedInputError`) instead of being counted as
"unreadable", so a bug cannot hide as a skipped file.

Policy, in the order the checks run (README "Bad input"):

* **listing** (:func:`find_audio_files`; :func:`listing_skip` for one named file): a dangling link
  (``dangling_link``), a directory or other non-regular file whose name looks like audio
  (``not_a_file``), a file this user may not read (``no_permission``);
* **decoding**: a 0-byte file or one without samples is ``empty``; a file that libsndfile
  (``soundfile.LibsndfileError``/``SoundFileError``) and audioread (``DecodeError``,
  ``NoBackendError``, ``EOFError``) both refuse is ``unreadable``;
* **sample rate**: a file below ``min_sample_rate`` Hz is ``low_sample_rate``; above it, its band
  limit (half its rate, Hz) is recorded and a file below the target rate is flagged
  ``band_limited`` (resampling up adds no content above that limit);
* **channels**: every channel is averaged with equal weight (a 5.1 file's LFE counts as much as its
  centre; no ITU downmix coefficients), the convention of the study's tools; a file with more than
  two channels is flagged ``multichannel``; channels that cancel in the mean (anti-phase stereo) leave
  a silent mono signal, skipped as ``silent`` with that detail;
* **samples**: NaN or infinite samples are ``non_finite``; a peak above ``max_peak_dbfs`` (default
  +12 dBFS, 4.0 x full scale) is ``over_range`` (such a file is a scaling bug, and one 1e6-peak file
  dominates any covariance); a peak above full scale up to that limit is flagged ``over_full_scale``;
* **content**: a signal whose RMS level (dBFS, full scale 1.0) is below ``silence_dbfs`` is
  ``silent``; one whose level without its mean is below it is ``dc_only``; a mean above
  ``dc_offset`` (fraction of full scale) is flagged ``dc_offset``; more than ``clip_fraction`` of the
  samples at or above ``clip_level`` (fraction of full scale, or of the peak when it is above full
  scale) is flagged ``clipped``;
* **length**: shorter than the caller's minimum (an evaluation clip, a segment) is ``too_short``.

Two roles. Data that defines a distribution (prepare's sets, reference sets) skips every reason above.
An **evaluated** set (generated clips, an external system, the folder ``musicdiff fad`` scores) is
judged on what the model made: ``silent``, ``dc_only`` and ``over_range`` (:data:`CONTENT_REASONS`)
are then flags, counted and shown beside the score, and the clip is scored as generated; dropping
them would flatter the model (and empty the study's noisy-sample analysis of its subject). Files
that cannot be scored at all (unreadable, empty, NaN/inf, too short, ...) are skipped in both roles.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from musicdiff.data.audio import AUDIO_SUFFIXES, BadAudioError, decode_audio, downmix, resample, rms_dbfs

__all__ = [
    "CONTENT_REASONS",
    "FLAGS",
    "SKIP_REASONS",
    "InputPolicy",
    "ScreenedAudio",
    "Skip",
    "SkipLog",
    "TooManySkippedError",
    "UnexpectedInputError",
    "find_audio_files",
    "listing_skip",
    "screen_file",
]

#: Why a file is skipped (listing, decoding, content); prepare adds ``duplicate``.
SKIP_REASONS = ("dangling_link", "not_a_file", "no_permission", "empty", "unreadable", "low_sample_rate",
                "non_finite", "over_range", "silent", "dc_only", "too_short")
#: What a used file can be flagged with (counted per set, never a skip).
FLAGS = ("band_limited", "multichannel", "over_full_scale", "dc_offset", "clipped")
#: Content that an *evaluated* set (generated clips, an external system, the folder ``musicdiff fad``
#: scores) keeps and flags instead of skipping: what a model generated is what is judged.
CONTENT_REASONS = ("silent", "dc_only", "over_range")


class TooManySkippedError(RuntimeError):
    """A set lost more than ``max_skip_fraction`` of its files; the message lists them and ``log`` (when the
    raiser had one) is the :class:`SkipLog`, so that a stage can record the skips before it fails."""

    def __init__(self, message: str, log: "SkipLog | None" = None):
        super().__init__(message)
        self.log = log


class UnexpectedInputError(RuntimeError):
    """An exception the policy does not know, raised while reading a named file (a bug, not bad data)."""


@dataclass(frozen=True)
class InputPolicy:
    """The thresholds of the policy (params.yaml ``inputs``; the module docstring says what each does).

    Attributes:
        min_sample_rate: Hz; files below are skipped.
        silence_dbfs: RMS level (dBFS) below which a signal is silent.
        max_peak_dbfs: peak (dBFS) above which a file is over range and skipped.
        clip_level: fraction of full scale (or of an over-range peak) counted as clipped.
        clip_fraction: fraction of clipped samples above which a file is flagged ``clipped``.
        dc_offset: |mean| (fraction of full scale) above which a file is flagged ``dc_offset``.
        max_skip_fraction: the largest fraction of a set's files that may be skipped (0 to 1).
    """

    min_sample_rate: int = 8000
    silence_dbfs: float = -60.0
    max_peak_dbfs: float = 12.0
    clip_level: float = 0.999
    clip_fraction: float = 0.001
    dc_offset: float = 0.05
    max_skip_fraction: float = 0.2

    def __post_init__(self):
        for name in ("silence_dbfs", "max_peak_dbfs", "clip_level", "clip_fraction", "dc_offset",
                     "max_skip_fraction"):
            if not math.isfinite(float(getattr(self, name))):
                raise ValueError(f"inputs.{name} must be a finite number, got {getattr(self, name)!r}")
        if not 0.0 <= self.max_skip_fraction <= 1.0:
            raise ValueError(f"inputs.max_skip_fraction must be in [0, 1], got {self.max_skip_fraction}")
        if self.min_sample_rate < 1:
            raise ValueError(f"inputs.min_sample_rate must be >= 1 Hz, got {self.min_sample_rate}")
        if not 0.0 < self.clip_level <= 1.0 or not 0.0 <= self.clip_fraction <= 1.0:
            raise ValueError("inputs.clip_level must be in (0, 1] and inputs.clip_fraction in [0, 1]")

    @classmethod
    def from_params(cls, section: dict | None, **overrides) -> "InputPolicy":
        """From params.yaml's ``inputs`` section (missing keys keep their defaults). Raises ``ValueError``
        naming an unknown key."""
        section = dict(section or {})
        section.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(section) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"inputs: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**section)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Skip:
    """One skipped file: ``path`` (as given or relative to the set's folder), ``reason`` (one of
    :data:`SKIP_REASONS` or ``duplicate``) and a ``detail`` for people."""

    path: str
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class ScreenedAudio:
    """A used file: ``audio`` (samples,) float32 mono at ``sample_rate`` Hz, and what was measured on the
    decoded file before resampling (levels in dBFS, full scale 1.0; ``band_limit_hz`` is half the file's
    own rate)."""

    path: str
    audio: np.ndarray
    sample_rate: int
    source_sample_rate: int
    channels: int
    duration_s: float
    peak: float
    rms_dbfs: float
    dc_offset: float
    clipped_fraction: float
    band_limit_hz: float
    flags: tuple[str, ...] = ()

    def stats(self) -> dict:
        """The measurements as plain data (manifest columns, records)."""
        return {"source_sample_rate": self.source_sample_rate, "source_channels": self.channels,
                "source_duration_s": round(self.duration_s, 4), "peak": round(self.peak, 6),
                "rms_dbfs": round(self.rms_dbfs, 3), "dc_offset": round(self.dc_offset, 6),
                "clipped_fraction": round(self.clipped_fraction, 6), "band_limit_hz": self.band_limit_hz,
                "flags": ";".join(self.flags)}


@dataclass
class SkipLog:
    """The skipped files and flag counts of one set, and the skip-rate check.

    ``total`` counts every file the set was asked to use (skipped ones included)."""

    name: str
    skips: list[Skip] = field(default_factory=list)
    flags: dict[str, int] = field(default_factory=lambda: {f: 0 for f in FLAGS + CONTENT_REASONS})
    total: int = 0

    def skip(self, path, reason: str, detail: str = "") -> None:
        self.skips.append(Skip(str(path), reason, detail))

    def used(self, screened: ScreenedAudio) -> None:
        for flag in screened.flags:
            self.flags[flag] = self.flags.get(flag, 0) + 1

    def extend(self, skips) -> None:
        self.skips.extend(skips)

    @property
    def counts(self) -> dict[str, int]:
        """Skips per reason (only reasons that occurred)."""
        out: dict[str, int] = {}
        for s in self.skips:
            out[s.reason] = out.get(s.reason, 0) + 1
        return out

    @property
    def fraction(self) -> float:
        return len(self.skips) / self.total if self.total else 0.0

    def metrics(self) -> dict[str, float]:
        """``skipped_files``, ``skipped_fraction``, ``skipped/<reason>`` and ``flagged/<flag>`` for records
        and MLflow."""
        out = {"skipped_files": float(len(self.skips)), "skipped_fraction": round(self.fraction, 6),
               "input_files": float(self.total)}
        out.update({f"skipped/{k}": float(v) for k, v in sorted(self.counts.items())})
        out.update({f"flagged/{k}": float(v) for k, v in sorted(self.flags.items())})
        return out

    def to_dict(self) -> dict:
        return {"total": self.total, "skipped": [asdict(s) for s in self.skips], "counts": self.counts,
                "flags": dict(self.flags)}

    def lines(self, limit: int | None = None) -> list[str]:
        shown = self.skips if limit is None else self.skips[:limit]
        more = [] if limit is None or len(self.skips) <= limit else [f"... and {len(self.skips) - limit} more"]
        return [f"skipped {s}" for s in shown] + more

    def check(self, max_skip_fraction: float) -> None:
        """Raise :class:`TooManySkippedError` listing the skipped files when more than
        ``max_skip_fraction`` of ``total`` were skipped, or when every file was."""
        if self.total and (len(self.skips) > max_skip_fraction * self.total or len(self.skips) == self.total):
            raise TooManySkippedError(
                f"{self.name}: {len(self.skips)} of {self.total} files skipped ({self.fraction:.0%} > "
                f"max_skip_fraction {max_skip_fraction:.0%}); a set that lost that much is not that set:\n  "
                + "\n  ".join(self.lines(50)), log=self)


def find_audio_files(folder, suffixes=AUDIO_SUFFIXES) -> tuple[list[Path], list[Skip]]:
    """The readable regular audio files under ``folder`` (recursively, sorted, by suffix, case-insensitive),
    and the entries skipped with their reason: ``dangling_link``, ``not_a_file`` (a directory or device
    named like audio) and ``no_permission``.

    Raises ``FileNotFoundError`` when ``folder`` is not a directory."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of audio")
    files, skips = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() not in suffixes:
                continue
            skip = listing_skip(path)
            if skip is None:
                files.append(path)
            else:
                skips.append(skip)
    return files, skips


def listing_skip(path) -> Skip | None:
    """Why ``path`` cannot be opened as an audio file, before anything is decoded, or None when it can:
    ``dangling_link`` (a link to nothing), ``no_permission`` (it cannot be examined, or this user may
    not read it), ``not_a_file`` (a directory, device or pipe). The listing checks of
    :func:`find_audio_files`, also applied to a single named input (the creative tools).

    Raises ``FileNotFoundError`` when ``path`` does not exist (and is no link)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return Skip(str(path), "dangling_link", f"points to {os.readlink(path)}")
    try:
        mode = path.stat().st_mode
    except PermissionError as error:
        return Skip(str(path), "no_permission", str(error))
    if not stat.S_ISREG(mode):
        return Skip(str(path), "not_a_file", "a directory" if stat.S_ISDIR(mode) else "not a regular file")
    if not os.access(path, os.R_OK):
        return Skip(str(path), "no_permission", "not readable by this user")
    return None


def screen_file(path, target_sr: int, policy: InputPolicy = InputPolicy(), min_duration_s: float = 0.0,
                resampling=None, evaluated: bool = False) -> ScreenedAudio:
    """Decode ``path``, down-mix it to mono, resample it to ``target_sr`` Hz and apply the policy.

    The audio is exactly what :func:`musicdiff.data.audio.load_audio` returns (same decoder, channel
    mean and resampler), so embeddings do not change for files the policy uses.

    Args:
        path: audio file.
        target_sr: output rate, Hz.
        policy: thresholds (:class:`InputPolicy`).
        min_duration_s: files with fewer than ``round(min_duration_s * rate)`` samples at their own rate
            are ``too_short`` (seconds; the protocol rounds a clip's length the same way).
        resampling: ``musicdiff.data.audio.Resampling`` (default the module's).
        evaluated: the file belongs to an evaluated set: :data:`CONTENT_REASONS` become flags (see the
            module docstring).

    Returns:
        :class:`ScreenedAudio`.

    Raises:
        BadAudioError: the file is skipped; ``reason`` is one of :data:`SKIP_REASONS`, the message names
            the file.
        UnexpectedInputError: any other exception while reading, naming the file (not counted as a skip).

    Steps, as the module docstring lists them: :func:`_decode`, :func:`_check_samples` (rate, NaN/inf,
    length), the channel mean, :func:`_check_content` (over range, silent, DC only), :func:`_flags`, and the
    resampling.
    """
    path = Path(path)
    data, sr = _decode(path)
    frames, channels = data.shape
    _check_samples(path, data, sr, policy, min_duration_s)
    mono = downmix(data)
    peak = float(np.max(np.abs(data)))
    flags: list[str] = []
    level, mean = _check_content(path, data, mono, peak, policy, evaluated, flags)
    clipped = float(np.count_nonzero(np.abs(data) >= policy.clip_level * max(1.0, peak))) / data.size
    flags.extend(_flags(sr, target_sr, channels, peak, mean, clipped, policy))
    audio = resample(mono, sr, target_sr) if resampling is None else resample(mono, sr, target_sr, resampling)
    return ScreenedAudio(str(path), audio, int(target_sr), int(sr), int(channels), frames / float(sr), peak, level,
                         mean, clipped, sr / 2.0, tuple(flags))


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Decoding: ``(frames, channels)`` samples and the file's rate; raises ``BadAudioError`` (``empty``,
    ``unreadable``, ``no_permission``, ``not_a_file``, ``dangling_link``) or :class:`UnexpectedInputError`."""
    try:
        return decode_audio(path)
    except BadAudioError:
        raise
    except PermissionError as error:
        raise BadAudioError("no_permission", str(error), path) from error
    except IsADirectoryError as error:
        raise BadAudioError("not_a_file", "a directory", path) from error
    except FileNotFoundError as error:
        raise BadAudioError("dangling_link" if path.is_symlink() else "unreadable", str(error), path) from error
    except Exception as error:  # noqa: BLE001 - re-raised naming the file, never counted as a skip
        raise UnexpectedInputError(f"{path}: unexpected {type(error).__name__} while decoding: {error}") from error


def _check_samples(path: Path, data: np.ndarray, sr: int, policy: InputPolicy, min_duration_s: float) -> None:
    """Sample rate, samples and length: raises ``BadAudioError`` ``low_sample_rate``, ``non_finite`` or
    ``too_short``."""
    if sr < policy.min_sample_rate:
        raise BadAudioError("low_sample_rate", f"{sr} Hz < inputs.min_sample_rate {policy.min_sample_rate} Hz", path)
    if not np.isfinite(data).all():
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise BadAudioError("non_finite", f"{bad} NaN or infinite samples", path)
    frames = data.shape[0]
    if frames < int(round(min_duration_s * sr)):  # samples, rounded as EvaluationProtocol.clip_samples rounds
        raise BadAudioError("too_short", f"{frames / float(sr):.4f} s < {min_duration_s} s", path)


def _check_content(path: Path, data: np.ndarray, mono: np.ndarray, peak: float, policy: InputPolicy,
                   evaluated: bool, flags: list[str]) -> tuple[float, float]:
    """Content: ``over_range``, ``silent`` (anti-phase named) and ``dc_only`` raise ``BadAudioError``, or are
    appended to ``flags`` for an evaluated set; returns the mono signal's RMS level (dBFS) and mean."""
    def content(reason: str, detail: str) -> None:
        if not evaluated:
            raise BadAudioError(reason, detail, path)
        flags.append(reason)

    peak_dbfs = 20 * math.log10(peak) if peak > 0 else -math.inf
    if peak_dbfs > policy.max_peak_dbfs:
        content("over_range", f"peak {peak:.4g} ({peak_dbfs:+.1f} dBFS) > inputs.max_peak_dbfs "
                              f"{policy.max_peak_dbfs:+.1f} dBFS")
    level = rms_dbfs(mono)
    mean = float(np.mean(mono, dtype=np.float64))
    channels = data.shape[1]
    if level < policy.silence_dbfs:
        detail = f"RMS {level:.1f} dBFS < {policy.silence_dbfs} dBFS"
        if channels > 1 and rms_dbfs(data) >= policy.silence_dbfs:
            detail += f"; its {channels} channels cancel in the mono downmix (anti-phase)"
        content("silent", detail)
    elif rms_dbfs(mono - mean) < policy.silence_dbfs:
        content("dc_only", f"a constant {mean:+.4g} with nothing else above {policy.silence_dbfs} dBFS")
    return level, mean


def _flags(sr: int, target_sr: int, channels: int, peak: float, mean: float, clipped: float,
           policy: InputPolicy) -> list[str]:
    """The flags of a used file, in the order of :data:`FLAGS`."""
    checks = (("band_limited", sr < target_sr), ("multichannel", channels > 2), ("over_full_scale", peak > 1.0),
              ("dc_offset", abs(mean) > policy.dc_offset), ("clipped", clipped > policy.clip_fraction))
    return [flag for flag, raised in checks if raised]
