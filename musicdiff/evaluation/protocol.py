"""The evaluation protocol: how audio becomes the clips that every FAD and KAD compares.

Reference and evaluation audio go through the same segmentation, so a score compares like with
like (Gui et al. 2024, "Adapting Frechet Audio Distance for Generative Music Evaluation", ICASSP,
recommend matched durations):

1. decode, down-mix (channel mean) and resample to ``sample_rate`` (Hz) with
   ``musicdiff.data.audio.load_audio`` and the protocol's resampler (:attr:`EvaluationProtocol.resampling`:
   libsoxr HQ, ``musicdiff.data.audio.SOXR_HQ``; the same resampler takes each clip on to the embedding's
   rate). Protocol version 2 switched it from torchaudio's sinc (version 1) by measurement (see
   ``musicdiff.data.audio``); sets of the two versions are refused as incomparable;
2. cut into clips of exactly ``clip_s`` seconds (``clip_samples = round(clip_s * sample_rate)``),
   non-overlapping, starting at 0; the incomplete tail is dropped. A file shorter than one clip is
   an error (``BadAudioError("too_short")`` naming it), never padded: padding would change what the
   clip sounds like on one side only. At most ``max_clips_per_file`` clips are kept per file (the
   first ones; ``None``: all of them);
3. each clip is embedded alone, with the embedding's own window, hop and padding rule (its
   ``config``); a clip shorter than the embedding's window is padded by that rule, the same on both
   sides.

The default CPU protocol cuts 0.73 s clips: the length every CPU variant generates ([64, 64] mels,
16384 waveform samples), so a generated clip is one clip, and each 3.72 s reference clip gives five.

Independent frames: windows of one clip that overlap are not independent samples. A clip gives
``max(1, floor(clip_s / window_s))`` independent frames (:func:`independent_frames`): one per 3 s
MusiCNN patch, one per 0.96 s VGGish example, one per 10 s CLAP window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

PROTOCOL_VERSION = 2
SEGMENTATION = "non-overlapping clips of clip_s from the start, tail dropped, no padding"


class ProtocolMismatchError(ValueError):
    """Two embedding sets that a score would compare were not made by the same protocol, embedding
    config or weights; the message names both sets and every field that differs."""


@dataclass(frozen=True)
class EvaluationProtocol:
    """Clip duration (s), sample rate (Hz) and the per-file clip cap of one evaluation protocol."""

    clip_s: float
    sample_rate: int
    max_clips_per_file: int | None = None

    def __post_init__(self):
        if not (isinstance(self.clip_s, (int, float)) and math.isfinite(self.clip_s) and self.clip_s > 0):
            raise ValueError(f"clip_s must be a positive number of seconds, got {self.clip_s!r}")
        if not (isinstance(self.sample_rate, int) and self.sample_rate > 0):
            raise ValueError(f"sample_rate must be a positive integer (Hz), got {self.sample_rate!r}")
        if self.max_clips_per_file is not None and (not isinstance(self.max_clips_per_file, int)
                                                    or self.max_clips_per_file < 1):
            raise ValueError(f"max_clips_per_file must be a positive integer or None, got {self.max_clips_per_file!r}")
        if self.clip_samples < 1:
            raise ValueError(f"clip_s {self.clip_s} s is shorter than one sample at {self.sample_rate} Hz")

    @property
    def clip_samples(self) -> int:
        """Samples of one clip at ``sample_rate``."""
        return int(round(self.clip_s * self.sample_rate))

    def clips(self, audio: np.ndarray, path=None) -> np.ndarray:
        """Clips ``(n, clip_samples)`` float32 of mono ``audio`` (samples,) at ``sample_rate``.

        Raises ``musicdiff.data.audio.BadAudioError`` (reason ``too_short``, naming ``path``) for
        audio shorter than one clip, and ``ValueError`` for audio that is not 1-D.
        """
        from musicdiff.data.audio import BadAudioError

        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"{path or 'audio'}: expected mono (samples,), got shape {audio.shape}")
        n = len(audio) // self.clip_samples
        if n == 0:
            raise BadAudioError("too_short", f"{len(audio) / self.sample_rate:.3f} s < one {self.clip_s} s "
                                             "evaluation clip", path)
        if self.max_clips_per_file is not None:
            n = min(n, self.max_clips_per_file)
        return audio[: n * self.clip_samples].reshape(n, self.clip_samples)

    @property
    def resampling(self):
        """The resampler of every evaluation clip (``musicdiff.data.audio.Resampling``): to
        ``sample_rate`` from the file's rate, and from there to the embedding's rate."""
        from musicdiff.data.audio import SOXR_HQ

        return SOXR_HQ

    def to_dict(self) -> dict:
        """Every setting that shapes a clip (it goes into embedding-cache keys and set metadata)."""
        return {**asdict(self), "clip_samples": self.clip_samples, "segmentation": SEGMENTATION,
                "downmix": "channel mean", "resampler": self.resampling.describe(), "version": PROTOCOL_VERSION}

    @classmethod
    def from_params(cls, section: dict) -> "EvaluationProtocol":
        """From the ``evaluation`` section of params.yaml (``clip_s``, ``sample_rate``, optional
        ``max_clips_per_file``). Raises ``KeyError`` naming a missing key."""
        for key in ("clip_s", "sample_rate"):
            if key not in section:
                raise KeyError(f"evaluation.{key} is missing in params.yaml (the evaluation protocol)")
        return cls(float(section["clip_s"]), int(section["sample_rate"]), section.get("max_clips_per_file"))


def independent_frames(clip_s: float, window_s: float) -> int:
    """Independent embedding frames of one clip: its non-overlapping windows, at least 1 (a clip shorter
    than the window is one padded window)."""
    if not (window_s > 0 and clip_s > 0):
        raise ValueError(f"clip_s and window_s must be positive, got {clip_s}, {window_s}")
    return max(1, int(math.floor(clip_s / window_s + 1e-9)))


def comparable_fields(meta: dict) -> dict:
    """The fields of an embedding set's metadata that must agree for two sets to be compared."""
    protocol = meta.get("protocol") or {}
    return {"clip_s": protocol.get("clip_s"), "sample_rate": protocol.get("sample_rate"),
            "segmentation": protocol.get("segmentation"), "embedding": meta.get("embedding"),
            "embedding config": meta.get("config"), "weights sha256": meta.get("weight_sha256")}


def check_comparable(a_name: str, a_meta: dict, b_name: str, b_meta: dict) -> None:
    """Raise :class:`ProtocolMismatchError` naming both sets and each differing field (clip duration,
    sample rate, segmentation, embedding, its config, its weights) with both values."""
    a, b = comparable_fields(a_meta), comparable_fields(b_meta)
    differ = [f"{key}: {a[key]!r} ({a_name}) vs {b[key]!r} ({b_name})" for key in a if a[key] != b[key]]
    if differ:
        raise ProtocolMismatchError(f"{a_name!r} and {b_name!r} were not made by the same evaluation protocol; "
                                    + "; ".join(differ))
