"""The spaces in which :mod:`musicdiff.evaluation.replication` looks for a generated clip's nearest
training clip: a similarity (higher = closer) between every query clip and every reference clip.

* :class:`EmbeddingSpace`: cosine similarity of per-clip mean embeddings (``1 - cosine distance``).
  Reads timbre and style at the embedding's resolution; a near-copy and a clip of the same style can
  be almost equally close, so this space is the coarse one (with the network-free ``logmel-stats``
  embedding, held-out real clips' nearest training clips lie at cosine 0.96-0.99 and exact copies at
  1). ``centred=True`` subtracts the training set's mean embedding first, which spreads the
  similarities of learnt embeddings that share a large common offset, but then a clip far from all
  music (white noise) points the way of the most extreme training clip and comes out *close* to it
  (cosine 0.92 against a held-out maximum of 0.92 with ``logmel-stats``): not the default.
* :class:`MelSpace`: the log-mel spectrogram of each clip (librosa, Slaney mel, dB relative to the
  clip's own maximum with an 80 dB floor: a gain changes nothing), standardised per clip (mean 0,
  standard deviation 1 over its time-frequency cells), compared by the largest Pearson correlation of
  the overlapping frames over time lags of up to ``max_lag`` frames either way (a copy shifted by a
  fraction of a second still correlates). All lags of all pairs come from FFT cross-correlations:
  the sum over mel bands of ``conj(A(f)) B(f)`` is one complex matrix product per frequency, and the
  overlap's means and energies come from the same transform of per-frame sums and of the frame masks,
  so clips of different lengths compare over their common frames. Lags count from aligned starts: a
  copy of material from the middle of a long training track is found only if the training audio is cut
  into clips of the evaluation length with a hop of at most ``2 max_lag`` frames. Measured: 300 clips
  of 3 s, features 3.5 s and all 300 x 300 similarities 2.5 s on one core. On the fadtk clips (2.5 s),
  clips of different files reached at most 0.55, other segments of the same (often loop-based) file
  up to 0.93, a copy 0.25 s late 0.97, with 20 dB SNR noise 0.96, one semitone higher 0.74.

A space has ``name``, ``sample_rate`` (Hz of the waveforms it takes; None for an embedding space given
embeddings), ``features(clips)``, ``take(features, idx)``, ``fitted(training_features)`` (the space
adapted to one training set) and ``similarity(queries, references)`` -> (n_queries, n_references)
float64.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from musicdiff.evaluation.metrics.prdc import clip_means


@dataclass(frozen=True)
class EmbeddingSpace:
    """Cosine similarity of per-clip mean embeddings, optionally ``centred`` on the training mean (set by
    :meth:`fitted`, or given as ``centre``). With ``embed`` (mono float32 (samples,) at ``sample_rate``
    -> (frames, dim)) it takes waveforms, otherwise per-clip embeddings (frames_i, dim) (e.g.
    ``EmbeddedSet.clips``)."""

    embed: Callable | None = None
    sample_rate: int | None = None
    name: str = "embedding"
    centred: bool = False
    centre: np.ndarray | None = None

    def features(self, clips: list) -> np.ndarray:
        """(n, dim) float64 mean embeddings."""
        return clip_means([self.embed(c) for c in clips] if self.embed is not None else clips)

    def take(self, features: np.ndarray, idx) -> np.ndarray:
        """The features of the clips at ``idx``."""
        return features[np.asarray(idx, dtype=np.int64)]

    def fitted(self, training: np.ndarray) -> "EmbeddingSpace":
        """This space, centred on the mean of the training features if ``centred`` and no centre was given."""
        return replace(self, centre=training.mean(axis=0)) if self.centred and self.centre is None else self

    def similarity(self, queries: np.ndarray, references: np.ndarray) -> np.ndarray:
        """Cosine similarity (n_q, n_r) of the centred features; 0 for a clip at the centre."""
        centre = 0.0 if self.centre is None else self.centre
        q, r = queries - centre, references - centre
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
        r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-300)
        return q @ r.T


@dataclass(frozen=True)
class MelFeatures:
    """Standardised log-mels ``x`` (n, frames, mels), zero past each clip's end, and its frame mask (n,
    frames) (1.0 on the clip's frames)."""

    x: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def take(self, idx) -> "MelFeatures":
        return MelFeatures(self.x[idx], self.mask[idx])


@dataclass(frozen=True)
class MelSpace:
    """Largest Pearson correlation of standardised log-mel spectrograms over time lags up to ``max_lag``
    frames (module docstring). Takes mono waveforms at ``sample_rate``; the default 32 frames of 16 ms
    are +-0.51 s."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 64
    max_lag: int = 32
    min_overlap: float = 0.5
    name: str = "mel"

    def log_mel(self, audio: np.ndarray) -> np.ndarray:
        """(frames, mels) log-mel in dB relative to the clip's maximum (floor -80 dB), standardised;
        all zeros for a constant clip (silence)."""
        import librosa

        from musicdiff.evaluation.embeddings.base import check_audio

        power = librosa.feature.melspectrogram(y=check_audio(audio), sr=self.sample_rate, n_fft=self.n_fft,
                                               hop_length=self.hop_length, n_mels=self.n_mels, power=2.0)
        db = librosa.power_to_db(power, ref=np.max, top_db=80.0).T.astype(np.float64)
        db -= db.mean(axis=0)  # each band's mean over time: the clip's spectral envelope
        sd = db.std()
        return db / sd if sd > 1e-9 else np.zeros_like(db)

    def features(self, clips: list) -> MelFeatures:
        """The clips' standardised log-mels, zero-padded to the longest."""
        mels = [self.log_mel(c) for c in clips]
        frames = max(len(m) for m in mels)
        x = np.zeros((len(mels), frames, self.n_mels))
        mask = np.zeros((len(mels), frames))
        for i, m in enumerate(mels):
            x[i, :len(m)], mask[i, :len(m)] = m, 1.0
        return MelFeatures(x, mask)

    def take(self, features: MelFeatures, idx) -> MelFeatures:
        """The features of the clips at ``idx``."""
        return features.take(np.asarray(idx, dtype=np.int64))

    def fitted(self, training: MelFeatures) -> "MelSpace":
        return self

    def similarity(self, queries: MelFeatures, references: MelFeatures, chunk_bytes: int = 2**27) -> np.ndarray:
        """(n_q, n_r): the largest overlap Pearson correlation over lags -max_lag..max_lag (overlaps of at
        least ``min_overlap`` of the shorter clip); 0 where no lag qualifies or a clip is constant."""
        return self.similarity_and_lag(queries, references, chunk_bytes)[0]

    def similarity_and_lag(self, queries: MelFeatures, references: MelFeatures,
                           chunk_bytes: int = 2**27) -> tuple[np.ndarray, np.ndarray]:
        """The similarity (n_q, n_r) and the lag (frames; reference frame t + lag against query frame t)
        that gives it."""
        from scipy import fft

        frames = max(queries.x.shape[1], references.x.shape[1])
        size = fft.next_fast_len(frames + self.max_lag + 1, real=True)
        lags = np.arange(-self.max_lag, self.max_lag + 1)
        spec = [fft.rfft(f, size, axis=1) for f in (queries.x, references.x)]  # (n, F, mels)
        r_mel = np.ascontiguousarray(spec[1].transpose(1, 2, 0))  # (F, mels, n_r)
        per_frame = [(fft.rfft(f.x.sum(2), size), fft.rfft((f.x ** 2).sum(2), size), fft.rfft(f.mask, size))
                     for f in (queries, references)]
        n_q, n_r = len(queries), len(references)
        best, best_lag = np.zeros((n_q, n_r)), np.zeros((n_q, n_r), np.int64)
        step = max(1, int(chunk_bytes // (16 * n_r * spec[0].shape[1] * 4)))
        shorter = np.minimum.outer(queries.mask.sum(1), references.mask.sum(1))
        for s in range(0, n_q, step):
            rows = slice(s, min(s + step, n_q))
            q_mel = np.conj(spec[0][rows]).transpose(1, 0, 2)  # (F, rows, mels)

            def xcorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # a (rows, F), b (n_r, F) -> (rows, n_r, lags)
                return fft.irfft(np.conj(a)[:, None, :] * b[None, :, :], size, axis=2)[:, :, lags % size]

            s_ab = fft.irfft((q_mel @ r_mel).transpose(1, 2, 0), size, axis=2)[:, :, lags % size]
            (qs, qq, qm), (rs, rr, rm) = ((a[rows] for a in per_frame[0]), per_frame[1])
            count = np.rint(xcorr(qm, rm))  # overlapping frames
            s_a, s_aa, s_b, s_bb = xcorr(qs, rm), xcorr(qq, rm), xcorr(qm, rs), xcorr(qm, rr)
            cells = count * self.n_mels
            with np.errstate(invalid="ignore", divide="ignore"):
                cov = s_ab - s_a * s_b / cells
                var = (s_aa - s_a ** 2 / cells) * (s_bb - s_b ** 2 / cells)
                corr = np.where((count >= self.min_overlap * shorter[rows, :, None]) & (var > 1e-12 * cells ** 2),
                                cov / np.sqrt(np.maximum(var, 1e-300)), 0.0)
            at = corr.argmax(axis=2)
            best[rows] = np.take_along_axis(corr, at[..., None], 2)[..., 0]
            best_lag[rows] = lags[at]
        return np.clip(best, -1.0, 1.0), best_lag
