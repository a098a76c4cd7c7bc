"""The same network as a musicdiff embedding and as a fadtk ``ModelLoader``, for the throughput
benchmark (``musicdiff.evaluation.bench.compare_throughput``).

VGGish and CLAP are fadtk loaders already (``musicdiff.evaluation.embeddings.vggish`` / ``clap`` subclass them), so
both pipelines share the loaded model object. MusiCNN has no fadtk loader; :class:`FadtkMusicnn`
plugs musicdiff's network into fadtk's ``ModelLoader`` interface (fadtk's documented way to add a
model), so fadtk's pipeline runs it unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
from fadtk.model_loader import ModelLoader


class FadtkMusicnn(ModelLoader):
    """fadtk ``ModelLoader`` around a loaded :class:`musicdiff.evaluation.embeddings.musicnn.MusicnnEmbedding`
    (16 kHz mono in, ``(patches, dim)`` out)."""

    def __init__(self, embedding):
        super().__init__("musicnn", embedding.dim, embedding.sample_rate)
        self.embedding = embedding

    def load_model(self) -> None:  # the embedding is loaded already
        self.model = self.embedding

    def _get_embedding(self, audio: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.embedding.embed(np.asarray(audio, dtype=np.float32)))


def fadtk_pair(name: str, build_musicnn) -> tuple[object, ModelLoader, str]:
    """``(musicdiff embedding, fadtk loader with the same network, "pretrained")`` for ``name``;
    ``build_musicnn()`` returns the MusiCNN embedding (the caller knows where its checkpoint is).

    Raises :class:`musicdiff.weights.registry.MissingWeightsError` when its weights are missing and
    ``KeyError`` for an embedding without a pair.
    """
    if name == "musicnn":
        embedding = build_musicnn()
        loader = FadtkMusicnn(embedding)
        loader.load_model()
        return embedding, loader, "pretrained"
    if name == "vggish":
        from musicdiff.evaluation.embeddings.vggish import VggishEmbedding

        embedding = VggishEmbedding()
        return embedding, embedding.loader, "pretrained"
    if name in ("clap-laion-audio", "clap-laion-music"):
        from musicdiff.evaluation.embeddings.clap import ClapEmbedding

        embedding = ClapEmbedding(name.rsplit("-", 1)[1])
        return embedding, embedding.loader, "pretrained"
    raise KeyError(f"no benchmark pair for {name!r}; known: musicnn, vggish, clap-laion-audio, clap-laion-music")
