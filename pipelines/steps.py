"""Stage steps@<variant>: FAD as training progresses (the study's 100 ... 40000 steps experiment).

For each step of ``training_curve.steps`` that the variant's training reaches, the EMA weights of
its checkpoint generate ``training_curve.n_samples`` clips with the sampler
``training_curve.sampler`` (same seed at every step), written to ``data/steps/<variant>/step_<N>/``,
embedded with ``training_curve.embedding`` and scored against ``training_curve.reference_sets``:
FAD with its bootstrap CI and KAD with its jackknife CI. Metrics are ``step_<N>/<reference>/<name>``
and, for MLflow's charts, ``<reference>/fad`` logged at step N. A listed step beyond the variant's
``max_steps`` is recorded in the tag ``steps_not_reached``; a step it reaches without a checkpoint
is an error (add it to ``train.checkpoint_steps``).
"""

from __future__ import annotations

import torch

from musicdiff.metrics.embeddings import EmbeddedSet
from musicdiff.metrics.fad import fad_score
from musicdiff.metrics.kad import kad_score
from musicdiff.tracking import stage_run
from musicdiff.trained import TrainedVariant

from pipelines.common import ROOT, atomic_dir, load_params, parser, record_path, variant_settings
from pipelines.embed import embed_folder
from pipelines.sample import write_clips


def main() -> None:
    args = parser(__doc__, "--variant").parse_args()
    params = load_params()
    settings, fad_settings = params["training_curve"], params["fad"]
    variant, _, train = variant_settings(params, args.variant)
    sampler_cfg = params["samplers"][settings["sampler"]]
    model_dir = ROOT / "data" / "models" / args.variant
    out_dir = ROOT / "data" / "steps" / args.variant
    steps = sorted(int(s) for s in settings["steps"])
    reached = [s for s in steps if s <= int(train["max_steps"])]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tags = {"variant": args.variant, "family": variant["family"], "sampler": settings["sampler"],
            "embedding": settings["embedding"], "reference_sets": ",".join(settings["reference_sets"]),
            "steps_not_reached": ",".join(str(s) for s in steps if s not in reached), "device": device}
    with stage_run("steps", args.variant, record_path("steps", args.variant), tags=tags,
                   data_paths=[model_dir / "checkpoints"]) as run:
        run.log_params({"training_curve": settings, "sampler_config": sampler_cfg, "steps": reached,
                        "batch_size": params["sample"]["batch_size"], "fad": fad_settings})
        with atomic_dir(out_dir) as tmp:
            for step in reached:
                trained = TrainedVariant.load(variant["family"], model_dir, step=step)
                audio, _, _ = trained.generate_audio(sampler_cfg, settings["n_samples"], settings["seed"],
                                                     params["sample"]["batch_size"], device)
                write_clips(tmp / f"step_{step}", f"{args.variant}-step_{step}", audio,
                            trained.representation.sample_rate)
        references = {}
        for step in reached:
            evaluation = embed_folder(params, settings["embedding"], out_dir / f"step_{step}")
            if evaluation.skipped:
                run.set_tags({"skipped": evaluation.skipped})
                print(f"skipped the FAD of steps@{args.variant}: {evaluation.skipped}")
                return
            metrics = {}
            for ref in settings["reference_sets"]:
                if ref not in references:
                    path = ROOT / "data" / "embeddings" / settings["embedding"] / "reference" / f"{ref}.npz"
                    references[ref] = EmbeddedSet.load(path).frames
                fad = fad_score(references[ref], evaluation.clips, n_bootstrap=fad_settings["n_bootstrap"],
                                seed=fad_settings["seed"], ci=fad_settings["ci"])
                kad = kad_score(references[ref], evaluation.clips, ci=fad_settings["ci"])
                values = {"fad": fad.fad, "fad_ci_low": fad.ci_low, "fad_ci_high": fad.ci_high, "kad": kad.kad,
                          "kad_ci_low": kad.ci_low, "kad_ci_high": kad.ci_high, "n_eval_clips": fad.n_eval_clips}
                metrics.update({f"step_{step}/{ref}/{k}": v for k, v in values.items()})
                run.log_metrics({f"{ref}/fad": fad.fad, f"{ref}/kad": kad.kad}, step=step)
            run.log_metrics(metrics)


if __name__ == "__main__":
    main()
