"""VGGish audio embedding (Hershey et al. 2017, *CNN Architectures for Large-Scale Audio
Classification*, ICASSP), as fadtk computes it (Gui et al. 2024, *Adapting Frechet Audio Distance for
Generative Music Evaluation*, ICASSP), from verified local files only.

The model is the torch-hub port ``harritaylor/torchvggish`` (weights converted from Google's
TensorFlow AudioSet VGGish; Apache-2.0). fadtk's :class:`fadtk.model_loader.VGGishModel` loads it with
``torch.hub.load('harritaylor/torchvggish', 'vggish')``, which asks GitHub for the repository and
downloads both checkpoints. :class:`LocalHubVGGish` overrides only ``load_model``: it loads the hub
code from a local folder (``torch.hub.load(folder, 'vggish', source='local', pretrained=False,
postprocess=False)``, no network) and the checkpoint from the file :func:`musicdiff.weights.verify.resolve`
found and checked; then it applies fadtk's defaults unchanged (``use_pca=False``: no PCA/whitening and
no 8-bit quantisation; ``use_activation=False``: the final ReLU is removed, so the output is the
pre-activation of the last 4096->128 linear layer). Embedding goes through fadtk's ``_get_embedding``
(``model.forward(audio, 16000)``).

Preprocessing (torchvggish's ``vggish_input.waveform_to_examples`` and ``mel_features``, the same
functions as Google's reference, read in the PyPI port ``torchvggish==0.2``):

1. Audio at 16 kHz mono (our decoder resamples; VGGish would resample any other rate with resampy).
   Clips shorter than 1 s are zero-padded at the end to 1 s, as fadtk's ``enforce_min_len`` does.
2. STFT magnitude: 400-sample (25 ms) periodic-Hann frames every 160 samples (10 ms), FFT size 512,
   no centring or padding: ``1 + (samples - 400) // 160`` frames, a partial last frame is dropped.
3. 64 mel bands, HTK mel scale (``1127 ln(1 + f/700)``), triangles between 125 and 7500 Hz applied to
   the magnitude (not power) spectrum, no area normalisation; then ``ln(mel + 0.01)``.
4. Examples of 96 frames (0.96 s) every 96 frames, without overlap; frames after the last complete
   example are dropped. A clip of ``s`` seconds gives ``1 + (1 + (16000 s - 400) // 160 - 96) // 96``
   examples (10 for 10 s; 1 for 1 s).
5. VGG (4 conv blocks, 3 fully connected layers), one 128-d row per example.

Outputs are comparable with fadtk's ``vggish`` embeddings, not with the PCA-quantised AudioSet release.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from fadtk.model_loader import VGGishModel
from torch import nn

from musicdiff.evaluation.embeddings.base import check_audio
from musicdiff.weights.verify import ResolvedWeights, resolve

SAMPLE_RATE = 16000  # Hz
DIM = 128


def _forget_other_torchvggish(folder: Path) -> None:
    """Drop imported ``torchvggish`` modules that do not come from ``folder``.

    The hub code imports the package ``torchvggish`` from its own folder; a ``torchvggish`` imported
    earlier from elsewhere (the PyPI port, or another hub folder) would otherwise be reused by Python.
    """
    root = str(Path(folder).resolve())
    for name in [n for n in sys.modules if n == "torchvggish" or n.startswith("torchvggish.")]:
        origin = getattr(sys.modules[name], "__file__", None) or ""
        if not str(Path(origin).resolve()).startswith(root + "/"):
            del sys.modules[name]


class LocalHubVGGish(VGGishModel):
    """fadtk's VGGish loader, loading the hub code from ``hub_dir`` and the weights from ``checkpoint``.

    ``hub_dir`` is a checkout of ``harritaylor/torchvggish`` (``hubconf.py`` with ``vggish(**kwargs)``
    building ``VGGish(urls, device=None, pretrained=True, preprocess=True, postprocess=True)``).
    ``checkpoint`` is a state dict of that network (``vggish-10086976.pth``), loaded strictly.
    """

    def __init__(self, hub_dir: str | Path, checkpoint: str | Path, device: str | torch.device = "cpu"):
        super().__init__(use_pca=False, use_activation=False)
        self.hub_dir, self.checkpoint = Path(hub_dir), Path(checkpoint)
        self.device = torch.device(device)

    def load_model(self) -> None:
        """Build the network from the local hub code and load the checkpoint; never touches the network.

        Raises ``RuntimeError`` when the hub code does not take the keyword arguments of
        ``harritaylor/torchvggish``'s VGGish, or when the checkpoint does not fit the network.
        """
        _forget_other_torchvggish(self.hub_dir)
        try:
            model = torch.hub.load(str(self.hub_dir), "vggish", source="local", pretrained=False,
                                   postprocess=False, device=self.device)
        except TypeError as error:
            raise RuntimeError(f"{self.hub_dir}/hubconf.py: vggish() does not take pretrained/postprocess/device "
                               f"as harritaylor/torchvggish's does ({error})") from error
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise RuntimeError(f"{self.checkpoint} does not fit the VGGish network of {self.hub_dir}: {error}") from error
        if not self.use_pca:  # fadtk's defaults, as in VGGishModel.load_model
            model.postprocess = False
        if not self.use_activation:
            layers = list(model.embeddings.children())
            if not isinstance(layers[-1], nn.ReLU):
                raise RuntimeError(f"{self.hub_dir}: the VGGish embedding head does not end with a ReLU")
            model.embeddings = nn.Sequential(*layers[:-1])
        model.eval()
        self.model = model.to(self.device)


class VggishEmbedding:
    """VGGish embedding: mono float audio ``(samples,)`` at 16 kHz -> ``(examples, 128)`` float32.

    Parameters
    ----------
    device:
        torch device for the network.
    weights:
        What :func:`musicdiff.weights.verify.resolve` returns for ``"vggish"`` (default: resolved now): the
        checkpoint (entry ``vggish``) and the hub code folder (entry ``vggish-hub``).

    Attributes
    ----------
    config: every preprocessing knob (for embedding-cache keys), including the SHA-256 of the hub code.
    weight_sha256: SHA-256 of the checkpoint file.
    weights_verified: whether the checkpoint passed a published check (SHA-256 prefix and size).

    Raises :class:`musicdiff.weights.registry.MissingWeightsError` when the checkpoint or the hub code is in
    none of the places searched, :class:`musicdiff.weights.registry.WeightsMismatchError` when a copy found is
    not the registered file.
    """

    name = "vggish"
    sample_rate = SAMPLE_RATE
    window_s = 0.96  # one example: the unit of independent frames (musicdiff.evaluation.protocol)
    dim = DIM

    def __init__(self, device: str | torch.device = "cpu", *, weights: ResolvedWeights | None = None):
        weights = weights if weights is not None else resolve("vggish")
        self.loader = LocalHubVGGish(weights.path("vggish-hub"), weights.checkpoint, device)
        self.loader.load_model()
        self.weight_sha256 = weights.weight_sha256
        self.weights_verified = weights.verified
        self.config = {
            "model": "harritaylor/torchvggish VGGish via fadtk VGGishModel",
            "hub_code_sha256": weights.found["vggish-hub"].sha256,
            "sample_rate": SAMPLE_RATE,
            "channels": "mono",
            "min_length_s": 1.0,
            "short_clip": "zero-pad at the end to 1 s (fadtk enforce_min_len)",
            "stft_window": "hann_periodic",
            "stft_window_samples": 400,
            "stft_hop_samples": 160,
            "n_fft": 512,
            "stft_center": False,
            "spectrum": "magnitude",
            "n_mels": 64,
            "f_min": 125.0,
            "f_max": 7500.0,
            "mel_scale": "htk",
            "mel_norm": None,
            "log": "ln(mel + 0.01)",
            "example_frames": 96,
            "example_hop_frames": 96,
            "example_s": 0.96,
            "tail": "drop frames after the last complete 96-frame example (vggish_input)",
            "pca": False,
            "layer": "last linear layer 4096->128 before its ReLU (fadtk use_activation=False)",
        }

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """Embed mono float audio ``(samples,)`` at 16 kHz -> ``(examples, 128)`` float32.

        One row per 0.96 s example (see the module docstring for the count); a clip under 1 s is
        zero-padded to 1 s first and gives one row. Raises ``ValueError`` for audio that is not 1-D,
        is empty, or contains NaN/inf.
        """
        audio = self.loader.enforce_min_len(check_audio(audio))
        with torch.no_grad():
            out = self.loader._get_embedding(audio)
        return out.detach().cpu().numpy().astype(np.float32).reshape(-1, DIM)
