"""Stage floors: real held-out music, alone and through each family's decoder alone, scored exactly like a
generated set (``musicdiff.evaluation.floors``).

``floors`` in params.yaml gives the real clips' prepared set (``source``: ``<dataset>/<split>``, by default
the ``floor`` split of the training dataset: held-out tracks kept apart from the held-out reference set)
and at most ``max_clips`` clips (seeded); ``floors.real`` names the floor of the clips themselves, and each
entry of ``floors.decoders`` a decoder (``decoder``: a ``features/<name>`` or ``latents/<name>`` folder
under ``data/``), each with the ``label`` the tables print. The clips of each floor go to
``data/floors/<name>/`` as WAV, then are embedded (``data/embeddings/floors/<name>/``) and scored as
``evaluate@`` does, with one MLflow run and record (``metrics/floor/<name>.json``) per floor.
"""

from __future__ import annotations

from musicdiff.data.audio import write_float_wav
from musicdiff.evaluation.floors import real_clips, round_trip, window_samples
from musicdiff.tracking import stage_run

from pipelines import embedding as em
from pipelines import evaluation as ev
from pipelines.common import ROOT, atomic_dir, load_params, parser, record_path, run_stage


def main() -> None:
    parser(__doc__).parse_args()
    params = load_params()
    floors = params["floors"]
    known = {floors["real"]["name"]: {**floors["real"], "decoder": None}, **(floors.get("decoders") or {})}
    for name, spec in known.items():
        run_floor(params, name, {**spec, "source": floors["source"], "max_clips": floors.get("max_clips")})


def run_floor(params: dict, name: str, spec: dict) -> None:
    """Make, embed and score the floor ``name``; logs one run and writes its record."""
    source = ROOT / "data" / "prepared" / spec["source"]
    decoder = ROOT / "data" / spec["decoder"] if spec.get("decoder") else None
    out_dir = ROOT / "data" / "floors" / name
    rate = params["audio"]["sample_rate"]
    tags = {"kind": "floor", "evaluation_set": name, "label": spec["label"], "source": spec["source"],
            "decoder": spec.get("decoder") or "none"}
    with stage_run("floor", name, record_path("floor", name), tags=tags,
                   data_paths=[source] + ([decoder] if decoder else [])) as run:
        run.log_params({"floor": spec, "sample_rate": rate})
        samples = window_samples(decoder, ev.protocol(params))
        audio, names = real_clips(em.audio_files(source), samples, rate, spec.get("max_clips"),
                                  params["evaluation"].get("seed", 0))
        decoded = round_trip(audio, decoder, decode=params.get("decode"))
        with atomic_dir(out_dir) as tmp:
            for clip_name, clip in zip(names, decoded):
                write_float_wav(tmp / f"{clip_name.replace('#', '_')}.wav", clip, rate)
        n = min(decoded.shape[1], audio.shape[1])
        run.log_metrics({"clips": len(decoded), "clip_samples": decoded.shape[1],
                         "mean_abs_change": float(abs(decoded[:, :n] - audio[:, :n]).mean())})
        em.evaluate_folder(params, run, out_dir, name)


if __name__ == "__main__":
    run_stage(main)
