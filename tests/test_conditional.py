"""The text-conditioned mel variant on real music (fadtk's clips) and the real MiniLM encoder:
captioned training tensors from prepared sets, the conditional UNet, classifier-free guidance
training (the caption-drop draw and its independence from the unconditional draws)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from musicdiff.features.captions import (
    TextFeatures,
    caption_of,
    captioned_clips,
    text_mel_dataset,
)
from musicdiff.features.dataset import mel_dataset
from musicdiff.features.mel import MelConfig, MelTransform
from musicdiff.generation.models.registry import build_denoiser, count_parameters, load_denoiser
from musicdiff.generation.schedulers import build_noise_scheduler
from musicdiff.generation.models.mel_text import MINILM_SHA256, load_text_encoder, text_conditioning
from musicdiff.generation.training import (
    TextConditioning,
    draw_batch,
    draw_conditioned_batch,
    train_diffusion,
)

TINY = {"block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1, "norm_num_groups": 4,
        "attention_head_dim": 4}
CPU = {"block_out_channels": [16, 32, 64, 64],
       "down_block_types": ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
       "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
       "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 8}
SCHEDULE = {"num_train_timesteps": 100, "beta_schedule": "linear", "beta_start": 1e-3, "beta_end": 0.2,
            "prediction_type": "sample", "clip_sample": True}
CAPTIONS = {"pkg-strings": "orchestral strings", "pkg-brass": "brass fanfare", "ambient": "calm ambient music"}
LABELS = {"orchestral": "orch/train", "ambient": "amb/ref"}


@pytest.fixture(scope="module")
def prepared(fadtk_clips, tmp_path_factory):
    """Two prepared sets in the layout of the prepare stage: ``orch`` (4 train clips from two packages,
    one held-out clip) and ``amb`` (3 ref clips of a local folder, package ``local``)."""
    root = tmp_path_factory.mktemp("prepared")
    rows = {"orch": [("train", "pkg-strings"), ("train", "pkg-strings"), ("train", "pkg-brass"),
                     ("train", "pkg-brass"), ("heldout", "pkg-brass")],
            "amb": [("ref", "local")] * 3}
    clips = iter(fadtk_clips)
    for set_name, entries in rows.items():
        records = []
        for i, (split, package) in enumerate(entries):
            (root / set_name / split).mkdir(parents=True, exist_ok=True)
            clip = f"{split}/clip{i}.opus"
            shutil.copy(next(clips), root / set_name / clip)
            records.append({"clip": clip, "sha256": "", "split": split, "package": package})
        pd.DataFrame(records).to_csv(root / set_name / "manifest.csv", index=False)
    return root


@pytest.fixture(scope="module")
def transform():
    return MelTransform(MelConfig(n_mels=16))


@pytest.fixture(scope="module")
def features(prepared, transform):
    return text_mel_dataset(captioned_clips(prepared, LABELS, CAPTIONS), transform, frames=32, crops_per_clip=2,
                            progress=False)


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm", max_tokens=8)


# ----------------------------------------------------------------------------- captions and the tensor
def test_clips_take_their_package_caption_or_else_their_label_caption(prepared):
    clips = captioned_clips(prepared, LABELS, CAPTIONS)
    assert [c.label for c in clips] == ["ambient"] * 3 + ["orchestral"] * 4  # labels sorted, held-out clip left out
    assert [c.caption for c in clips] == ["calm ambient music"] * 3 + ["orchestral strings"] * 2 + ["brass fanfare"] * 2
    assert all(c.path.is_file() and c.path.parent.parent.name in ("orch", "amb") for c in clips)
    assert caption_of("pkg-brass", "ambient", CAPTIONS) == "brass fanfare"  # the package wins over the label


def test_a_clip_without_a_caption_names_its_package_and_the_params_section(prepared):
    no_fallback = {k: v for k, v in CAPTIONS.items() if k != "ambient"}
    with pytest.raises(ValueError, match=r"package 'local'.*`captions` in params.yaml"):
        captioned_clips(prepared, LABELS, no_fallback)
    with pytest.raises(ValueError, match="non-empty"):
        captioned_clips(prepared, LABELS, {**CAPTIONS, "ambient": ""})


def test_bad_label_sources_are_named(prepared):
    with pytest.raises(ValueError, match="'<set>/<split>'"):
        captioned_clips(prepared, {"orchestral": "orch"}, CAPTIONS)
    with pytest.raises(FileNotFoundError, match="prepare@nosuch"):
        captioned_clips(prepared, {"x": "nosuch/train"}, CAPTIONS)
    with pytest.raises(ValueError, match="no clips in split 'ref'.*'heldout', 'train'"):
        captioned_clips(prepared, {"orchestral": "orch/ref"}, CAPTIONS)


def test_max_clips_per_label_is_a_seeded_subset_independent_of_the_other_labels(prepared):
    def paths(labels, seed):
        return [c.path.name for c in captioned_clips(prepared, labels, CAPTIONS, max_clips_per_label=2, seed=seed)
                if c.label == "orchestral"]

    subsets = {seed: paths(LABELS, seed) for seed in range(8)}
    assert all(len(s) == 2 and s == sorted(s) for s in subsets.values())  # two clips, in manifest order
    assert paths(LABELS, 3) == subsets[3] == paths({"orchestral": "orch/train"}, 3)
    assert len({tuple(s) for s in subsets.values()}) > 1  # the seed matters
    assert len(captioned_clips(prepared, LABELS, CAPTIONS, max_clips_per_label=100)) == 7


def test_every_crop_keeps_its_clips_caption_and_mel(prepared, features, transform, tmp_path):
    clips = captioned_clips(prepared, LABELS, CAPTIONS)
    assert features.x.shape == (14, 1, 16, 32) and features.x.min() >= -1 and features.x.max() <= 1
    assert features.captions == ["brass fanfare", "calm ambient music", "orchestral strings"]
    assert features.caption_index.tolist() == [1] * 6 + [2] * 4 + [0] * 4
    assert features.labels == {"ambient": ["calm ambient music"], "orchestral": ["brass fanfare", "orchestral strings"]}
    assert features.examples_per_label == {"ambient": 6, "orchestral": 8}
    assert features.clips_per_label == {"ambient": 3, "orchestral": 4}
    torch.testing.assert_close(features.x[8:10], mel_dataset([clips[4].path], transform, 32, progress=False,
                                                             crops_per_clip=2))
    features.save(tmp_path)
    again = TextFeatures.load(tmp_path)
    assert torch.equal(again.x, features.x) and torch.equal(again.caption_index, features.caption_index)
    assert json.loads((tmp_path / "captions.json").read_text())["captions"] == features.captions


# ----------------------------------------------------------------------------- the conditional UNet
def test_the_conditional_unet_needs_the_encoder_width_and_a_divisible_resolution():
    with pytest.raises(ValueError, match="cross_attention_dim"):
        build_denoiser("mel_text", TINY, (1, 16, 32))
    with pytest.raises(ValueError, match="divisible by 2"):
        build_denoiser("mel_text", {**TINY, "cross_attention_dim": 384}, (1, 15, 32))
    for width, size in ((384, 1_945_777), (512, 2_060_465)):  # MiniLM, T5-small: the registry's table
        with torch.device("meta"):
            model = build_denoiser("mel_text", {**CPU, "cross_attention_dim": width}, (1, 64, 64))
        assert count_parameters(model) == size


def test_text_conditioning_puts_the_empty_caption_in_row_0(features, minilm):
    conditioning = text_conditioning(minilm, features.captions, features.caption_index, 0.1)
    empty, empty_mask = minilm.encode([""])
    # "" encoded alone and inside a padded batch of captions take different matrix-multiply paths on some
    # CPUs: equal up to float32 rounding, and far from every caption's encoding
    assert torch.equal(conditioning.mask[0], empty_mask[0])
    assert (conditioning.hidden[0] - empty[0]).abs().max() < 1e-5
    assert all((conditioning.hidden[i] - empty[0]).abs().max() > 1e-2 for i in range(1, len(conditioning.hidden)))
    assert torch.equal(conditioning.caption_index, features.caption_index + 1)
    index, drop = torch.tensor([0, 13, 6]), torch.tensor([False, False, True])
    inputs = conditioning.inputs(index, drop)
    assert torch.equal(inputs["encoder_hidden_states"][0], conditioning.hidden[2])  # example 0: calm ambient music
    assert torch.equal(inputs["encoder_hidden_states"][1], conditioning.hidden[1])  # example 13: brass fanfare
    assert torch.equal(inputs["encoder_hidden_states"][2], conditioning.hidden[0])  # dropped: the empty caption
    assert torch.equal(inputs["encoder_attention_mask"][2], conditioning.mask[0])


def test_conditioning_that_does_not_fit_the_data_is_refused(features, minilm, tmp_path):
    good = text_conditioning(minilm, features.captions, features.caption_index, 0.1)
    bad = {"index 0 (the empty row)": TextConditioning(good.hidden, good.mask, good.caption_index - 1, 0.1),
           "mask shape": TextConditioning(good.hidden, good.mask[:, :4], good.caption_index, 0.1),
           "one row per example": TextConditioning(good.hidden, good.mask, good.caption_index[:5], 0.1),
           "probability": TextConditioning(good.hidden, good.mask, good.caption_index, 1.5)}
    model = build_denoiser("mel_text", {**TINY, "cross_attention_dim": 384}, (1, 16, 32))
    for problem, conditioning in bad.items():
        with pytest.raises(ValueError):
            train_diffusion(model, build_noise_scheduler(SCHEDULE), features.x, {"seed": 0, "batch_size": 2,
                            "max_steps": 1, "learning_rate": 1e-3}, tmp_path, conditioning=conditioning)
        assert not (tmp_path / "unet").exists(), problem


# ----------------------------------------------------------------------------- classifier-free guidance draws
def test_the_caption_drop_follows_the_unconditional_draws_of_the_same_generator():
    for seed in range(20):
        for num_processes, rank in ((1, 0), (2, 0), (2, 1)):
            plain = draw_batch(seed, 14, (1, 16, 32), 4, 100, num_processes, rank)
            conditioned = draw_conditioned_batch(seed, 14, (1, 16, 32), 4, 100, 0.1, num_processes, rank)
            for a, b in zip(plain, conditioned[:3]):
                assert torch.equal(a, b)
    first = draw_conditioned_batch(7, 14, (1, 4, 4), 64, 100, 0.5)[3]
    assert torch.equal(first, draw_conditioned_batch(7, 14, (1, 4, 4), 64, 100, 0.5)[3])  # deterministic
    assert not torch.equal(first, draw_conditioned_batch(8, 14, (1, 4, 4), 64, 100, 0.5)[3])
    # the global batch is split between processes like the rest of the draw
    both = torch.cat([draw_conditioned_batch(7, 14, (1, 4, 4), 32, 100, 0.5, 2, r)[3] for r in (0, 1)])
    assert torch.equal(both, first)


def test_the_caption_is_dropped_at_about_uncond_prob():
    drops = torch.cat([draw_conditioned_batch(seed, 14, (1, 2, 2), 8, 100, 0.1)[3] for seed in range(2000)])
    assert drops.dtype == torch.bool and len(drops) == 16000
    assert abs(drops.float().mean().item() - 0.1) < 0.01  # 4 standard deviations
    assert not draw_conditioned_batch(0, 14, (1, 2, 2), 64, 100, 0.0)[3].any()
    assert draw_conditioned_batch(0, 14, (1, 2, 2), 64, 100, 1.0)[3].all()


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(features, minilm, tmp_path_factory):
    out = tmp_path_factory.mktemp("mel_text")
    conditioning = text_conditioning(minilm, features.captions, features.caption_index, 0.1)
    torch.manual_seed(0)
    model = build_denoiser("mel_text", {**TINY, "cross_attention_dim": minilm.dim}, tuple(features.x.shape[1:]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = {"seed": 0, "batch_size": 4, "max_steps": 20, "learning_rate": 1e-3, "warmup_steps": 1,
              "checkpoint_steps": [10], "mixed_precision": "no", "log_every": 5, "ema": {"decay": 0.999}}
    result = train_diffusion(model, build_noise_scheduler(SCHEDULE), features.x, config, out, conditioning=conditioning)
    return model, before, result, out, conditioning


def test_text_conditioned_training_runs_and_saves_a_loadable_conditional_unet(trained):
    model, before, result, out, _ = trained
    assert result.step == 20 and len(result.losses) == 20
    assert all(torch.isfinite(torch.tensor(result.losses)))
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any("attn2.to_k" in k for k in changed)  # the cross-attention to the captions was trained
    ema = load_denoiser("mel_text", out / "unet_ema")
    assert type(ema).__name__ == "UNet2DConditionModel" and ema.config.cross_attention_dim == 384


def test_the_trained_model_listens_to_the_caption_and_ignores_padding(trained, features):
    model, _, _, _, conditioning = trained
    model.eval()
    torch.manual_seed(1)
    noisy, t = torch.randn(1, 1, 16, 32), torch.tensor([50])

    def denoise(hidden, mask):
        with torch.no_grad():
            return model(noisy, t, encoder_hidden_states=hidden, encoder_attention_mask=mask).sample

    ambient = denoise(conditioning.hidden[2:3], conditioning.mask[2:3])
    brass = denoise(conditioning.hidden[1:2], conditioning.mask[1:2])
    assert (ambient - brass).abs().max() > 1e-3
    padded = conditioning.hidden[2:3].clone()
    padding = conditioning.mask[2:3] == 0
    assert padding.any()
    padded[padding] = torch.randn(int(padding.sum()), padded.shape[-1]) * 10
    torch.testing.assert_close(denoise(padded, conditioning.mask[2:3]), ambient)


# ----------------------------------------------------------------------------- the two stages
@pytest.mark.slow  # runs the text_features and train stages as processes
def test_text_features_and_train_stages_write_a_conditioned_model_folder(prepared, tmp_path):
    """The stage scripts as DVC runs them (cwd = the project folder): text_features@ on the prepared
    sets above, then train@ of a mel_text variant, which records its text encoder."""
    repo = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["mel"]["griffin_lim_iters"] = 4
    params["captions"] = CAPTIONS
    params["text_features"] = {"tiny": {"resolution": [32, 16], "crops_per_clip": 2, "max_clips_per_label": 3,
                                        "labels": LABELS}}
    params["schedule"] = SCHEDULE
    params["train"].update({"max_steps": 2, "batch_size": 4, "checkpoint_steps": [], "log_every": 1})
    params["variants"] = {"tiny-text": {"family": "mel_text", "data": "text_features/tiny", "prediction_type": "sample",
                                        "text_encoder": "minilm", "max_tokens": 8, "uncond_prob": 0.2,
                                        "guidance_scale": 2.5, "model": TINY}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prepared").symlink_to(prepared)
    env = {**os.environ, "PYTHONPATH": str(repo), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    for stage, flag, name in (("text_features", "--name", "tiny"), ("train", "--variant", "tiny-text")):
        done = subprocess.run([sys.executable, "-m", f"pipelines.{stage}", flag, name], cwd=tmp_path, env=env,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
    features = TextFeatures.load(tmp_path / "data" / "text_features" / "tiny")
    assert features.x.shape == (12, 1, 16, 32) and features.clips_per_label == {"ambient": 3, "orchestral": 3}
    model_dir = tmp_path / "data" / "models" / "tiny-text"
    conditioning = json.loads((model_dir / "conditioning.json").read_text())
    assert conditioning == {"text_encoder": "minilm", "weights_sha256": MINILM_SHA256, "max_tokens": 8,
                            "guidance_scale": 2.5, "uncond_prob": 0.2, "captions": features.labels}
    assert load_denoiser("mel_text", model_dir / "unet_ema").config.cross_attention_dim == 384
    assert (model_dir / "representation.json").exists()
    record = json.loads((tmp_path / "metrics" / "train" / "tiny-text.json").read_text())
    assert record["tags"]["text_encoder"] == "minilm" and record["tags"]["text_encoder_sha256"] == MINILM_SHA256
    assert record["metrics"]["examples"] == 12

    # Sampling side: the folder loads as a mel_text variant; classifier-free guidance follows its formula.
    from musicdiff.generation import creative
    from musicdiff.generation.trained import TrainedVariant

    variant = TrainedVariant.load(None, model_dir)
    assert variant.family == "mel_text" and variant.captions == [c for label in sorted(features.labels)
                                                                 for c in features.labels[label]]
    fast = creative.SamplerSettings("ddim", 4)
    run = lambda caption, w: creative.denoise(  # noqa: E731
        variant, (1, *variant.representation.shape), 0, fast, condition=variant.text_condition([caption], w))
    # w = 0 is the unconditional prediction, which is what the empty caption gives at w = 1
    torch.testing.assert_close(run("calm ambient music", 0.0), run("", 1.0), atol=1e-4, rtol=1e-4)
    assert not torch.equal(run("calm ambient music", 2.5), run("calm ambient music", 1.0))
    assert not torch.equal(run("calm ambient music", 2.5), run("orchestral brass", 2.5))
    assert creative.generate(variant, 1, seed=0, sampler=fast, caption="calm ambient music", progress=False).shape \
        == (1, 31 * 256)
    audio, _, _ = variant.generate_audio({"scheduler": "ddim", "num_inference_steps": 2}, 3, 0, 3, progress=False)
    assert audio.shape == (3, 31 * 256) and torch.isfinite(audio).all()
    variant.conditioning["weights_sha256"] = "0" * 64
    variant._text_encoder = None
    with pytest.raises(ValueError, match="trained with"):
        variant.text_condition(["calm ambient music"])
