"""Stage sample_size: FAD and KAD against the number of evaluation clips (the study's "Number of FAD
samples" experiment), on one generated evaluation set's clips.

The embeddings of ``sample_size.set`` (a key of ``samples``, written by its ``evaluate@`` stage) with
``sample_size.embedding`` are scored at every size of ``sample_size.sizes`` (subsets drawn without
replacement; ``musicdiff.evaluation.metrics.sample_size``) against each of ``sample_size.reference_sets``, beside
FAD-inf from ``musicdiff.evaluation.score`` (subsets up to half the pool, with its fit and whether it
is reliable). Metrics are ``<reference>/n_<n>/<name>`` and ``<reference>/fad_inf...``; for MLflow's
charts ``<embedding>/<reference>/fad`` is logged at step n.
"""

from __future__ import annotations

from musicdiff.evaluation.scoring import score
from musicdiff.evaluation.sets import EmbeddedSet
from musicdiff.evaluation.metrics.sample_size import scores_vs_n
from musicdiff.tracking import stage_run

from pipelines import evaluation as ev
from pipelines.common import load_params, parser, record_path, upstream_run_tags


def main() -> None:
    parser(__doc__).parse_args()
    params = load_params()
    settings = params["sample_size"]
    name, embedding = settings["set"], settings["embedding"]
    path = ev.eval_path(name, embedding)
    evaluation = EmbeddedSet.load(path)
    spec = params["samples"][name]
    tags = {"evaluation_set": name, "variant": spec["variant"], "sampler": spec["sampler"], "embedding": embedding,
            "reference_sets": ",".join(settings["reference_sets"]), **upstream_run_tags(evaluate=name)}
    score_settings = ev.settings(params)
    with stage_run("sample_size", name, record_path("sample_size", name), tags=tags, data_paths=[path]) as run:
        run.log_params({"sample_size": settings, "evaluation": params["evaluation"]})
        metrics = {"clips": len(evaluation.clips), "dim": evaluation.dim}
        for ref, reference in ev.references(params, embedding, settings["reference_sets"], shipped=False).items():
            points = scores_vs_n(reference.frames, evaluation.clips, settings["sizes"], repeats=settings["repeats"],
                                 seed=settings["seed"], ci=score_settings.ci, n_bootstrap=score_settings.n_bootstrap)
            for point in points:
                metrics.update({f"{ref}/n_{point.n}/{k}": v for k, v in point.to_dict().items() if k != "n"})
                run.log_metrics({f"{embedding}/{ref}/fad": point.fad, f"{embedding}/{ref}/kad": point.kad}, step=point.n)
            scored = score(evaluation, reference, score_settings, kad=False)
            inf = scored.fad_inf
            if inf is None:
                run.set_tags({f"{ref}/fad_inf_missing": scored.fad_inf_error})
            else:
                metrics.update({f"{ref}/fad_inf": inf.fad_inf, f"{ref}/fad_inf_ci_low": inf.ci_low,
                                f"{ref}/fad_inf_ci_high": inf.ci_high, f"{ref}/fad_inf_slope": inf.slope,
                                f"{ref}/fad_inf_r2": inf.r2, f"{ref}/fad_inf_reliable": float(inf.reliable),
                                f"{ref}/fad_inf_min_subset": inf.sizes[0], f"{ref}/fad_inf_max_subset": inf.sizes[-1]})
                if not inf.reliable:
                    run.set_tags({f"{ref}/fad_inf_unreliable": inf.reason})
        run.log_metrics(metrics)


if __name__ == "__main__":
    main()
