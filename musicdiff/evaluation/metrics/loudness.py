"""Level of generated clips and the noisy-sample filter of the reference study (Table 5.2).

The study ranks generated clips by their "mean decibel value" and removes the noisy / loud ones
before computing FAD again. musicdiff measures two levels per clip:

- **RMS level in dBFS**: ``20 * log10(sqrt(mean(x**2)))`` over the whole clip, samples ``x`` in
  float with full scale 1.0 (a full-scale square wave is 0 dBFS, a full-scale sine -3.01 dBFS);
  computed by :func:`musicdiff.data.audio.rms_dbfs`.
- **Integrated loudness in LUFS** (ITU-R BS.1770-4: K-weighting, 400 ms blocks with 75 % overlap,
  absolute gate at -70 LUFS and relative gate at -10 LU) with ``pyloudnorm``.

Both are floored at :data:`LEVEL_FLOOR_DB` (digital silence is -inf dBFS and a clip below the
absolute gate has no integrated loudness), so the values stay finite in records and tables. A clip
shorter than one 400 ms block has no integrated loudness: its ``lufs`` is NaN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

LEVEL_FLOOR_DB = -120.0
LEVELS = ("rms_dbfs", "lufs")


@dataclass(frozen=True)
class ClipLevel:
    """Levels of one clip: RMS in dBFS, integrated loudness in LUFS, sample peak in dBFS."""

    rms_dbfs: float
    lufs: float
    peak_dbfs: float

    def to_dict(self) -> dict:
        return asdict(self)


def clip_level(audio: np.ndarray, sample_rate: int) -> ClipLevel:
    """RMS level (dBFS), integrated loudness (LUFS) and sample peak (dBFS) of a mono clip.

    ``audio``: (samples,) float, full scale 1.0 (values beyond 1.0 are kept, so an over-loud clip
    reads above 0 dBFS); ``sample_rate`` in Hz. Levels below :data:`LEVEL_FLOOR_DB` are reported as
    the floor; ``lufs`` is NaN for a clip shorter than one 400 ms block (BS.1770-4 cannot measure it).

    Raises ``ValueError`` for an empty clip, one that is not 1-D or one with non-finite samples.
    """
    import pyloudnorm

    from musicdiff.data.audio import rms_dbfs

    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"clip_level expects a mono clip (samples,), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("clip has NaN or infinite samples")
    if x.shape[0] == 0:
        raise ValueError("empty clip")
    peak = float(np.abs(x).max())
    lufs = float("nan")
    if x.shape[0] >= 0.4 * sample_rate:
        with np.errstate(divide="ignore"):
            lufs = float(pyloudnorm.Meter(sample_rate).integrated_loudness(x))
            lufs = max(lufs, LEVEL_FLOOR_DB) if np.isfinite(lufs) else LEVEL_FLOOR_DB
    return ClipLevel(rms_dbfs=max(rms_dbfs(x), LEVEL_FLOOR_DB),
                     lufs=lufs,
                     peak_dbfs=max(20.0 * np.log10(peak), LEVEL_FLOOR_DB) if peak > 0 else LEVEL_FLOOR_DB)


def keep_mask(levels: np.ndarray, max_db: float | None = None, min_db: float | None = None) -> np.ndarray:
    """Which clips the noisy-sample filter keeps: ``min_db <= level <= max_db`` (either bound may be
    None). ``levels`` (clips,) in dB. Raises ``ValueError`` when neither bound is given or
    ``min_db > max_db``."""
    levels = np.asarray(levels, dtype=np.float64)
    if max_db is None and min_db is None:
        raise ValueError("the noisy-sample filter needs max_db, min_db or both")
    if max_db is not None and min_db is not None and min_db > max_db:
        raise ValueError(f"min_db {min_db} is above max_db {max_db}")
    keep = np.ones(levels.shape, dtype=bool)
    if max_db is not None:
        keep &= levels <= max_db
    if min_db is not None:
        keep &= levels >= min_db
    return keep
