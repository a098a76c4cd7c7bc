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
3. Network (:class:`MusiCNN`): input batch-norm; timbral front end (vertical filters 7x38 and
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
import torch.nn.functional as F
from torch import nn

from musicdiff.data.hashing import sha256_file
from musicdiff.evaluation.embeddings.tf_bundle import read_tf_bundle
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
N_MELS = 96
F_MIN = 0.0  # Hz
F_MAX = 8000.0  # Hz
PATCH_FRAMES = 187  # frames, musicnn's 3 s input
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default



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


# =========================================================================== network
class _BatchNorm(nn.Module):
    """Inference-mode batch norm with TF semantics over a given channel axis (eps 1e-3)."""

    def __init__(self, n: int, axis: int):
        super().__init__()
        self.axis = axis
        self.register_buffer("gamma", torch.ones(n))
        self.register_buffer("beta", torch.zeros(n))
        self.register_buffer("moving_mean", torch.zeros(n))
        self.register_buffer("moving_variance", torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gamma * torch.rsqrt(self.moving_variance + BN_EPS)
        shift = self.beta - self.moving_mean * scale
        view = [1] * x.ndim
        view[self.axis] = -1
        return x * scale.view(view) + shift.view(view)


def _relu_bn_max_over_freq(y: torch.Tensor, bn: _BatchNorm) -> torch.Tensor:
    """``bn(relu(y)).amax(dim=3)`` for conv maps ``y`` (B, C, T, F) -> (B, C, T), bit for bit, without
    the element-wise passes over the whole map: ReLU and a per-channel affine ``x * scale + shift`` are
    monotone in ``x`` (and so is their float rounding), so the maximum over F of the result is the
    result at the maximum of ``y`` for a channel with ``scale >= 0`` and at its minimum for one with
    ``scale < 0``. Only the (B, C, T) extremes go through ReLU and batch-norm (about half the network's
    time on a CPU, measured, went to those passes over the maps)."""
    hi, lo = torch.aminmax(y, dim=3)[::-1]
    scale = bn.gamma * torch.rsqrt(bn.moving_variance + BN_EPS)
    return bn(F.relu(torch.where((scale >= 0).view(1, -1, 1), hi, lo)))


def _same_pad(k: int) -> tuple[int, int]:
    # TF "SAME" padding for stride 1: the extra sample of an even kernel goes at the end.
    return (k - 1) // 2, k - 1 - (k - 1) // 2


class MusiCNN(nn.Module):
    """MSD_musicnn network (Pons & Serra 2019; Pons et al. 2018), inference only.

    ``forward(x)`` takes log-mel patches ``(batch, 187, 96)`` (time, mel) and returns a dict:

    * ``"timbral"`` ``(batch, 408, T)`` and ``"temporal"`` ``(batch, 153, T)``: front-end maps;
    * ``"mean_pool"``, ``"max_pool"`` ``(batch, 753)``: temporal pooling of the mid end;
    * ``"dense_pre"`` ``(batch, 200)``: 1506->200 dense layer before its ReLU;
    * ``"penultimate"`` ``(batch, 200)``: that layer after ReLU and batch-norm;
    * ``"logits"`` and ``"taggram"`` (sigmoid) ``(batch, 50)``: the 50 MSD tags.

    Other time lengths than 187 frames are accepted by the layers (musicnn is fully
    convolutional up to the global pooling) but the weights were trained on 187.
    Parameters are stored as buffers (no training here); load them with :meth:`from_checkpoint`.
    """

    TIMBRAL_KERNELS = ((7, 38), (7, 67))  # int(0.4 * 96), int(0.7 * 96)
    TEMPORAL_KERNELS = (128, 64, 32)
    N_TIMBRAL = 204  # int(1.6 * 128)
    N_TEMPORAL = 51  # int(1.6 * 32)
    N_MID = 64
    N_DENSE = 200
    N_TAGS = 50

    def __init__(self) -> None:
        super().__init__()
        self.bn_input = _BatchNorm(1, axis=1)
        self.timbral = nn.ModuleList(nn.Conv2d(1, self.N_TIMBRAL, k) for k in self.TIMBRAL_KERNELS)
        self.timbral_bn = nn.ModuleList(_BatchNorm(self.N_TIMBRAL, 1) for _ in self.TIMBRAL_KERNELS)
        self.temporal = nn.ModuleList(nn.Conv2d(1, self.N_TEMPORAL, (k, 1)) for k in self.TEMPORAL_KERNELS)
        self.temporal_bn = nn.ModuleList(_BatchNorm(self.N_TEMPORAL, 1) for _ in self.TEMPORAL_KERNELS)
        n_front = 2 * self.N_TIMBRAL + 3 * self.N_TEMPORAL  # 561
        self.mid = nn.ModuleList(
            [nn.Conv1d(n_front, self.N_MID, 7), nn.Conv1d(self.N_MID, self.N_MID, 7),
             nn.Conv1d(self.N_MID, self.N_MID, 7)]
        )
        self.mid_bn = nn.ModuleList(_BatchNorm(self.N_MID, 1) for _ in range(3))
        n_pool = 2 * (n_front + 3 * self.N_MID)  # 1506
        self.bn_pool = _BatchNorm(n_pool, 1)
        self.dense = nn.Linear(n_pool, self.N_DENSE)
        self.bn_dense = _BatchNorm(self.N_DENSE, 1)
        self.out = nn.Linear(self.N_DENSE, self.N_TAGS)
        for p in self.parameters():
            p.requires_grad_(False)

    # ---- weights ---------------------------------------------------------------------
    def _tf_mapping(self) -> dict[str, tuple[torch.Tensor, str]]:
        """TF variable name -> (destination tensor, layout conversion)."""
        m: dict[str, tuple[torch.Tensor, str]] = {}

        def bn(tf_name: str, mod: _BatchNorm) -> None:
            for v in ("gamma", "beta", "moving_mean", "moving_variance"):
                m[f"{tf_name}/{v}"] = (getattr(mod, v), "copy")

        def conv(tf_name: str, mod: nn.Module, layout: str) -> None:
            m[f"{tf_name}/kernel"] = (mod.weight, layout)
            m[f"{tf_name}/bias"] = (mod.bias, "copy")

        # Creation order in musicnn's graph gives the TF layer names.
        bn("batch_normalization", self.bn_input)
        for i in range(2):
            conv(f"conv2d_{i}" if i else "conv2d", self.timbral[i], "conv2d")
            bn(f"batch_normalization_{i + 1}", self.timbral_bn[i])
        for i in range(3):
            conv(f"conv2d_{i + 2}", self.temporal[i], "conv2d")
            bn(f"batch_normalization_{i + 3}", self.temporal_bn[i])
        for i in range(3):
            conv(f"conv2d_{i + 5}", self.mid[i], "conv1d")
            bn(f"batch_normalization_{i + 6}", self.mid_bn[i])
        bn("batch_normalization_9", self.bn_pool)
        m["dense/kernel"] = (self.dense.weight, "linear")
        m["dense/bias"] = (self.dense.bias, "copy")
        bn("batch_normalization_10", self.bn_dense)
        m["dense_1/kernel"] = (self.out.weight, "linear")
        m["dense_1/bias"] = (self.out.bias, "copy")
        return m

    @staticmethod
    def _is_optimizer_slot(name: str) -> bool:
        return name.endswith(("/Adam", "/Adam_1")) or name in ("beta1_power", "beta2_power")

    @classmethod
    def from_checkpoint(cls, prefix: str | Path) -> "MusiCNN":
        """Build the network and load the MSD_musicnn TF checkpoint at ``prefix``.

        Conv kernels are converted from TF ``(kh, kw, in, out)`` to PyTorch ``(out, in, kh, kw)``;
        the mid-end kernels ``(7, C, 1, 64)`` become Conv1d weights ``(64, C, 7)``; dense kernels
        ``(in, out)`` are transposed.  Adam slots and ``beta*_power`` are ignored.

        Raises ``ValueError`` naming every missing, unexpected or shape-mismatched tensor.
        """
        model = cls()
        tensors = read_tf_bundle(prefix)
        mapping = model._tf_mapping()
        problems = []
        for name in sorted(mapping):
            if name not in tensors:
                problems.append(f"missing {name}")
        for name in sorted(tensors):
            if name not in mapping and not cls._is_optimizer_slot(name):
                problems.append(f"unexpected {name} {tensors[name].shape}")
        for name, (dest, layout) in mapping.items():
            if name not in tensors:
                continue
            arr = tensors[name]
            if layout == "conv2d":
                arr = arr.transpose(3, 2, 0, 1) if arr.ndim == 4 else arr
            elif layout == "conv1d":
                arr = arr[:, :, 0, :].transpose(2, 1, 0) if arr.ndim == 4 and arr.shape[2] == 1 else arr
            elif layout == "linear":
                arr = arr.T if arr.ndim == 2 else arr
            if tuple(arr.shape) != tuple(dest.shape):
                problems.append(f"shape mismatch {name}: checkpoint {tensors[name].shape} "
                                f"-> {arr.shape}, model expects {tuple(dest.shape)}")
                continue
            with torch.no_grad():
                dest.copy_(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)))
        if problems:
            raise ValueError(f"MSD_musicnn checkpoint {prefix} does not fit MusiCNN: " + "; ".join(problems))
        return model.eval()

    # ---- forward ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 3 or x.shape[2] != N_MELS:
            raise ValueError(f"MusiCNN expects (batch, frames, {N_MELS}), got {tuple(x.shape)}")
        h = self.bn_input(x.unsqueeze(1))  # (B, 1, T, 96)
        # timbral: valid conv over (time, mel) after padding time by 3 on both sides
        hp = F.pad(h, (0, 0, 3, 3))
        timbral = [_relu_bn_max_over_freq(conv(hp), bn) for conv, bn in zip(self.timbral, self.timbral_bn)]
        temporal = [_relu_bn_max_over_freq(conv(F.pad(h, (0, 0, *_same_pad(k)))), bn)
                    for conv, bn, k in zip(self.temporal, self.temporal_bn, self.TEMPORAL_KERNELS)]
        front = torch.cat(timbral + temporal, dim=1)  # (B, 561, T)

        m1 = self.mid_bn[0](F.relu(self.mid[0](F.pad(front, (3, 3)))))
        m2 = self.mid_bn[1](F.relu(self.mid[1](F.pad(m1, (3, 3))))) + m1
        m3 = self.mid_bn[2](F.relu(self.mid[2](F.pad(m2, (3, 3))))) + m2
        feats = torch.cat([front, m1, m2, m3], dim=1)  # (B, 753, T)

        max_pool = feats.amax(dim=2)
        mean_pool = feats.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # interleaved, (B, 1506)
        dense_pre = self.dense(self.bn_pool(pooled))
        penultimate = self.bn_dense(F.relu(dense_pre))
        logits = self.out(penultimate)
        return {
            "timbral": torch.cat(timbral, dim=1),
            "temporal": torch.cat(temporal, dim=1),
            "max_pool": max_pool,
            "mean_pool": mean_pool,
            "dense_pre": dense_pre,
            "penultimate": penultimate,
            "logits": logits,
            "taggram": torch.sigmoid(logits),
        }


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
