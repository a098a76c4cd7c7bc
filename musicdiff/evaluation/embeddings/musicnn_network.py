"""The MSD_musicnn network (Pons & Serra 2019; Pons et al. 2018) in PyTorch, inference only, and the
loading of its TensorFlow-1 checkpoint (:meth:`MusiCNN.from_checkpoint`).

Architecture (see :mod:`musicdiff.evaluation.embeddings.musicnn` for the front end that makes its
input and the embedding built on it): input batch-norm; timbral front end (vertical filters 7x38 and
7x67 over the mel axis, 204 maps each) and temporal front end (1-D filters of 128, 64 and 32 frames,
51 maps each), each conv -> ReLU -> batch-norm -> max over frequency, concatenated to 561 channels;
mid end of three 1-D convs (64 maps, kernel 7, ReLU, batch-norm; the 2nd and 3rd are residual),
densely concatenated to 753 channels; back end of max and mean pooling over time, interleaved per
channel, batch-norm, dense 1506->200 + ReLU, batch-norm (``penultimate``), dense 200->50 (logits) and
a sigmoid (``taggram``). Batch-norm uses TF's epsilon 1e-3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicdiff.evaluation.embeddings.tf_bundle import read_tf_bundle

N_MELS = 96  # the input's mel bands
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default


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
