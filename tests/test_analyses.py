"""The study's analyses on real music (the clips fadtk ships): clip levels and the noisy-sample
filter, per-clip outliers, FAD/KAD vs number of samples, and the EMA weights of training checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicdiff.data.audio import load_audio
from musicdiff.evaluation.embeddings.registry import get_embedding
from musicdiff.evaluation.metrics.fad import fad_score
from musicdiff.evaluation.metrics.loudness import LEVEL_FLOOR_DB, clip_level, keep_mask
from musicdiff.evaluation.perclip import clip_scores, leave_one_out_scores, outlier_scores
from musicdiff.evaluation.metrics.sample_size import scores_vs_n

SR = 22050


@pytest.fixture(scope="module")
def music(fadtk_clips) -> list[np.ndarray]:
    return [load_audio(c, SR) for c in fadtk_clips[:4]]


@pytest.fixture(scope="module")
def logmel(fadtk_clips) -> list[np.ndarray]:
    """Per-clip logmel-stats embeddings (19 one-second frames per ten-second clip) of the 23 clips."""
    embedding = get_embedding("logmel-stats")
    return [embedding.embed(load_audio(c, embedding.sample_rate)) for c in fadtk_clips]


def test_levels_follow_gain_in_db(music):
    for clip in music:
        level, louder = clip_level(clip, SR), clip_level(2.0 * clip, SR)
        assert level.rms_dbfs == pytest.approx(10 * np.log10(np.mean(clip.astype(np.float64) ** 2)), abs=1e-9)
        for name in ("rms_dbfs", "lufs", "peak_dbfs"):  # +6.02 dB for twice the amplitude
            assert getattr(louder, name) - getattr(level, name) == pytest.approx(20 * np.log10(2), abs=1e-6)


def test_lufs_of_a_1khz_sine_matches_the_bs1770_calibration():
    # BS.1770-4: a 0 dBFS 1 kHz sine in one channel reads -3.01 LUFS, so amplitude 0.1 reads -23.01.
    t = np.arange(5 * 48000) / 48000
    level = clip_level(0.1 * np.sin(2 * np.pi * 1000 * t), 48000)
    assert level.lufs == pytest.approx(-23.01, abs=0.1)
    assert level.rms_dbfs == pytest.approx(-23.01, abs=0.01)


def test_silence_is_floored_and_bad_clips_are_refused():
    silent = clip_level(np.zeros(SR), SR)
    assert silent.rms_dbfs == silent.lufs == silent.peak_dbfs == LEVEL_FLOOR_DB
    short = clip_level(np.ones(SR // 4) * 0.1, SR)  # 250 ms: no 400 ms loudness block
    assert np.isnan(short.lufs) and short.rms_dbfs == pytest.approx(-20.0)
    with pytest.raises(ValueError, match="empty"):
        clip_level(np.zeros(0), SR)
    with pytest.raises(ValueError, match="NaN"):
        clip_level(np.full(SR, np.nan), SR)
    with pytest.raises(ValueError, match="mono"):
        clip_level(np.zeros((SR, 2)), SR)


def test_filter_removes_the_loud_noisy_clips_and_lowers_fad(music, logmel):
    # Generated set: real clips plus three loud noise bursts; the filter at -12 dBFS drops exactly those.
    rng = np.random.default_rng(0)
    noise = [np.clip(rng.standard_normal(4 * SR) * 0.5, -1, 1) for _ in range(3)]
    clips = [c[: 4 * SR] for c in music] + noise
    levels = np.array([clip_level(c, SR).rms_dbfs for c in clips])
    keep = keep_mask(levels, max_db=-12.0)
    assert keep.tolist() == [True] * len(music) + [False] * 3
    embedding = get_embedding("logmel-stats")
    embedded = [embedding.embed(load_audio_array(c)) for c in clips]
    reference = np.concatenate(logmel[6:])
    original = fad_score(reference, embedded, n_bootstrap=0).fad
    filtered = fad_score(reference, [e for e, k in zip(embedded, keep) if k], n_bootstrap=0).fad
    assert filtered < 0.5 * original
    with pytest.raises(ValueError, match="max_db, min_db"):
        keep_mask(levels)
    assert keep_mask(levels, max_db=-12.0, min_db=-40.0).sum() <= keep.sum()


def load_audio_array(clip: np.ndarray) -> np.ndarray:
    """22.05 kHz samples -> 16 kHz, as load_audio does for files."""
    from musicdiff.data.audio import resample

    return resample(clip.astype(np.float32), SR, 16000)


def test_outlier_z_scores_flag_noise_and_not_real_music(logmel, fadtk_clips):
    reference = logmel[::2]
    rng = np.random.default_rng(0)
    audio = load_audio(fadtk_clips[1], 16000)
    noisy = get_embedding("logmel-stats").embed(audio + 0.3 * rng.standard_normal(len(audio)).astype(np.float32))
    result = outlier_scores(reference, [logmel[1], logmel[3], logmel[5], noisy])
    assert result.z[3] > 5 and (np.abs(result.z[:3]) < 2).all()
    assert result.top(1) == [3] and result.n_ref_clips == len(reference)
    loo = leave_one_out_scores(reference)
    assert len(loo) == len(reference)
    # a clip scored against a reference that contains it is closer than against the rest
    assert (clip_scores(np.concatenate(reference).mean(axis=0), reference) < loo).all()
    with pytest.raises(ValueError, match="at least 3"):
        leave_one_out_scores(reference[:2])


def test_fad_falls_with_n_while_kad_is_unbiased(logmel):
    reference = np.concatenate(logmel[::2])
    clips = [frame[None] for clip in logmel[1::2] for frame in clip]  # 209 one-frame clips
    points = scores_vs_n(reference, clips, [8, 16, 32, 64, 128, len(clips)], repeats=10, n_bootstrap=50)
    fads = [p.fad for p in points]
    assert all(a > b for a, b in zip(fads, fads[1:]))
    full = points[-1]
    assert full.subsets == 1 and full.fad_low < full.fad < full.fad_high
    assert points[0].fad_low > full.fad  # the bias of FAD at 8 clips is larger than its spread
    for point in points:  # KAD's interval at every n holds the full-set KAD
        assert point.kad_low <= full.kad <= point.kad_high
    with pytest.raises(ValueError, match="2.."):
        scores_vs_n(reference, clips, [1, 8])


def test_checkpoint_ema_weights_load_and_differ_by_step(fadtk_clips, tmp_path):
    from musicdiff.features.dataset import mel_dataset
    from musicdiff.features.mel import MelConfig, MelTransform
    from musicdiff.generation.models.mel import build_mel_unet
    from musicdiff.generation.representation import Representation
    from musicdiff.generation.schedulers import build_noise_scheduler
    from musicdiff.generation.trained import TrainedVariant, checkpoint_steps, load_checkpoint_ema
    from musicdiff.generation.training import train_diffusion

    config = MelConfig(n_mels=16)
    mels = mel_dataset(fadtk_clips[:4], MelTransform(config), frames=32, progress=False)
    unet = dict(block_out_channels=[8, 16], down_block_types=["DownBlock2D", "AttnDownBlock2D"],
                up_block_types=["AttnUpBlock2D", "UpBlock2D"], layers_per_block=1, norm_num_groups=4,
                attention_head_dim=4)
    torch.manual_seed(0)
    scheduler = build_noise_scheduler(dict(num_train_timesteps=100, beta_schedule="linear", beta_start=1e-3,
                                           beta_end=0.2, prediction_type="sample", clip_sample=True))
    train_diffusion(build_mel_unet(unet, n_mels=16, frames=32), scheduler, mels,
                    dict(seed=0, batch_size=4, max_steps=6, learning_rate=1e-3, warmup_steps=1, grad_clip=1.0,
                         ema={"decay": 0.999}, checkpoint_steps=[3], mixed_precision="no", log_every=1), tmp_path)
    Representation(kind="mel", frames=32, shape=(1, 16, 32), mel=config.to_dict(), sample_rate=SR).save(tmp_path)
    assert checkpoint_steps(tmp_path) == [3, 6]
    flat = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
    final = flat(TrainedVariant.load("mel", tmp_path).model)
    assert torch.equal(flat(load_checkpoint_ema("mel", tmp_path, 6)), final)
    assert not torch.equal(flat(load_checkpoint_ema("mel", tmp_path, 3)), final)
    audio, result, _ = TrainedVariant.load("mel", tmp_path, step=3).generate_audio(
        {"scheduler": "ddim", "num_inference_steps": 2}, n=2, seed=0, batch_size=2, progress=False)
    assert audio.shape == (2, 31 * 256) and torch.isfinite(audio).all()
    with pytest.raises(FileNotFoundError, match=r"steps present: \[3, 6\]"):
        load_checkpoint_ema("mel", tmp_path, 4)
