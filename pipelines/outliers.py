"""Stage outliers@<embedding>: per-clip z-scores of every generated set against the leave-one-out
scores of one reference set (``outliers.reference_set``); see ``musicdiff.metrics.outliers``.

Besides the generated sets, the clips of the reference sets in ``outliers.anchors`` are scored the
same way: real music of the training source should sit near z = 0 and unrelated music far above,
which shows what a z-score means for this embedding. Metrics per set: ``<set>/z_max``,
``<set>/z_median``, ``<set>/n_outliers`` (z above ``outliers.z_threshold``) and ``<set>/clip_<i>/z``;
the ``outliers.top`` highest clips of each set, with their audio paths, are the param
``top.<set>``.
"""

from __future__ import annotations

import numpy as np

from musicdiff.metrics.embeddings import EmbeddedSet
from musicdiff.metrics.outliers import leave_one_out_scores, outlier_scores
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, load_params, parser, record_path


def main() -> None:
    args = parser(__doc__, "--embedding").parse_args()
    params = load_params()
    settings = params["outliers"]
    embedding = args.embedding
    folder = ROOT / "data" / "embeddings" / embedding
    reference_name = settings["reference_set"]
    inputs = {f"{v}-{s}": folder / "samples" / f"{v}-{s}.npz" for v in params["variants"] for s in params["samplers"]}
    inputs.update({a: folder / "reference" / f"{a}.npz" for a in settings.get("anchors", [])})
    reference_path = folder / "reference" / f"{reference_name}.npz"
    tags = {"embedding": embedding, "reference_set": reference_name}
    reference = EmbeddedSet.load(reference_path)
    if reference.skipped:
        with stage_run("outliers", embedding, record_path("outliers", embedding),
                       tags={**tags, "skipped": reference.skipped}):
            pass
        print(f"skipped outliers@{embedding}: {reference.skipped}")
        return
    with stage_run("outliers", embedding, record_path("outliers", embedding), tags=tags,
                   data_paths=[reference_path, *inputs.values()]) as run:
        loo = leave_one_out_scores(reference.clips)
        metrics = {"loo_mean": float(loo.mean()), "loo_std": float(loo.std(ddof=1)), "n_ref_clips": len(loo)}
        top = {}
        for name, path in inputs.items():
            evaluation = EmbeddedSet.load(path)
            result = outlier_scores(reference.clips, evaluation.clips, loo=loo)
            metrics.update({f"{name}/z_max": float(result.z.max()), f"{name}/z_median": float(np.median(result.z)),
                            f"{name}/n_outliers": int((result.z > settings["z_threshold"]).sum()),
                            f"{name}/n_clips": len(result.z)})
            metrics.update({f"{name}/clip_{i:04d}/z": float(z) for i, z in enumerate(result.z)})
            top[name] = [{"path": evaluation.paths[i], "z": round(float(result.z[i]), 4),
                          "score": round(float(result.scores[i]), 4)} for i in result.top(settings["top"])]
        run.log_params({"outliers": settings, "sets": list(inputs), "top": top})
        run.log_metrics(metrics)


if __name__ == "__main__":
    main()
