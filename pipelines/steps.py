"""Stage steps@<variant>: FAD as training progresses (the study's 100 ... 40000 steps experiment).

For each step of ``training_curve.steps`` that the variant's training reaches, the EMA weights of its
checkpoint generate ``training_curve.n_samples`` clips with the sampler ``training_curve.sampler``
(same seed at every step), written to ``data/steps/<variant>/step_<N>/``, embedded with
``training_curve.embedding`` under the evaluation protocol and scored by ``musicdiff.evaluation.score``
against ``training_curve.reference_sets``: FAD with its CI, KAD with its CI, the adequacy flag. Metrics
are ``step_<N>/<embedding>/<reference>/<name>`` and, for MLflow's charts, ``<embedding>/<reference>/fad``
and ``.../kad`` logged at step N. A listed step beyond the variant's ``max_steps`` is recorded in the tag
``steps_not_reached``; a step it reaches without a checkpoint is an error (add it to
``train.checkpoint_steps``).
"""

from __future__ import annotations

import torch

from musicdiff.tracking import stage_run
from musicdiff.generation.trained import TrainedVariant

from pipelines import embedding as em
from pipelines import evaluation as ev
from pipelines.common import (ROOT, atomic_dir, load_params, parser, record_path, run_stage, upstream_run_tags, variant_settings)
from pipelines.sample import write_clips


def main() -> None:
    args = parser(__doc__, "--variant").parse_args()
    params = load_params()
    settings = params["training_curve"]
    variant, _, train = variant_settings(params, args.variant)
    sampler_cfg = params["samplers"][settings["sampler"]]
    model_dir = ROOT / "data" / "models" / args.variant
    out_dir = ROOT / "data" / "steps" / args.variant
    steps = sorted(int(s) for s in settings["steps"])
    reached = [s for s in steps if s <= int(train["max_steps"])]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    embedding_name = settings["embedding"]
    tags = {"variant": args.variant, "family": variant["family"], "sampler": settings["sampler"],
            "embedding": embedding_name, "reference_sets": ",".join(settings["reference_sets"]),
            "steps_not_reached": ",".join(str(s) for s in steps if s not in reached), "device": device,
            **upstream_run_tags(train=args.variant)}
    with stage_run("steps", args.variant, record_path("steps", args.variant), tags=tags,
                   data_paths=[model_dir / "checkpoints"]) as run:
        run.log_params({"training_curve": settings, "sampler_config": sampler_cfg, "steps": reached,
                        "batch_size": params["sample"]["batch_size"], "evaluation": params["evaluation"]})
        with atomic_dir(out_dir) as tmp:
            for step in reached:
                trained = TrainedVariant.load(variant["family"], model_dir, step=step, decode=params.get("decode"))
                audio, _, _ = trained.generate_audio(sampler_cfg, settings["n_samples"], settings["seed"],
                                                     params["sample"]["batch_size"], device)
                write_clips(tmp / f"step_{step}", f"{args.variant}-step_{step}", audio,
                            trained.representation.sample_rate)
        embedding = em.build_embedding(params, embedding_name)
        refs = ev.references(params, embedding_name, settings["reference_sets"], shipped=False)
        for step in reached:
            evaluation = em.embed_folder(params, embedding, out_dir / f"step_{step}", f"{args.variant}@{step}")
            metrics, tags = ev.score_all(evaluation, refs, ev.settings(params), fad_inf=False)
            run.log_metrics({f"step_{step}/{k}": v for k, v in metrics.items()})
            run.log_metrics({k: v for k, v in metrics.items() if k.endswith("/fad") or k.endswith("/kad")}, step=step)
            if tags:
                run.set_tags({f"step_{step}/{k}": v for k, v in tags.items()})


if __name__ == "__main__":
    run_stage(main)
