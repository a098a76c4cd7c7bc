"""Tests for the PyTorch MusiCNN port and the TF tensor-bundle reader.

The parity fixture ``tests/data/musicnn_tf_reference.npz`` was made once with TensorFlow by
``tests/data/make_musicnn_fixture.py``; TensorFlow is not needed (nor imported) here.  The
checkpoint comes from the real ``musicnn==0.1.0`` wheel via ``fetch_musicnn_checkpoint``
(PyPI download, cached); only if it cannot be obtained are the tests that need it skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from musicdiff.evaluation.embeddings import musicnn as mn
from musicdiff.evaluation.embeddings import musicnn_network
from musicdiff.weights import fetch as checkpoint
from musicdiff.evaluation.embeddings.tf_bundle import read_tf_bundle

FIXTURE = Path(__file__).parent / "data" / "musicnn_tf_reference.npz"
MSD_MUSICNN_PARAMS = 787_159

# Parity tolerances (max abs difference vs TensorFlow 2.21 CPU on the fixture patches).
# Measured: dense_pre 1.5e-5, penultimate 5.7e-6, logits 8.1e-6, taggram 1.0e-6,
# mean_pool 8.2e-6, max_pool 3.4e-4 on values up to 96 (3.6e-6 of the range); front end 2.5e-6.
ATOL = {"dense_pre": 5e-5, "penultimate": 3e-5, "logits": 3e-5, "taggram": 5e-6, "mean_pool": 5e-5}


@pytest.fixture(scope="session")
def musicnn_prefix() -> Path:
    try:
        return mn.fetch_musicnn_checkpoint()
    except mn.MusicnnWeightsUnavailable as exc:  # offline: skip; a SHA mismatch still fails
        pytest.skip(f"MSD_musicnn checkpoint unavailable: {exc}")


@pytest.fixture(scope="session")
def tensors(musicnn_prefix) -> dict[str, np.ndarray]:
    return read_tf_bundle(musicnn_prefix)


@pytest.fixture(scope="session")
def model(musicnn_prefix) -> mn.MusiCNN:
    return mn.MusiCNN.from_checkpoint(musicnn_prefix)


@pytest.fixture(scope="session")
def embedder(musicnn_prefix) -> mn.MusicnnEmbedding:
    return mn.MusicnnEmbedding(checkpoint=musicnn_prefix)


@pytest.fixture(scope="session")
def ref() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


def _fixture_audio(ref, i: int) -> np.ndarray:
    return ref["audio_int16"][i].astype(np.float32) / np.float32(32768.0)


# ----------------------------------------------------------------------------- (a) reader
def test_bundle_has_all_msd_musicnn_tensors(tensors, model):
    weights = {k: v for k, v in tensors.items() if not mn.MusiCNN._is_optimizer_slot(k)}
    trainable = sum(v.size for k, v in weights.items() if not k.endswith(("moving_mean", "moving_variance")))
    assert trainable == MSD_MUSICNN_PARAMS
    assert all(v.dtype == np.float32 for v in weights.values())
    assert tensors["conv2d/kernel"].shape == (7, 38, 1, 204)
    assert tensors["conv2d_1/kernel"].shape == (7, 67, 1, 204)
    assert tensors["conv2d_2/kernel"].shape == (128, 1, 1, 51)
    assert tensors["conv2d_5/kernel"].shape == (7, 561, 1, 64)
    assert tensors["dense/kernel"].shape == (1506, 200)
    assert tensors["dense_1/kernel"].shape == (200, 50)
    assert tensors["batch_normalization_9/moving_variance"].shape == (1506,)
    # every non-optimizer tensor is used by the model, with matching shapes (else it raises)
    assert set(weights) == set(model._tf_mapping())
    np.testing.assert_array_equal(model.dense.weight.numpy(), tensors["dense/kernel"].T)


def test_bundle_data_crc(musicnn_prefix):
    out = read_tf_bundle(musicnn_prefix, names=["dense_1/kernel", "conv2d/kernel"], verify_data_crc=True)
    assert out["dense_1/kernel"].shape == (200, 50)


def test_bundle_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.index"):
        read_tf_bundle(tmp_path / "nope")
    bad = tmp_path / "bad"
    (tmp_path / "bad.index").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="bad.index"):
        read_tf_bundle(bad)


def test_from_checkpoint_rejects_wrong_shapes(tmp_path, musicnn_prefix, monkeypatch):
    real = read_tf_bundle(musicnn_prefix)
    broken = dict(real)
    broken["dense/kernel"] = real["dense/kernel"][:-1]
    del broken["dense_1/bias"]
    broken["extra/kernel"] = np.zeros(3, np.float32)
    monkeypatch.setattr(musicnn_network, "read_tf_bundle", lambda prefix: broken)
    with pytest.raises(ValueError) as exc:
        mn.MusiCNN.from_checkpoint(musicnn_prefix)
    msg = str(exc.value)
    assert "missing dense_1/bias" in msg and "unexpected extra/kernel" in msg
    assert "shape mismatch dense/kernel" in msg


def test_fetch_rejects_bad_sha(tmp_path, monkeypatch):
    folder = tmp_path / "musicnn" / "MSD_musicnn"
    folder.mkdir(parents=True)
    (folder / ".index").write_bytes(b"x")
    (folder / ".data-00000-of-00001").write_bytes(b"not the checkpoint")
    monkeypatch.setenv("MUSICDIFF_WEIGHTS", str(tmp_path))
    with pytest.raises(RuntimeError, match="SHA-256 mismatch"):
        mn.fetch_musicnn_checkpoint(cache_dir=tmp_path / "cache")


def test_fetch_rejects_bad_wheel(tmp_path, monkeypatch):
    import zipfile

    (tmp_path / "musicnn").mkdir()
    with zipfile.ZipFile(tmp_path / "musicnn" / mn.MUSICNN_WHEEL_FILENAME, "w") as zf:
        zf.writestr("musicnn/MSD_musicnn/.index", b"x")
    monkeypatch.setenv("MUSICDIFF_WEIGHTS", str(tmp_path))
    with pytest.raises(RuntimeError, match="SHA-256 mismatch"):
        mn.fetch_musicnn_checkpoint(cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "MSD_musicnn").exists()


def test_fetch_offline_error_says_how_to_fix(tmp_path, monkeypatch):
    def no_network(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        raise OSError("network unreachable")

    monkeypatch.delenv("MUSICDIFF_WEIGHTS", raising=False)
    monkeypatch.setattr(checkpoint.subprocess, "run", no_network)  # the download runs pip
    with pytest.raises(mn.MusicnnWeightsUnavailable) as exc:
        mn.fetch_musicnn_checkpoint(cache_dir=tmp_path / "cache")
    msg = str(exc.value)
    assert "pip download --no-deps musicnn==0.1.0" in msg and "$MUSICDIFF_WEIGHTS/musicnn/" in msg
    assert "network unreachable" in msg


# ----------------------------------------------------------------------------- (b) parity
def test_network_matches_tensorflow(model, ref):
    with torch.inference_mode():
        out = model(torch.from_numpy(ref["patches"]))
    for key, atol in ATOL.items():
        np.testing.assert_allclose(out[key].numpy(), ref[f"tf_{key}"], rtol=0, atol=atol, err_msg=key)
    # max_pool values reach 96 (float32 spacing 7.6e-6 there): compare on that scale
    np.testing.assert_allclose(out["max_pool"].numpy(), ref["tf_max_pool"], rtol=0, atol=5e-4)
    assert out["penultimate"].shape == (6, 200) and out["taggram"].shape == (6, 50)


# ----------------------------------------------------------------------------- (c) front end
def test_frontend_matches_reference(ref):
    for i in range(len(ref["clip_ids"])):
        audio = _fixture_audio(ref, i)
        mel = mn.log_mel_frontend(torch.from_numpy(audio)).numpy()
        assert mel.dtype == np.float32
        assert mel.shape == ref["logmel"][i].shape == (1 + audio.size // 256, 96)
        np.testing.assert_allclose(mel, ref["logmel"][i], rtol=0, atol=2e-5)
    for p, c, s in zip(ref["patches"], ref["patch_clip"], ref["patch_start"]):
        np.testing.assert_array_equal(p, ref["logmel"][c][s : s + mn.PATCH_FRAMES])


def test_slaney_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    expected = librosa.filters.mel(sr=16000, n_fft=512, n_mels=96, fmin=0.0, fmax=8000.0)
    # torchaudio builds the filters in float32 (librosa in float64): 1.2e-7 apart at most, on
    # weights up to 0.032; the front end's parity with the TF fixture (atol 2e-5) is unaffected
    np.testing.assert_allclose(mn.slaney_mel_filterbank(), expected, rtol=0, atol=2e-7)


def test_embed_matches_tf_patch(embedder, ref):
    # the first patch of each fixture clip is exactly embed()'s first row
    for i in range(len(ref["clip_ids"])):
        emb = embedder.embed(_fixture_audio(ref, i))
        assert emb.shape == (1, 200) and emb.dtype == np.float32
        row = np.flatnonzero((ref["patch_clip"] == i) & (ref["patch_start"] == 0))[0]
        np.testing.assert_allclose(emb[0], ref["tf_penultimate"][row], rtol=0, atol=1e-4)


def test_dense_pre_layer_matches_tf(musicnn_prefix, ref):
    emb = mn.MusicnnEmbedding(checkpoint=musicnn_prefix, layer="dense_pre")
    assert emb.config["layer"] == "dense_pre"
    row = np.flatnonzero((ref["patch_clip"] == 1) & (ref["patch_start"] == 0))[0]
    np.testing.assert_allclose(emb.embed(_fixture_audio(ref, 1))[0], ref["tf_dense_pre"][row], atol=2e-4)


# ----------------------------------------------------------------------------- (d) shapes / errors
def test_loud_audio_stays_finite(embedder):
    # musicnn's own extractor overflows float16 on loud input; the float32 front end must not
    rng = np.random.default_rng(1)
    loud = np.clip(rng.standard_normal(48000).astype(np.float32) * 4, -1, 1)
    mel = mn.log_mel_frontend(torch.from_numpy(loud))
    # in float16, 10000 * mel overflows above 65504, i.e. log values above log10(65505) ~ 4.82
    assert torch.isfinite(mel).all() and mel.max() > 4.9
    assert np.isfinite(embedder.embed(loud)).all()


def test_embed_short_clip_repeat_pads(embedder, ref):
    audio = _fixture_audio(ref, 0)[:16000]  # 1 s -> 63 frames, tiled to 187
    emb = embedder.embed(audio)
    assert emb.shape == (1, 200) and emb.dtype == np.float32 and np.isfinite(emb).all()
    mel = mn.log_mel_frontend(torch.from_numpy(audio))
    expected = embedder.model(torch.cat([mel, mel, mel, mel])[None, :187])["penultimate"]
    np.testing.assert_allclose(emb[0], expected[0].numpy(), rtol=0, atol=1e-5)


def test_embed_patch_count_and_hop(musicnn_prefix, ref):
    audio = _fixture_audio(ref, 0)  # 3.5 s = 219 frames
    assert mn.MusicnnEmbedding(checkpoint=musicnn_prefix).embed(audio).shape == (1, 200)
    half = mn.MusicnnEmbedding(hop_s=1.0, checkpoint=musicnn_prefix)
    assert half.patch_hop == 62 and half.config["patch_hop_frames"] == 62
    assert half.embed(audio).shape == (1 + (219 - 187) // 62, 200)


def test_embed_rejects_bad_input(embedder):
    with pytest.raises(ValueError, match="empty"):
        embedder.embed(np.zeros(0, np.float32))
    bad = np.zeros(20000, np.float32)
    bad[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        embedder.embed(bad)
    with pytest.raises(ValueError, match="mono"):
        embedder.embed(np.zeros((2, 20000), np.float32))


def test_embedding_metadata(embedder):
    assert embedder.name == "musicnn" and embedder.sample_rate == 16000 and embedder.dim == 200
    assert embedder.weight_sha256 == mn.MUSICNN_DATA_SHA256
    cfg = embedder.config
    assert cfg["sample_rate"] == 16000 and cfg["n_fft"] == 512 and cfg["hop_length"] == 256
    assert cfg["n_mels"] == 96 and cfg["patch_frames"] == 187 and cfg["patch_hop_frames"] == 187
    assert cfg["layer"] == "penultimate"


# ----------------------------------------------------------------------------- (e) behaviour
def _fadtk_clip(name: str) -> np.ndarray:
    fadtk = pytest.importorskip("fadtk")
    sf = pytest.importorskip("soundfile")
    import torchaudio

    path = Path(fadtk.__file__).parent / "test" / "samples" / name
    if not path.is_file():
        pytest.skip(f"fadtk sample {path} not installed")
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = torch.from_numpy(audio.mean(axis=1))
    return torchaudio.functional.resample(audio, sr, mn.SAMPLE_RATE).numpy()


@pytest.mark.parametrize("name", ["mg-1634.opus", "mlm-1698.opus"])
def test_noise_moves_embedding_more_than_time(embedder, name):
    audio = _fadtk_clip(name)  # 10 s of music
    half = audio.size // 2
    first, second = embedder.embed(audio[:half]).mean(0), embedder.embed(audio[half:]).mean(0)
    rng = np.random.default_rng(0)
    rms = float(np.sqrt(np.mean(audio**2)))
    noisy = audio + rng.standard_normal(audio.size).astype(np.float32) * rms  # 0 dB SNR
    clean_e, noisy_e = embedder.embed(audio).mean(0), embedder.embed(noisy).mean(0)
    d_time = np.linalg.norm(first - second)
    d_noise = np.linalg.norm(clean_e - noisy_e)
    assert d_noise > 1.3 * d_time, (d_noise, d_time)
