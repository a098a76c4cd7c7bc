"""LAION CLAP audio embeddings (Wu, Chen et al. 2023, *Large-scale Contrastive Language-Audio
Pretraining with Feature Fusion and Keyword-to-Caption Augmentation*, ICASSP), as fadtk computes them
(``clap-laion-audio``, ``clap-laion-music``), from verified local files only.

Models (laion_clap's ``CLAP_Module``, no feature fusion):

- ``clap-laion-audio``: HTSAT-tiny audio encoder, checkpoint ``630k-audioset-best.pt`` (LAION-Audio-630K
  plus AudioSet). No SHA-256 is published; the one found is recorded as the weight hash, unverified.
- ``clap-laion-music``: HTSAT-base audio encoder, checkpoint ``music_audioset_epoch_15_esc_90.14.pt``
  (music + AudioSet), verified by SHA-256.

fadtk's :class:`fadtk.model_loader.CLAPLaionModel` downloads the checkpoint in ``__init__`` and may
rewrite it in place (its position-ids patch for laion_clap < 1.1.6). :class:`VerifiedCLAPLaion`
sets name, sample rate and ``model_file`` itself, pointing at the file
:func:`musicdiff.weights.verify.resolve` found and checked, and never rewrites it; it reuses fadtk's
``load_model`` (``CLAP_Module(enable_fusion=False, amodel=HTSAT-tiny|HTSAT-base)`` then
``load_ckpt``) and ``_get_embedding``.

laion_clap needs more than the checkpoint: importing it loads the ``bert-base-uncased``, ``roberta-base``
and ``facebook/bart-base`` tokenizers, and ``CLAP_Module`` builds its text branch from ``roberta-base``,
all from the Hugging Face cache. They are checked before loading (a missing one raises
:class:`musicdiff.weights.registry.MissingWeightsError`), and loading runs with the Hugging Face hub offline, so
nothing waits on the network. The text branch's weights are then overwritten by the checkpoint; the
audio embedding does not depend on them.

Preprocessing and chunking (fadtk's ``CLAPLaionModel._get_embedding``; laion_clap 1.1.7):

1. Audio at 48 kHz mono, quantised through int16: clipped to [-1, 1], multiplied by 32767 and cast to
   int16 (truncation toward zero), divided by 32767.
2. Chunks of 10 s (480000 samples) start every 1 s at 0, 1, 2, ... s, up to the last sample:
   ``ceil(samples / 48000)`` chunks. Chunks running past the end are zero-padded at the end to 10 s,
   so a 10 s clip gives 10 chunks: the first is the whole clip, the k-th holds its last 10 - k
   seconds followed by k seconds of zeros. A clip under 10 s gives ``ceil(seconds)`` padded chunks.
   No minimum length.
3. Each chunk separately (batch of one) through laion_clap: STFT power spectrogram (1024-sample Hann
   window, hop 480, centred with reflection padding), 64 Slaney mel bands 50-14000 Hz, ``10 log10``
   (floor 1e-10, no top-dB clip), batch norm, resized bicubically to HTSAT's 256 x 256 input; HTSAT,
   then the audio projection MLP to 512-d, L2-normalised (every row has unit norm).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from fadtk.model_loader import CLAPLaionModel, ModelLoader

from musicdiff.evaluation.embeddings.base import check_audio
from musicdiff.weights.verify import ResolvedWeights, hf_hub_cache, resolve

SAMPLE_RATE = 48000  # Hz
DIM = 512
KINDS = {"audio": "HTSAT-tiny", "music": "HTSAT-base"}


@contextlib.contextmanager
def hf_offline():
    """Inside the block the Hugging Face hub and transformers read only their local cache.

    Sets ``HF_HUB_OFFLINE=1`` for modules imported inside the block and, because huggingface_hub and
    transformers read that variable once at import, also their module-level flags; all are restored
    on exit.
    """
    import huggingface_hub.constants as hub_constants
    import transformers.utils.hub as tf_hub

    saved_env = os.environ.get("HF_HUB_OFFLINE")
    saved = (hub_constants.HF_HUB_OFFLINE, getattr(tf_hub, "_is_offline_mode", None))
    os.environ["HF_HUB_OFFLINE"] = "1"
    hub_constants.HF_HUB_OFFLINE = True
    if saved[1] is not None:
        tf_hub._is_offline_mode = True
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env
        hub_constants.HF_HUB_OFFLINE = saved[0]
        if saved[1] is not None:
            tf_hub._is_offline_mode = saved[1]


class VerifiedCLAPLaion(CLAPLaionModel):
    """fadtk's CLAP loader for ``kind`` ('audio' | 'music') with ``model_file`` = ``checkpoint``.

    Skips ``CLAPLaionModel.__init__`` (which downloads and may patch the checkpoint); sets the fields
    it would set. ``load_model`` is fadtk's, run offline with laion_clap's per-parameter printout
    silenced.
    """

    def __init__(self, kind: str, checkpoint: str | Path, device: str | torch.device = "cpu"):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        ModelLoader.__init__(self, f"clap-laion-{kind}", DIM, SAMPLE_RATE)
        self.type = kind
        self.model_file = Path(checkpoint)
        self.device = torch.device(device)

    def load_model(self) -> None:
        """fadtk's ``load_model``, offline. Raises ``RuntimeError`` when laion_clap cannot read its Hugging
        Face files from the cache (e.g. an incomplete copy) or the checkpoint does not fit the model."""
        try:
            with hf_offline(), contextlib.redirect_stdout(io.StringIO()):
                super().load_model()
        except (OSError, TypeError, ValueError, KeyError, RuntimeError) as error:
            raise RuntimeError(f"{self.name}: laion_clap could not build the model offline from the Hugging Face "
                               f"cache ({hf_hub_cache()}) and {self.model_file}: {type(error).__name__}: {error}") from error
        self.model.eval()


class ClapEmbedding:
    """LAION CLAP audio embedding: mono float audio ``(samples,)`` at 48 kHz -> ``(chunks, 512)`` float32.

    Parameters
    ----------
    kind:
        ``"audio"`` (``clap-laion-audio``, HTSAT-tiny) or ``"music"`` (``clap-laion-music``, HTSAT-base).
    device:
        torch device for the network.
    weights:
        What :func:`musicdiff.weights.verify.resolve` returns for this embedding (default: resolved now).

    Attributes
    ----------
    config: every preprocessing knob (for embedding-cache keys).
    weight_sha256: SHA-256 of the checkpoint file.
    weights_verified: whether the checkpoint matched a published SHA-256 (False for ``630k-audioset-best.pt``,
        for which none is published; a warning says so when the embedding is built).

    Raises :class:`musicdiff.weights.registry.MissingWeightsError` when the checkpoint or one of the Hugging Face
    repositories laion_clap loads is missing, :class:`musicdiff.weights.registry.WeightsMismatchError` when the
    checkpoint found is not the registered file, ``ValueError`` for an unknown ``kind``.
    """

    sample_rate = SAMPLE_RATE
    window_s = 10.0  # one chunk: the unit of independent frames (chunks every 1 s overlap)
    dim = DIM

    def __init__(self, kind: str = "music", device: str | torch.device = "cpu", *,
                 weights: ResolvedWeights | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        name = f"clap-laion-{kind}"
        weights = weights if weights is not None else resolve(name)
        if not weights.verified:
            warnings.warn(f"{name}: {weights.checkpoint} has no published SHA-256 to check against; using it "
                          f"unverified, recorded as SHA-256 {weights.weight_sha256}", stacklevel=2)
        loader = VerifiedCLAPLaion(kind, weights.checkpoint, device)
        loader.load_model()
        self._setup(kind, loader, weights.weight_sha256, weights.verified)

    @classmethod
    def from_module(cls, kind: str, module: torch.nn.Module, weight_sha256: str,
                    device: str | torch.device = "cpu") -> "ClapEmbedding":
        """An embedding around a ``laion_clap.CLAP_Module`` built elsewhere (tests use one with random
        weights). ``weight_sha256`` must identify its weights: it keys the embedding cache."""
        self = cls.__new__(cls)
        loader = VerifiedCLAPLaion(kind, Path("<in-memory>"), device)
        loader.model = module.to(loader.device).eval()
        self._setup(kind, loader, weight_sha256, False)
        return self

    def _setup(self, kind: str, loader: VerifiedCLAPLaion, weight_sha256: str, verified: bool) -> None:
        self.kind, self.name, self.loader = kind, f"clap-laion-{kind}", loader
        self.weight_sha256, self.weights_verified = weight_sha256, verified
        self.config = {
            "model": f"laion_clap CLAP_Module {KINDS[kind]} enable_fusion=False via fadtk CLAPLaionModel",
            "laion_clap": importlib.metadata.version("laion_clap"),
            "fadtk": importlib.metadata.version("fadtk"),
            "sample_rate": SAMPLE_RATE,
            "channels": "mono",
            "quantisation": "int16 round trip: clip [-1,1], *32767 truncated to int16, /32767",
            "chunk_s": 10.0,
            "chunk_hop_s": 1.0,
            "chunks": "one starting every 1 s up to the last sample: ceil(samples/48000)",
            "tail": "chunks past the end zero-padded at the end to 10 s",
            "min_length_s": None,
            "n_fft": 1024,
            "stft_hop_samples": 480,
            "stft_window": "hann",
            "stft_center": True,
            "stft_pad_mode": "reflect",
            "spectrum": "power",
            "n_mels": 64,
            "f_min": 50.0,
            "f_max": 14000.0,
            "mel_scale": "slaney",
            "log": "10*log10(max(mel, 1e-10)), no top_db",
            "output": "audio projection, L2-normalised",
        }

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """Embed mono float audio ``(samples,)`` at 48 kHz -> ``(ceil(samples / 48000), 512)`` float32,
        unit-norm rows (see the module docstring: 10 s chunks every 1 s, tails zero-padded).

        Raises ``ValueError`` for audio that is not 1-D, is empty, or contains NaN/inf.
        """
        audio = check_audio(audio)
        with torch.no_grad():
            out = self.loader._get_embedding(audio)
        return out.detach().cpu().numpy().astype(np.float32)
