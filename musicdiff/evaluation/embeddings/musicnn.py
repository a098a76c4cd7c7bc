"""MusiCNN (MSD_musicnn) audio embedding, re-expressed in PyTorch, no TensorFlow needed.

The network is the "musically motivated" CNN of Pons & Serra (2019), *musicnn: pre-trained
convolutional neural networks for music audio tagging* (ISMIR LBD), whose architecture follows
Pons et al. (2018), *End-to-end learning for music audio tagging at scale* (ISMIR).  The
weights are the ``MSD_musicnn`` TensorFlow-1 checkpoint (trained on the Million Song Dataset,
50 tags, 787,159 trainable parameters) shipped inside the PyPI wheel ``musicnn==0.1.0``.  We use
the wheel only as data: it is downloaded with ``pip download --no-deps``, pinned by SHA-256,
and the checkpoint is read with :func:`musicdiff.evaluation.embeddings.tf_bundle.read_tf_bundle`.

Licence of the weights: the wheel declares the ISC licence; the authors also distribute
converted musicnn models under CC BY-NC-SA.  Users should check which applies to their use.

Embedding-cache keys should include :attr:`MusicnnEmbedding.config` and
:attr:`MusicnnEmbedding.weight_sha256`.

Pipeline (all at 16 kHz):

1. Front end (:func:`log_mel_frontend`): STFT with n_fft 512 (32 ms), hop 256 (16 ms), periodic
   Hann window, centred with zero ("constant") padding of n_fft/2 samples on each side; power
   spectrum; 96 Slaney-scale mel bands between 0 and 8 kHz with Slaney (area) normalisation,
   i.e. librosa's default ``librosa.filters.mel``; compression ``log10(10000 * mel + 1)``
   computed in float32.  (musicnn's own extractor casts the mel spectrogram to float16 first,
   which overflows to inf on loud music; we do not copy that.  The librosa of 2019 that
   computed musicnn's training data padded the STFT by reflection; librosa >= 0.10 and we pad
   with zeros, which changes only the first and last frame of a clip.)
2. Patches of 187 frames (= musicnn's 3 s input: ``floor((3 s * 16000 - 256) / 256) + 1``),
   taken every ``hop_s`` seconds; a clip shorter than one patch is repeat-padded by tiling its
   log-mel frames in time (musicnn's ``pad_short = "repeat-pad"`` training setting).
3. Network (:class:`MusiCNN`, in :mod:`musicdiff.evaluation.embeddings.musicnn_network`): input batch-norm; timbral front end (vertical filters 7x38 and
   7x67 over the mel axis, 204 maps each) and temporal front end (1-D filters of 128, 64 and 32
   frames, 51 maps each), each conv -> ReLU -> batch-norm -> max over frequency, concatenated
   to 561 channels; mid end of three 1-D convs (64 maps, kernel 7, ReLU, batch-norm; the 2nd
   and 3rd are residual), densely concatenated to 753 channels; back end of max and mean pooling
   over time, interleaved per channel (``[max_0, mean_0, max_1, mean_1, ...]``, 1506 values),
   batch-norm, dense 1506->200 + ReLU, batch-norm (= musicnn's ``penultimate``), dense
   200->50 (logits) and a sigmoid (``taggram``).  Batch-norm uses TF's epsilon 1e-3.

Output layer: :class:`MusicnnEmbedding` returns the 200-d ``penultimate`` features by default
(dense 1506->200, ReLU, then batch-norm), the layer musicnn's own extractor exposes under that
name and the one the tag classifier reads, so our features correspond to the published
"musicnn penultimate" features.  The pre-activation of the same dense layer is available as
``layer="dense_pre"``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from musicdiff.data.hashing import sha256_file
from musicdiff.evaluation.embeddings import musicnn_network
from musicdiff.evaluation.embeddings.musicnn_network import N_MELS, MusiCNN
from musicdiff.weights.fetch import MusicnnWeightsUnavailable, fetch_musicnn_checkpoint  # noqa: F401  (re-exported)
from musicdiff.weights.registry import (  # noqa: F401  (re-exported: where the weights come from)
    DATA_FILE,
    MUSICNN_DATA_SHA256,
    MUSICNN_MODEL,
    MUSICNN_WHEEL,
    MUSICNN_WHEEL_FILENAME,
    MUSICNN_WHEEL_SHA256,
)

__all__ = [
    "MUSICNN_WHEEL",
    "MUSICNN_WHEEL_SHA256",
    "MUSICNN_DATA_SHA256",
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "N_MELS",
    "PATCH_FRAMES",
    "MusicnnWeightsUnavailable",
    "fetch_musicnn_checkpoint",
    "slaney_mel_filterbank",
    "log_mel_frontend",
    "MusiCNN",
    "MusicnnEmbedding",
]


SAMPLE_RATE = 16000  # Hz
N_FFT = 512  # samples (32 ms)
HOP_LENGTH = 256  # samples (16 ms)
F_MIN = 0.0  # Hz
F_MAX = 8000.0  # Hz
PATCH_FRAMES = 187  # frames, musicnn's 3 s input



# =========================================================================== front end
def slaney_mel_filterbank(
    sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
    fmin: float = F_MIN, fmax: float = F_MAX,
) -> np.ndarray:
    """Triangular mel filterbank, shape ``(n_mels, n_fft // 2 + 1)``, float32.

    Slaney mel scale and Slaney area normalisation (each filter scaled by 2 / bandwidth in Hz), the
    filters of ``librosa.filters.mel`` with its defaults that musicnn's front end used; built with
    ``torchaudio.functional.melscale_fbanks`` (equal to librosa's to ~1e-7).
    """
    import torchaudio

    return torchaudio.functional.melscale_fbanks(
        n_fft // 2 + 1, fmin, fmax, n_mels, sr, norm="slaney", mel_scale="slaney"
    ).T.contiguous().numpy().astype(np.float32)


_MEL_CACHE: dict[str, torch.Tensor] = {}


def log_mel_frontend(audio: torch.Tensor) -> torch.Tensor:
    """musicnn log-mel front end: ``(samples,)`` float at 16 kHz -> ``(frames, 96)`` float32.

    ``frames = 1 + samples // 256`` (centred STFT).  Each frame is
    ``log10(10000 * mel_power + 1)`` with mel_power = Slaney mel filterbank (0-8 kHz, 96 bands)
    applied to ``|STFT|^2`` (n_fft 512, hop 256, periodic Hann, zero padding of 256 samples at
    both ends).  Matches ``librosa.feature.melspectrogram(y, sr=16000, n_fft=512,
    hop_length=256, n_mels=96)`` with librosa >= 0.10 (whose default ``pad_mode`` is
    "constant"), followed by the float32 log compression.

    Raises ``ValueError`` for input that is not 1-D or is empty.
    """
    if audio.ndim != 1:
        raise ValueError(f"log_mel_frontend expects mono audio of shape (samples,), got {tuple(audio.shape)}")
    if audio.numel() == 0:
        raise ValueError("log_mel_frontend got empty audio")
    audio = audio.to(torch.float32)
    key = str(audio.device)
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = torch.from_numpy(slaney_mel_filterbank()).to(audio.device)
    fb = _MEL_CACHE[key]
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float32, device=audio.device)
    spec = torch.stft(audio, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT, window=window,
                      center=True, pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()  # (freq, frames)
    mel = fb @ power  # (n_mels, frames)
    return torch.log10(10000.0 * mel + 1.0).T.contiguous()


# =========================================================================== embedding
#: Patches per forward pass. Measured on 2 CPU cores (fadtk's 23 ten-second clips, 69 patches, median of
#: 3): 37-39 ms a patch in batches of 2 to 8, 52 ms in batches of 16 or 32, 62 ms in one batch of 69.
#: A patch's first convolutions write about 20 MB of maps (204 maps of 187 x 59 and of 187 x 30, float32),
#: so larger batches leave the caches; 1 patch a call (43 ms) pays the per-call overhead.
PATCH_BATCH = 4


def _seconds_to_frames(seconds: float) -> int:
    # musicnn's conversion (librosa.time_to_frames with n_fft, plus one): 3.0 s -> 187 frames.
    return int(math.floor((seconds * SAMPLE_RATE - N_FFT // 2) / HOP_LENGTH)) + 1


class MusicnnEmbedding:
    """MusiCNN (MSD_musicnn) embedding: mono 16 kHz audio -> ``(n_patches, 200)`` float32.

    Parameters
    ----------
    hop_s:
        Patch hop in seconds, converted to frames as musicnn converts its 3 s input length
        (``floor((hop_s * 16000 - 256) / 256) + 1``), so the default 3.0 gives a hop of 187
        frames: musicnn's non-overlapping default.  Must give at least one frame.
    device:
        torch device for the network and the front end.
    checkpoint:
        Bundle prefix of the MSD_musicnn checkpoint; default :func:`fetch_musicnn_checkpoint`.
    layer:
        ``"penultimate"`` (default; 200-d dense layer after ReLU and batch-norm, musicnn's own
        ``penultimate`` feature) or ``"dense_pre"`` (same layer before the ReLU).

    Attributes
    ----------
    config: every preprocessing knob (for embedding-cache keys).
    weight_sha256: SHA-256 of the checkpoint data shard.
    """

    name = "musicnn"
    sample_rate = SAMPLE_RATE
    window_s = 3.0  # one 187-frame patch, musicnn's input: the unit of independent frames
    code_modules = (musicnn_network,)  # the network's code goes into the cache key (registry.code_sha256)
    dim = 200
    LAYERS = ("penultimate", "dense_pre")

    def __init__(self, hop_s: float = 3.0, device: str | torch.device = "cpu",
                 checkpoint: Path | None = None, *, layer: str = "penultimate"):
        if not (isinstance(hop_s, (int, float)) and math.isfinite(hop_s) and hop_s > 0):
            raise ValueError(f"hop_s must be a positive number of seconds, got {hop_s!r}")
        self.patch_hop = _seconds_to_frames(float(hop_s))
        if self.patch_hop < 1:
            raise ValueError(f"hop_s={hop_s} s is shorter than one STFT hop of the 16 kHz front end")
        if layer not in self.LAYERS:
            raise ValueError(f"layer must be one of {self.LAYERS}, got {layer!r}")
        self.hop_s = float(hop_s)
        self.layer = layer
        self.device = torch.device(device)
        prefix = Path(checkpoint) if checkpoint is not None else fetch_musicnn_checkpoint()
        data_file = prefix / DATA_FILE if prefix.is_dir() else Path(str(prefix) + DATA_FILE)
        if not data_file.is_file():
            raise FileNotFoundError(f"MusiCNN checkpoint data shard not found: {data_file}")
        self.weight_sha256 = sha256_file(data_file)
        self.model = MusiCNN.from_checkpoint(prefix).to(self.device)
        self.config = {
            "model": f"{MUSICNN_WHEEL}/{MUSICNN_MODEL}",
            "sample_rate": SAMPLE_RATE,
            "n_fft": N_FFT,
            "hop_length": HOP_LENGTH,
            "window": "hann_periodic",
            "center": True,
            "pad_mode": "constant",
            "power": 2.0,
            "n_mels": N_MELS,
            "f_min": F_MIN,
            "f_max": F_MAX,
            "mel_scale": "slaney",
            "mel_norm": "slaney",
            "log": "log10(10000*mel+1) float32",
            "patch_frames": PATCH_FRAMES,
            "patch_hop_frames": self.patch_hop,
            "hop_s": self.hop_s,
            "short_clip": "repeat-pad log-mel frames to one patch",
            "tail": "drop frames after the last full patch",
            "layer": layer,
        }

    def patches(self, audio: np.ndarray) -> torch.Tensor:
        """Log-mel patches ``(n_patches, 187, 96)`` float32 for ``audio`` (see :meth:`embed`)."""
        arr = np.asarray(audio)
        if arr.ndim != 1:
            raise ValueError(f"MusicnnEmbedding expects mono audio of shape (samples,), got {arr.shape}")
        if arr.size == 0:
            raise ValueError("MusicnnEmbedding got empty audio (0 samples)")
        if not np.all(np.isfinite(arr)):
            raise ValueError("MusicnnEmbedding got audio containing NaN or infinite samples")
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(self.device)
        mel = log_mel_frontend(x)  # (frames, 96)
        n = mel.shape[0]
        if n < PATCH_FRAMES:
            mel = mel.repeat(math.ceil(PATCH_FRAMES / n), 1)[:PATCH_FRAMES]
            n = PATCH_FRAMES
        starts = range(0, n - PATCH_FRAMES + 1, self.patch_hop)
        return torch.stack([mel[s : s + PATCH_FRAMES] for s in starts])

    def embed(self, audio: np.ndarray, batch_size: int = PATCH_BATCH) -> np.ndarray:
        """Embed mono float audio ``(samples,)`` at 16 kHz -> ``(n_patches, 200)`` float32.

        Patches are 187-frame (about 3 s) windows of the log-mel front end starting every
        ``patch_hop`` frames; frames after the last full patch are dropped (as musicnn does).
        A clip shorter than one patch is repeat-padded (its log-mel frames tiled in time) and
        gives one row.  Patches go through the network in batches of ``batch_size``
        (:data:`PATCH_BATCH`, chosen by measurement).

        Raises ``ValueError`` for audio that is not 1-D, is empty, or contains NaN/inf.
        """
        with torch.inference_mode():
            p = self.patches(audio)
            outs = [self.model(p[i : i + batch_size])[self.layer] for i in range(0, p.shape[0], batch_size)]
            return torch.cat(outs).float().cpu().numpy()

    def embed_batch(self, audios: list[np.ndarray], batch_size: int = PATCH_BATCH) -> list[np.ndarray]:
        """Embed several clips at once: ``audios[i]`` mono float ``(samples_i,)`` at 16 kHz ->
        ``[(n_patches_i, 200) float32, ...]``, each equal to ``embed(audios[i])`` up to float rounding
        of the convolutions (the network sees the patches of all clips in batches of ``batch_size``;
        every patch is computed alone, so the clips do not mix).

        Raises ``ValueError`` as :meth:`embed` does, for the first bad clip.
        """
        if not audios:
            return []
        with torch.inference_mode():
            parts = [self.patches(a) for a in audios]
            p = torch.cat(parts)
            outs = [self.model(p[i : i + batch_size])[self.layer] for i in range(0, p.shape[0], batch_size)]
            rows = torch.cat(outs).float().cpu().numpy()
        bounds = np.cumsum([0] + [len(q) for q in parts])
        return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
