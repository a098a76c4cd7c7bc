"""Floors: what real music scores by the same evaluation path, alone and through a decoder alone.

A FAD of 68 means nothing until one knows what real music scores under the same protocol. Two kinds
of floor rows sit beside the models:

* **real: held-out**: real clips of held-out tracks (tracks that neither trained a model nor belong
  to the held-out reference set), scored exactly like generated clips;
* **real via <decoder>**: the same real clips sent through a family's decoder alone, without any
  diffusion: encoded to the family's representation and decoded back (Griffin-Lim for mel, DiT and
  text-conditioned mel models; VAE then Griffin-Lim for latent models; the waveform family's decoder
  is the identity, so its floor is the first). No model of the family can score below what its
  decoder does to real music, beyond sampling noise.

Clips are cut at the decoder's own window (the length a model of that representation generates), so
that the round trip sees exactly the kind of window a generated clip comes from; the evaluation
protocol then cuts them like every other set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicdiff.evaluation.protocol import EvaluationProtocol


def window_samples(decoder_folder: Path | None, protocol: EvaluationProtocol) -> int:
    """Samples of one floor clip: the decoder's window (its representation's decoded length), or the
    protocol's clip without a decoder."""
    if decoder_folder is None:
        return protocol.clip_samples
    from musicdiff.generation.representation import Representation

    return Representation.load(decoder_folder).audio_samples


def real_clips(files: list[Path], samples: int, sample_rate: int, max_clips: int | None = None,
               seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Non-overlapping clips of ``samples`` samples (at ``sample_rate`` Hz) from the starts of ``files``
    (each cut like ``EvaluationProtocol.clips``), a seeded subset of at most ``max_clips``: returns
    audio (n, samples) float32 and the clip names ``<file stem>#<k>``.

    Raises ``musicdiff.data.audio.BadAudioError`` naming a file shorter than one clip."""
    from musicdiff.data.audio import load_audio

    cutter = EvaluationProtocol(samples / sample_rate, sample_rate)
    clips, names = [], []
    for path in files:
        for k, clip in enumerate(cutter.clips(load_audio(path, sample_rate), path)):
            clips.append(clip[:samples] if len(clip) >= samples else np.pad(clip, (0, samples - len(clip))))
            names.append(f"{Path(path).stem}#{k}")
    if max_clips is not None and len(clips) > max_clips:
        pick = np.sort(np.random.default_rng(seed).choice(len(clips), size=max_clips, replace=False))
        clips, names = [clips[i] for i in pick], [names[i] for i in pick]
    return np.stack(clips).astype(np.float32), names


def round_trip(audio: np.ndarray, decoder_folder: Path | None, batch_size: int = 64,
               decode: dict | None = None) -> np.ndarray:
    """``audio`` (clips, samples) encoded to the representation of ``decoder_folder`` (a features or
    latents folder with ``representation.json``; for latents its ``vae/``) and decoded back, in batches,
    with the decode-only settings ``decode`` (Griffin-Lim iterations and momentum); the identity for
    ``None``. Returns (clips, decoded samples) float32."""
    if decoder_folder is None:
        return np.asarray(audio, dtype=np.float32)
    import torch

    from musicdiff.generation.representation import Decoder, Encoder, Representation

    representation = Representation.load(decoder_folder)
    decoder = Decoder(representation, decoder_folder, decode)
    encoder = Encoder(representation, decoder)
    out = []
    with torch.no_grad():
        for start in range(0, len(audio), batch_size):
            batch = torch.as_tensor(np.asarray(audio[start:start + batch_size], dtype=np.float32))
            out.append(encoder.decode(encoder(batch)).numpy())
    return np.concatenate(out).astype(np.float32)
