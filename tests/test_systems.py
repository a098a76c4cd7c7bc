"""External systems (musicdiff.evaluation.systems): each kind becomes a folder of audio with its provenance, and a
malformed entry or a broken generator is a clear error naming the entry, with nothing left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicdiff.evaluation.system_audio import materialize
from musicdiff.evaluation.systems import SystemSpec

TOY = str(Path(__file__).with_name("toy_generator.py"))


def test_a_generator_entry_point_becomes_a_folder_of_its_clips_with_provenance(tmp_path):
    spec = SystemSpec.from_params("toy", {"generator": f"{TOY}:generate", "n_clips": 3, "seed": 7,
                                          "params": {"seconds": 0.5}})
    provenance = materialize(spec, tmp_path / "toy")
    files = sorted((tmp_path / "toy" / "audio").glob("*.wav"))
    assert [f.name for f in files] == ["toy_0000.wav", "toy_0001.wav", "toy_0002.wav"]
    audio, rate = sf.read(files[0], dtype="float32")
    assert rate == 16000 and audio.shape == (8000,)
    from toy_generator import generate

    np.testing.assert_array_equal(audio, generate(3, 7, 0.5)[0][0])  # the function's own output, unchanged
    assert provenance["kind"] == "generator" and len(provenance["generator_sha256"]) == 64
    assert provenance["seed"] == 7 and provenance["params"] == {"seconds": 0.5}


def test_a_folder_is_cut_to_clip_s_keeping_rate_and_channels(tmp_path):
    src = tmp_path / "mine"
    src.mkdir()
    sf.write(src / "a.flac", np.random.default_rng(0).uniform(-0.5, 0.5, (44100 * 3, 2)).astype(np.float32), 44100)
    spec = SystemSpec.from_params("mine", {"source": {"local": str(src), "include": ["*.flac"]}, "clip_s": 1.5})
    provenance = materialize(spec, tmp_path / "out")
    info = sf.info(tmp_path / "out" / "audio" / "a.wav")
    assert (info.samplerate, info.channels, info.frames) == (44100, 2, 66150)
    assert provenance["files"] == 1 and provenance["clip_s"] == 1.5


@pytest.mark.parametrize("entry, error", [
    ({"generator": "toy_generator:generate"}, "n_clips must be a positive integer"),
    ({"generator": "no_colon", "n_clips": 2}, "must be 'module:function'"),
    ({"source": {"local": "/x"}, "generator": "a:b"}, "exactly one of"),
    ({"source": {"local": "/x"}, "clip_s": float("nan")}, "clip_s must be a positive"),
    ({"model": "/x", "n_clips": 2}, "needs `sampler:`"),
    ({"source": {"local": "/x"}, "colour": "red"}, "unknown keys"),
])
def test_a_malformed_entry_names_itself(entry, error):
    with pytest.raises(ValueError, match=error):
        SystemSpec.from_params("bad", entry)


def test_a_broken_generator_or_missing_model_is_named_and_leaves_nothing(tmp_path):
    spec = SystemSpec.from_params("x", {"generator": f"{TOY}:wrong_count", "n_clips": 2})
    with pytest.raises(ValueError, match="returned 3 clips, 2 were asked for"):
        materialize(spec, tmp_path / "x")
    spec = SystemSpec.from_params("y", {"generator": "no_such_module_here:generate", "n_clips": 2})
    with pytest.raises(ImportError, match="cannot import 'no_such_module_here'"):
        materialize(spec, tmp_path / "y")
    spec = SystemSpec.from_params("z", {"model": str(tmp_path / "nowhere"), "sampler": "ddim50", "n_clips": 2})
    with pytest.raises(FileNotFoundError, match="not a trained model folder"):
        materialize(spec, tmp_path / "z", sampler_cfg={"scheduler": "ddim", "num_inference_steps": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no partial folder, no temporary one


def test_the_filter_table_names_a_system_by_its_label_whatever_its_set_name():
    """A system's set name is no ``<variant>-<sampler>``: 'toy' has no dash and 'fadtk-mubert' would read
    as model 'fadtk', sampler 'mubert'. The system run's label names its rows, listed after the models."""
    from musicdiff.report.analyses import filter_frame, filter_sections

    def scores(name, n_clips, n_removed):
        fields = {"fad": 10.0, "fad_ci_low": 9.0, "fad_ci_high": 11.0, "adequate": 1.0, "kad": 1.0,
                  "filtered_fad": 9.5, "filtered_fad_ci_low": 8.5, "filtered_fad_ci_high": 10.5,
                  "filtered_adequate": 1.0, "filtered_kad": 0.9}
        return {**{f"musicnn/{name}/heldout/{k}": v for k, v in fields.items()},
                f"{name}/n_clips": n_clips, f"{name}/n_removed": n_removed}

    runs = [{"stage": "sample", "instance": "mel-ddim", "tags": {"variant": "mel", "sampler": "ddim"},
             "metrics": {}, "params": {}},
            *({"stage": "system", "instance": name, "tags": {"kind": "external", "label": label},
               "metrics": {}, "params": {}} for name, label in (("toy", "toy generator"),
                                                                 ("fadtk-mubert", "Mubert"))),
            {"stage": "filter", "instance": "all", "tags": {}, "params": {},
             "metrics": {**scores("mel-ddim", 8, 1), **scores("toy", 12, 2), **scores("fadtk-mubert", 91, 0)}}]
    frame = filter_frame(runs)
    named = dict(zip(zip(frame["variant"], frame["sampler"]), frame["n_clips"]))
    assert named == {("mel", "ddim"): 8, ("toy generator (external)", "-"): 12, ("Mubert (external)", "-"): 91}
    titles = [title for title, _ in filter_sections(frame, frame.iloc[:0], {"level": "rms_dbfs"})]
    assert titles == ["Model mel: FAD original / filtered", "System Mubert: FAD original / filtered",
                      "System toy generator: FAD original / filtered"]


def test_the_score_tables_and_the_analyses_name_a_system_alike():
    from musicdiff.report.analyses import set_names
    from musicdiff.report.scores import system_label, system_name

    external = {"kind": "external", "label": "Mubert", "evaluation_set": "fadtk-mubert"}
    sample = {"variant": "mel", "sampler": "ddim", "evaluation_set": "mel-ddim"}
    runs = [{"stage": "system", "instance": "fadtk-mubert", "tags": external},
            {"stage": "system", "instance": "toy", "tags": {"kind": "external"}},
            {"stage": "sample", "instance": "mel-ddim", "tags": sample}]
    names = set_names(runs)
    assert names == {"fadtk-mubert": ("Mubert (external)", "-"), "toy": ("toy (external)", "-"),
                     "mel-ddim": ("mel", "ddim")}
    assert system_label(external) == names["fadtk-mubert"][0] == system_name(external)[0]
    assert system_label(sample) == " ".join(names["mel-ddim"])
    assert system_label({**sample, "headline": "true"}) == "mel ddim (headline)"
    assert system_name({"kind": "floor", "label": "real: held-out"}) == ("real: held-out", "")
