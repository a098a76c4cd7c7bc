"""The fast embedding path (cache read first, decoding in threads, screened audio reused, many clips per
``embed_batch`` call) gives the embeddings of the plain one-clip-at-a-time path; MusiCNN's reordered
front end is bit-exact; the protocol names its resampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from musicdiff.data.audio import SOXR_HQ, load_audio, resample
from musicdiff.evaluation.protocol import EvaluationProtocol
from musicdiff.evaluation.engine import embed_files, screen_files
from musicdiff.evaluation.embeddings.registry import LogMelStats, cache_key

PROTOCOL = EvaluationProtocol(3.0, 22050)
TOLERANCE = 1e-4  # max abs difference; batched convolutions may round differently


@pytest.fixture(scope="module")
def musicnn():
    from musicdiff.evaluation.embeddings import musicnn as mn

    try:
        prefix = mn.fetch_musicnn_checkpoint()
    except mn.MusicnnWeightsUnavailable as exc:  # offline: skip; a SHA mismatch still fails
        pytest.skip(f"MSD_musicnn checkpoint unavailable: {exc}")
    return mn.MusicnnEmbedding(checkpoint=prefix)


def one_at_a_time(embedding, files, protocol):
    """The reference: each file decoded, cut, each clip resampled and embedded alone."""
    out = []
    for path in files:
        for clip in protocol.clips(load_audio(path, protocol.sample_rate, resampling=protocol.resampling), path):
            out.append(embedding.embed(resample(clip, protocol.sample_rate, embedding.sample_rate, SOXR_HQ)))
    return out


def test_batched_pooled_musicnn_equals_one_clip_at_a_time(musicnn, fadtk_clips, tmp_path):
    files = fadtk_clips[:3]
    expected = one_at_a_time(musicnn, files, PROTOCOL)
    timings = {}
    fast = embed_files(musicnn, files, PROTOCOL, "fast", cache_dir=tmp_path, progress=False, timings=timings)
    assert len(fast.clips) == len(expected) == timings["computed"] == 9
    assert max(float(np.abs(a - b).max()) for a, b in zip(fast.clips, expected)) <= TOLERANCE
    assert timings["embed_s"] > 0 and "decode_s" in timings
    # screened audio is reused (nothing decoded again), and so are cached embeddings
    screened = screen_files(files, PROTOCOL, "fast")
    assert set(screened.audio) == {0, 1, 2}
    again_t = {}
    again = embed_files(musicnn, files, PROTOCOL, "fast", cache_dir=tmp_path, progress=False, screened=screened,
                        timings=again_t)
    assert again_t["computed"] == 0 and all(np.array_equal(a, b) for a, b in zip(again.clips, fast.clips))
    # whole files, as fadtk sees them (the throughput benchmark's mode)
    whole = embed_files(musicnn, files, None, "whole", progress=False)
    for path, frames in zip(files, whole.clips):
        alone = musicnn.embed(load_audio(path, musicnn.sample_rate, resampling=SOXR_HQ))
        assert frames.shape == alone.shape and float(np.abs(frames - alone).max()) <= TOLERANCE


def test_kept_audio_budget_and_files_beyond_it_are_decoded_again(fadtk_clips, tmp_path):
    embedding = LogMelStats()
    files = fadtk_clips[:3]
    screened = screen_files(files, PROTOCOL, "budget", keep_samples=int(10.5 * 22050))
    assert set(screened.audio) == {0}  # one 10 s file fits
    fast = embed_files(embedding, files, PROTOCOL, "budget", screened=screened, progress=False)
    expected = one_at_a_time(embedding, files, PROTOCOL)
    assert all(np.array_equal(a, b) for a, b in zip(fast.clips, expected))
    # a subset of clips computes only those, in file order
    part = embed_files(embedding, files, PROTOCOL, "part", max_clips=4, seed=2, screened=screened, progress=False)
    assert len(part.clips) == 4 and [fast.names.index(n) for n in part.names] == sorted(
        fast.names.index(n) for n in part.names)


def test_reordered_front_end_is_bit_exact(musicnn, fadtk_clips):
    from musicdiff.evaluation.embeddings.musicnn_network import _same_pad

    m = musicnn.model
    x = musicnn.patches(load_audio(fadtk_clips[0], 16000, resampling=SOXR_HQ))
    with torch.inference_mode():
        h = m.bn_input(x.unsqueeze(1))
        hp = F.pad(h, (0, 0, 3, 3))
        old = [bn(F.relu(conv(hp))).amax(dim=3) for conv, bn in zip(m.timbral, m.timbral_bn)]
        old += [bn(F.relu(conv(F.pad(h, (0, 0, *_same_pad(k)))))).amax(dim=3)
                for conv, bn, k in zip(m.temporal, m.temporal_bn, m.TEMPORAL_KERNELS)]
        new = m(x)
    assert torch.equal(torch.cat(old, 1), torch.cat([new["timbral"], new["temporal"]], 1))


def test_the_resampler_is_part_of_the_protocol_and_of_cache_keys():
    spec = PROTOCOL.to_dict()
    assert spec["resampler"].startswith("soxr HQ (python-soxr ") and spec["version"] == 2
    other = dict(spec, resampler="torchaudio sinc_interp_hann lowpass_filter_width=6 rolloff=0.99 beta=None")
    assert cache_key("a" * 64, LogMelStats(), spec, 0) != cache_key("a" * 64, LogMelStats(), other, 0)


def test_switching_the_resampler_moves_musicnn_embeddings_of_real_music_little(musicnn, fadtk_clips):
    """Protocol v2 (soxr HQ) against v1 (torchaudio sinc) on fadtk's 48 kHz music, 48k->16k: measured on
    all 23 clips, mean |diff| 0.019 (embedding std 0.58), max 0.32, cosine >= 0.982; FAD MusicGen vs
    Mubert 47.3 -> 49.0. Bounds here leave room for other clips."""
    from musicdiff.data.audio import RESAMPLING

    for path in fadtk_clips[:3]:
        a = musicnn.embed(load_audio(path, 16000, resampling=RESAMPLING))
        b = musicnn.embed(load_audio(path, 16000, resampling=SOXR_HQ))
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert float(np.abs(a - b).mean()) < 0.05 and float(cos.min()) > 0.97
