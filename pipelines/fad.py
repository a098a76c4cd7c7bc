"""Stage fad@<embedding>-<evaluation>-<reference>: FAD of an evaluation set against a reference set."""

from __future__ import annotations

from musicdiff.metrics.embeddings import EmbeddedSet
from musicdiff.metrics.fad import fad_score
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, load_params, parser, record_path


def main() -> None:
    args = parser(__doc__, "--evaluation", "--reference").parse_args()
    params = load_params()
    settings = params["fad"]
    embedding = params["embed"]["embedding"]
    folder = ROOT / "data" / "embeddings" / embedding
    instance = f"{embedding}-{args.evaluation}-{args.reference}"
    variant, _, sampler = args.evaluation.partition("-")
    inputs = [folder / f"{args.reference}.npz", folder / f"{args.evaluation}.npz"]
    with stage_run("fad", instance, record_path("fad", instance), tags={
        "embedding": embedding, "evaluation_set": args.evaluation, "reference_set": args.reference,
        "variant": variant, "sampler": sampler,
    }, data_paths=inputs) as run:
        reference = EmbeddedSet.load(folder / f"{args.reference}.npz")
        evaluation = EmbeddedSet.load(folder / f"{args.evaluation}.npz")
        if (reference.weight_sha256, reference.config) != (evaluation.weight_sha256, evaluation.config):
            raise ValueError("reference and evaluation embeddings were made with different weights or settings")
        run.log_params({"n_bootstrap": settings["n_bootstrap"], "ci": settings["ci"], "seed": settings["seed"],
                        "embedding": embedding, "evaluation_set": args.evaluation, "reference_set": args.reference})
        result = fad_score(reference.frames, evaluation.clips, n_bootstrap=settings["n_bootstrap"],
                           seed=settings["seed"], ci=settings["ci"])
        run.log_metrics({**result.to_dict(), "n_ref_clips": len(reference.clips)})


if __name__ == "__main__":
    main()
