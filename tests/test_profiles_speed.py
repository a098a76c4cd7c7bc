"""The paper profile switch (params.yaml rewritten with comments kept) and the speed timer: the 5-run
minimum, thread pinning and its record, the two-step-count fit, the DDIM/DDPM ratio check of the speed
table (pure functions on simulated numbers with known answers) and the GPU block's bookkeeping (no timed
assertion: speed goals are never asserted)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from musicdiff.features.dataset import mel_dataset
from musicdiff.features.mel import MelConfig, MelTransform
from musicdiff.generation.models.registry import build_denoiser
from musicdiff.generation.representation import Decoder, Representation
from musicdiff.generation.schedulers import build_noise_scheduler, build_sampler
from musicdiff.report.tables import gpu_paper_frame, ratio_check, speed_frame, speed_markdown, speed_notes
from musicdiff.generation.sampling import synchronize
from musicdiff.generation.speed import (NO_CUDA, SpeedResult, fit_steps, gpu_paper_record, physical_cores, pin_threads,
                             sampler_metrics, step_fit, time_inference)

REPO = Path(__file__).resolve().parent.parent


def test_profile_paper_rewrites_params_keeping_comments_and_replacing_variants(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "pipelines" / "profiles", tmp_path / "profiles")
    before = yaml.safe_load((tmp_path / "params.yaml").read_text())
    subprocess.run([sys.executable, "-m", "musicdiff.cli.main", "profile", "paper", "--profiles", "profiles"],
                   cwd=tmp_path, check=True, capture_output=True)
    text = (tmp_path / "params.yaml").read_text()
    after = yaml.safe_load(text)
    assert "# Reference sets that every evaluation set is scored against" in text  # comments survive
    profile = yaml.safe_load((tmp_path / "profiles" / "paper.yaml").read_text())
    assert set(after["variants"]) == set(profile["variants"])  # CPU variants replaced, not merged
    assert "dit-64x64" in before["variants"] and after["variants"]["mel-64x64"]["model"]["layers_per_block"] == 2
    assert after["datasets"]["wesnoth"]["prepare"]["segment_s"] == 11.9
    assert after["datasets"]["ambient"] == before["datasets"]["ambient"]  # untouched keys kept
    assert after["train"]["seed"] == before["train"]["seed"] and after["train"]["max_steps"] == 40000
    study = subprocess.run([sys.executable, "-m", "musicdiff.cli.main", "profile", "cpu-study", "--dry-run", "--profiles",
                            "profiles"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    study = yaml.safe_load(study)
    assert len(study["samples"]) == 20 and {"drums", "chorales"} <= set(study["reference_sets"])
    assert sum(s.get("headline", False) for s in study["samples"].values()) == 5 and study["bench"]["suites"] == ["fadtk"]
    missing = subprocess.run([sys.executable, "-m", "musicdiff.cli.main", "profile", "nope", "--profiles", "profiles"],
                             cwd=tmp_path, capture_output=True, text=True)
    assert missing.returncode == 2 and "paper" in missing.stderr


@pytest.fixture(scope="module")
def tiny_mel_model(fadtk_clips):
    config = MelConfig(n_mels=16, griffin_lim_iters=2)
    data = mel_dataset(fadtk_clips[:2], MelTransform(config), frames=32, progress=False)
    model = build_denoiser("mel", {"block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "DownBlock2D"],
                                   "up_block_types": ["UpBlock2D", "UpBlock2D"], "layers_per_block": 1, "attention_head_dim": 4,
                                   "norm_num_groups": 4}, tuple(data.shape[1:]))
    representation = Representation("mel", 22050, tuple(data.shape[1:]), frames=32, mel=config.to_dict())
    return model, representation


def test_time_inference_reports_medians_per_second_of_audio(tiny_mel_model):
    model, representation = tiny_mel_model
    noise = build_noise_scheduler({"num_train_timesteps": 100, "prediction_type": "sample"})
    result = time_inference(model, build_sampler("ddim", noise), Decoder(representation), representation.shape, 4,
                            22050, batch_size=2, warmup=1, repeats=5)
    assert len(result.denoise_seconds) == len(result.decode_seconds) == 5
    assert result.audio_seconds == pytest.approx(2 * 31 * 256 / 22050)
    assert result.denoise_rtf > 0 and result.decode_rtf > 0
    assert result.seconds_per_step == pytest.approx(sorted(result.denoise_seconds)[2] / 4)
    for too_few in (3, 4):  # the table reports a median of >= 5 timed runs
        with pytest.raises(ValueError, match="at least 5"):
            time_inference(model, build_sampler("ddim", noise), Decoder(representation), representation.shape, 2, 22050,
                           repeats=too_few)


def test_decoder_checks_shapes_and_needs_the_vae_of_a_latent_model(tiny_mel_model, tmp_path):
    _, representation = tiny_mel_model
    audio = Decoder(representation)(torch.zeros(1, *representation.shape))
    assert audio.shape == (1, representation.audio_samples) == (1, 31 * 256)
    with pytest.raises(ValueError, match="expected samples of shape"):
        Decoder(representation)(torch.zeros(1, 1, 8, 8))
    latent = Representation("latent", 22050, (1, 8, 16), frames=32, mel=representation.mel)
    with pytest.raises(FileNotFoundError, match="must contain the VAE"):
        Decoder(latent, tmp_path)
    representation.save(tmp_path)
    assert Representation.load(tmp_path) == representation
    assert Representation("waveform", 22050, (1, 2048), samples=2048).resolution == "[1, 2048]"
    assert latent.resolution == "[32, 16] [16, 8]"


def test_pin_threads_sets_and_records_the_threads(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    try:
        pinned = pin_threads(1)
        assert pinned["threads"] == torch.get_num_threads() == 1 and pinned["threads_source"] == "params"
        assert pinned["interop_threads"] == torch.get_num_interop_threads()
        assert pinned["interop_pinned"] == (torch.get_num_interop_threads() == 1)  # torch refuses once work began
        monkeypatch.setattr("musicdiff.generation.speed.physical_cores", lambda: 2)
        default = pin_threads(None)
        assert default["threads"] == torch.get_num_threads() == 2 and default["threads_source"] == "physical cores"
        with pytest.raises(ValueError, match="speed.threads"):
            pin_threads(0)
    finally:
        torch.set_num_threads(before)
    # 4 logical CPUs on 2 cores (2 hyperthreads each) -> 2; a CPU without topology counts as its own core
    for cpu, core in enumerate([0, 0, 1, 1]):
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    assert physical_cores({0, 1, 2, 3}, tmp_path) == 2 and physical_cores({0, 2}, tmp_path) == 2
    assert physical_cores({0, 1, 7}, tmp_path) == 2


def test_speed_stage_records_the_threads_and_says_when_no_cuda_device_was_there(monkeypatch):
    import contextlib

    import pipelines.speed as stage

    logged = {"metrics": {}, "tags": {}}

    class FakeRun:
        def log_params(self, params):
            logged["params"] = params

        def log_metrics(self, metrics, step=None):
            logged["metrics"].update(metrics)

        def set_tags(self, tags):
            logged["tags"].update(tags)

    @contextlib.contextmanager
    def fake_stage_run(stage_name, instance, record, tags=None, data_paths=None):
        logged.update(stage=stage_name, instance=instance)
        logged["tags"].update(tags or {})
        yield FakeRun()

    monkeypatch.setattr(stage, "stage_run", fake_stage_run)
    monkeypatch.setattr(stage.torch.cuda, "is_available", lambda: False)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    threads = {"threads": 2, "interop_threads": 1, "interop_pinned": True, "threads_source": "physical cores"}
    stage.time_gpu_paper(params, threads)
    assert logged["instance"] == "gpu-paper-mel-256x256" and logged["tags"]["gpu_paper"] == NO_CUDA
    assert logged["metrics"]["threads"] == 2 and logged["metrics"]["interop_threads"] == 1
    assert logged["tags"]["threads_source"] == "physical cores" and logged["metrics"]["cuda_available"] == 0
    assert params["speed"]["repeats"] >= 5
    for profile in ("cpu-study", "paper"):
        assert yaml.safe_load((REPO / "pipelines" / "profiles" / f"{profile}.yaml").read_text())["speed"]["repeats"] >= 5
    # each sampler is also timed at half its steps (interleaved with the rest) for the overhead fit
    entries = stage.with_fits(params["samplers"], 0.5, lambda name: name)
    assert [(n, e[1]) for n, e in entries.items()][:2] == [("ddpm", 100), ("ddpm:fit", 50)]


def test_synchronize_waits_for_cuda_only(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(str(device)))
    synchronize("cpu")
    synchronize(torch.device("cpu"))
    assert calls == []
    synchronize("cuda")
    synchronize("cuda:0")
    assert calls == ["cuda", "cuda:0"]


def _result(steps: int, denoise: list[float], decode: float = 0.02, audio: float = 1.0) -> SpeedResult:
    return SpeedResult(denoise, [decode] * len(denoise), audio, steps)


def test_step_fit_and_sampler_metrics_give_the_fixed_overhead_and_per_step_cost():
    assert step_fit(100, 3.0, 50, 2.0) == pytest.approx((1.0, 0.02))
    with pytest.raises(ValueError):
        step_fit(50, 1.0, 50, 1.0)
    assert fit_steps(100, 0.5) == 50 and fit_steps(10, 0.5) == 5 and fit_steps(1, 0.5) is None
    assert fit_steps(100, None) is None and fit_steps(100, 0) is None
    # 1.0 s per run + 0.02 s per step, simulated; runs spread 0.4 s around a 3.0 s median
    metrics = sampler_metrics({"ddpm": _result(100, [2.8, 3.0, 3.2, 3.0, 3.0]),
                               "ddpm:fit": _result(50, [2.0] * 5)})
    assert metrics["ddpm/overhead_s"] == pytest.approx(1.0) and metrics["ddpm/step_s"] == pytest.approx(0.02)
    assert metrics["ddpm/fit_steps"] == 50 and metrics["ddpm/denoise_s"] == pytest.approx(3.0)
    assert metrics["ddpm/denoise_spread"] == pytest.approx(0.4 / 3.0)
    assert not any(k.startswith("ddpm:fit") for k in metrics)


def _speed_metrics(ddim_rtf: float, ddpm_rtf: float, **extra) -> dict:
    return {"ddim50/denoise_s_per_audio_s": ddim_rtf, "ddim50/num_inference_steps": 50.0,
            "ddim50/s_per_step": ddim_rtf / 50, "ddim50/decode_s_per_audio_s": 0.025,
            "ddpm/denoise_s_per_audio_s": ddpm_rtf, "ddpm/num_inference_steps": 100.0,
            "ddpm/s_per_step": ddpm_rtf / 100, "ddpm/decode_s_per_audio_s": 0.025, **extra}


def test_ratio_check_marks_only_a_ratio_more_than_15_percent_off_with_the_logged_reason():
    exact = ratio_check(_speed_metrics(0.5, 1.0), "ddim50", "ddpm")
    assert exact["measured"] == pytest.approx(0.5) and exact["expected"] == 0.5 and not exact["off"]
    assert not ratio_check(_speed_metrics(0.57, 1.0), "ddim50", "ddpm")["off"]  # +14%: within
    assert not ratio_check(_speed_metrics(0.43, 1.0), "ddim50", "ddpm")["off"]  # -14%: within
    assert ratio_check(_speed_metrics(0.58, 1.0), "ddim50", "ddpm")["off"]  # +16%: marked
    # a fixed 2 s per run and 0.02 s per step (audio 1 s): 3 s vs 4 s, ratio 0.75 for a step ratio of 0.5
    overhead = _speed_metrics(3.0, 4.0, **{"ddim50/overhead_s": 2.0, "ddim50/step_s": 0.02, "ddim50/denoise_s": 3.0,
                                           "ddpm/overhead_s": 2.0, "ddpm/step_s": 0.02, "ddpm/denoise_s": 4.0})
    check = ratio_check(overhead, "ddim50", "ddpm")
    assert check["off"] and check["deviation"] == pytest.approx(0.5)
    assert check["reasons"] == ["fixed per-run overhead (intercept of denoising time vs steps) 2.000 s for ddim50 "
                                "(67% of its run), 2.000 s for ddpm (50% of its run)"]
    # the loaded run of the cpu-study mel model (4.73 / 6.13 s per audio s): per-step cost and decoding differ
    loaded = _speed_metrics(4.7337, 6.1273, **{"ddim50/step_s": 0.06925, "ddpm/step_s": 0.04482,
                                               "ddim50/decode_s_per_audio_s": 0.0801, "ddpm/decode_s_per_audio_s": 0.0551,
                                               "ddim50/denoise_spread": 0.4, "ddpm/denoise_spread": 0.05})
    check = ratio_check(loaded, "ddim50", "ddpm")
    assert check["off"] and check["measured"] == pytest.approx(0.7726, abs=1e-4)
    assert check["reasons"] == ["per-step cost (slope of denoising time vs steps) differs: ddim50 69.2 ms, ddpm 44.8 ms",
                                "timed runs spread (max - min over median) 40% for ddim50, 5% for ddpm: "
                                "the machine was not quiet",
                                "decoding, the same for every sampler, took 0.055 to 0.080 s per audio s across "
                                "the samplers of this run: the machine was not quiet"]
    assert ratio_check(_speed_metrics(0.9, 1.0), "ddim50", "ddpm")["reasons"] == ["no cause found in the logged numbers"]


def _run(stage: str, instance: str, metrics: dict, params: dict | None = None, tags: dict | None = None) -> dict:
    return {"stage": stage, "instance": instance, "run_id": instance, "metrics": metrics,
            "params": params or {}, "tags": tags or {}}


def test_speed_table_reports_the_ratios_and_marks_the_row_that_is_off():
    train = {"params_millions": 1.0, "size_mb": 4.0, "train_s_per_step": 0.1, "clip_seconds": 0.73}
    samplers = {"samplers.ddim50.scheduler": "ddim", "samplers.ddpm.scheduler": "ddpm", "samplers.dpmpp10.scheduler": "dpmsolver++"}
    common = {"repeats": 5.0, "batch_size": 4.0, "threads": 2.0, "dpmpp10/denoise_s_per_audio_s": 0.1,
              "dpmpp10/decode_s_per_audio_s": 0.025, "dpmpp10/num_inference_steps": 10.0, "dpmpp10/s_per_step": 0.01}
    runs = [_run("train", v, train, {"train.batch_size": "8"}, {"family": "mel"}) for v in ("a-ok", "b-off", "c-ddim-only")]
    runs += [_run("speed", "a-ok", {**common, **_speed_metrics(0.52, 1.0)}, samplers),
             _run("speed", "b-off", {**common, **_speed_metrics(0.77, 1.0)}, samplers),
             _run("speed", "c-ddim-only", {**common}, samplers),
             _run("speed", "gpu-paper-mel-256x256", {"cuda_available": 0.0}, tags={"gpu_paper": NO_CUDA})]
    frame = speed_frame(runs, ["ddpm", "ddim50", "dpmpp10"]).set_index("Variant")
    assert frame.loc["a-ok", "ddim50/ddpm wall ratio"] == 0.52 and frame.loc["a-ok", "ddim50/ddpm step ratio"] == 0.5
    assert frame.loc["a-ok", "Ratio check"] == "ok" and frame.loc["b-off", "Ratio check"] == "¶1"
    assert frame.loc["b-off", "Inference batch"] == 4 and frame.loc["b-off", "Threads"] == 2
    assert frame["Ratio check"].isna()["c-ddim-only"]  # no DDIM/DDPM pair, no check
    assert speed_notes(frame) == ["¶1 b-off ddim50/ddpm: wall ratio 0.770 vs step ratio 0.500 (+54%): "
                                  "no cause found in the logged numbers"]
    text = speed_markdown(frame.reset_index(), gpu_paper_frame(runs))
    assert "- ¶1 b-off ddim50/ddpm" in text and "Ratio check reason" not in text
    assert f"## GPU, paper size\n\nNot timed: {NO_CUDA}." in text


def test_gpu_paper_block_bookkeeping_without_a_gpu():
    study = {"ddpm1000": 3.784, "ddim50": 0.370}
    metrics, tags = gpu_paper_record(False, None, study)
    assert tags["gpu_paper"] == NO_CUDA and metrics == {"cuda_available": 0.0}
    # simulated CUDA results (known numbers, no timing): 7.568 and 0.185 s per audio s
    results = {"ddpm1000": _result(1000, [7.568] * 5, audio=1.0), "ddim50": _result(50, [0.185] * 5, audio=1.0)}
    metrics, tags = gpu_paper_record(True, results, study, "NVIDIA H100")
    assert tags == {"gpu_paper": "timed", "device": "cuda", "device_name": "NVIDIA H100"}
    assert metrics["ddpm1000/vs_study"] == pytest.approx(2.0) and metrics["ddim50/vs_study"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no sampler was timed"):
        gpu_paper_record(True, {}, study)
    run = _run("speed", "gpu-paper-mel-256x256", {**metrics, "repeats": 5.0, "batch_size": 1.0, "params_millions": 113.7,
                                                  "clip_seconds": 2.96}, tags=tags)
    block, line = gpu_paper_frame([run])
    assert list(block["Sampler"]) == ["ddim50", "ddpm1000"] and list(block["Study (s per audio s)"]) == [0.370, 3.784]
    assert list(block["Denoise / study"]) == [0.5, 2.0] and "NVIDIA H100" in line
    assert gpu_paper_frame([])[1] == "Not timed: the speed stage's records hold no GPU run."
