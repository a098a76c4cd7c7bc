"""Stage outliers: per-clip z-scores of every evaluation set against the leave-one-out scores of one
reference set (``outliers.reference_set``), at equal footing (``musicdiff.evaluation.perclip``).

The sets are the generated sets of ``samples``, the real floors of ``floors``, and the reference sets
of ``outliers.anchors``: real music of the training source should sit near z = 0 and unrelated music
far above, which shows what a z-score means for each embedding. Every clip on both sides went through
the same evaluation protocol. Metrics per embedding and set: ``<embedding>/<set>/{z_max,z_median,
n_outliers,n_clips}`` (outliers: z above ``outliers.z_threshold``); the ``outliers.top`` highest clips of
each set with their audio paths are the param ``top.<embedding>.<set>``.
"""

from __future__ import annotations

import numpy as np

from musicdiff.evaluation.perclip import leave_one_out_scores, outlier_scores
from musicdiff.evaluation.sets import EmbeddedSet
from musicdiff.tracking import stage_run

from pipelines import evaluation as ev
from pipelines.evaluation import floor_names
from pipelines.common import load_params, parser, record_path


def main() -> None:
    parser(__doc__).parse_args()
    params = load_params()
    settings = params["outliers"]
    reference_name = settings["reference_set"]
    evaluation_sets = [*params["samples"], *(params.get("systems") or {}), *floor_names(params)]
    anchors = list(settings.get("anchors", []))
    with stage_run("outliers", "all", record_path("outliers", "all"), tags={"reference_set": reference_name}) as run:
        metrics, top = {}, {}
        for embedding in ev.embeddings(params):
            reference = EmbeddedSet.load(ev.reference_path(reference_name, embedding))
            loo = leave_one_out_scores(reference.clips)
            metrics.update({f"{embedding}/loo_mean": float(loo.mean()), f"{embedding}/loo_std": float(loo.std(ddof=1)),
                            f"{embedding}/n_ref_clips": len(loo)})
            sets = {name: ev.set_path(params, name, embedding) for name in evaluation_sets}
            sets.update({name: ev.reference_path(name, embedding) for name in anchors})
            for name, path in sets.items():
                evaluation = EmbeddedSet.load(path)
                reference.check_comparable(evaluation)
                result = outlier_scores(reference.clips, evaluation.clips, loo=loo)
                metrics.update({f"{embedding}/{name}/z_max": float(result.z.max()),
                                f"{embedding}/{name}/z_median": float(np.median(result.z)),
                                f"{embedding}/{name}/n_outliers": int((result.z > settings["z_threshold"]).sum()),
                                f"{embedding}/{name}/n_clips": len(result.z)})
                top[f"{embedding}.{name}"] = [{"path": evaluation.names[i], "z": round(float(result.z[i]), 3),
                                               "score": round(float(result.scores[i]), 3)}
                                              for i in result.top(settings["top"])]
        run.log_params({"outliers": settings, "sets": [*evaluation_sets, *anchors], "top": top})
        run.log_metrics(metrics)


if __name__ == "__main__":
    main()
