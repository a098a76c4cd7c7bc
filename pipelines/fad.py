"""Stage fad@<embedding>-<variant>-<sampler>: FAD of one generated set against every reference set.

One MLflow run per embedding and evaluation set; its metrics are ``<reference>/<name>`` (fad,
mean_term, trace_term, ci_low, ci_high, n_ref, n_ref_clips, kad with its CI and bandwidth, fad_inf
with its CI, slope and R^2), so the MLflow UI shows one column per reference set. Reference sets
are the audio sets of ``reference_sets`` and the shipped statistics of ``reference_stats`` (e.g.
FMA-Pop from fadtk) for the embeddings they cover; against statistics FAD with its bootstrap CI and
FAD-inf exist, KAD does not (it needs the reference clips). When the embedding was
skipped (weights missing) the run records the skip and no metrics.
"""

from __future__ import annotations

from musicdiff.metrics.embeddings import EmbeddedSet
from musicdiff.metrics.fad import fad_score
from musicdiff.metrics.kad import fad_inf, kad_score
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, load_params, parser, record_path


# ``reference_stats`` sources: name in params -> (embeddings covered, loader of GaussianStats)
def _shipped_sources() -> dict:
    from musicdiff.data.reference_stats import fma_pop_embeddings, fma_pop_stats

    return {"fadtk/fma_pop": (fma_pop_embeddings, fma_pop_stats)}


def reference_statistics(params: dict, embedding: str) -> dict:
    """``{name: GaussianStats}`` of the ``reference_stats`` entries that cover ``embedding``.

    Raises ``KeyError`` naming the known sources for an unknown one."""
    sources = _shipped_sources()
    found = {}
    for name, source in (params.get("reference_stats") or {}).items():
        if source not in sources:
            raise KeyError(f"reference_stats.{name}: unknown source {source!r}; known: {sorted(sources)}")
        covered, load = sources[source]
        if embedding in covered():
            found[name] = load(embedding)
    return found


def main() -> None:
    args = parser(__doc__, "--embedding", "--variant", "--sampler").parse_args()
    params = load_params()
    settings = params["fad"]
    embedding = args.embedding
    folder = ROOT / "data" / "embeddings" / embedding
    evaluation_set = f"{args.variant}-{args.sampler}"
    instance = f"{embedding}-{evaluation_set}"
    references = list(params["reference_sets"])
    inputs = [folder / "samples" / f"{evaluation_set}.npz", *(folder / "reference" / f"{r}.npz" for r in references)]
    tags = {"embedding": embedding, "evaluation_set": evaluation_set, "variant": args.variant,
            "sampler": args.sampler, "reference_sets": ",".join(references)}
    evaluation = EmbeddedSet.load(inputs[0])
    if evaluation.skipped:
        with stage_run("fad", instance, record_path("fad", instance), tags={**tags, "skipped": evaluation.skipped}):
            pass
        print(f"skipped {instance}: {evaluation.skipped}")
        return
    statistics = reference_statistics(params, embedding)
    with stage_run("fad", instance, record_path("fad", instance),
                   tags={**tags, "reference_stats": ",".join(statistics)}, data_paths=inputs) as run:
        run.log_params({"n_bootstrap": settings["n_bootstrap"], "ci": settings["ci"], "seed": settings["seed"],
                        "embedding": embedding, "evaluation_set": evaluation_set, "reference_sets": references,
                        "reference_stats": sorted(statistics)})
        metrics = {}
        for name, path in zip(references, inputs[1:]):
            reference = EmbeddedSet.load(path)
            if (reference.weight_sha256, reference.config) != (evaluation.weight_sha256, evaluation.config):
                raise ValueError(f"reference {name!r} and {evaluation_set!r} were embedded with different weights "
                                 "or settings")
            result = fad_score(reference.frames, evaluation.clips, n_bootstrap=settings["n_bootstrap"],
                               seed=settings["seed"], ci=settings["ci"])
            kad = kad_score(reference.frames, evaluation.clips, ci=settings["ci"])
            inf = fad_inf(reference.frames, evaluation.clips, repeats=settings["fad_inf_repeats"], seed=settings["seed"])
            values = {**result.to_dict(), "n_ref_clips": len(reference.clips),
                      "kad": kad.kad, "kad_ci_low": kad.ci_low, "kad_ci_high": kad.ci_high, "kad_bandwidth": kad.bandwidth,
                      "fad_inf": inf.fad_inf, "fad_inf_ci_low": inf.ci_low, "fad_inf_ci_high": inf.ci_high,
                      "fad_inf_slope": inf.slope, "fad_inf_r2": inf.r2}
            metrics.update({f"{name}/{k}": v for k, v in values.items()})
        for name, stats in statistics.items():
            result = fad_score(stats, evaluation.clips, n_bootstrap=settings["n_bootstrap"], seed=settings["seed"],
                               ci=settings["ci"])
            inf = fad_inf(stats, evaluation.clips, repeats=settings["fad_inf_repeats"], seed=settings["seed"])
            values = {**result.to_dict(), "n_ref_clips": 0, "fad_inf": inf.fad_inf, "fad_inf_ci_low": inf.ci_low,
                      "fad_inf_ci_high": inf.ci_high, "fad_inf_slope": inf.slope, "fad_inf_r2": inf.r2}
            metrics.update({f"{name}/{k}": v for k, v in values.items()})
        run.log_metrics(metrics)


if __name__ == "__main__":
    main()
