"""Stage evaluate@<set>: one generated evaluation set embedded with every embedding and scored against
every reference set under the evaluation protocol.

The clips of ``data/samples/<set>/`` are cut by the protocol (``evaluation.clip_s``), embedded into
``data/embeddings/eval/<set>/<embedding>.npz`` and scored by ``musicdiff.evaluation.score`` against each
reference set of ``reference_sets`` (and the shipped statistics of ``reference_stats`` that cover the
embedding): FAD with its bootstrap CI, KAD with its jackknife CI, FAD-inf with its fit, the counts and
the adequacy flags. One MLflow run per set; its metrics are ``<embedding>/<reference>/<name>`` and the
tags name the sample and train runs it came from.
"""

from __future__ import annotations

from musicdiff.tracking import stage_run

from pipelines import evaluation as ev
from pipelines.common import ROOT, load_params, parser, record_path, sample_spec, upstream_run_tags


def main() -> None:
    args = parser(__doc__, "--set").parse_args()
    params = load_params()
    spec = sample_spec(params, args.set)
    folder = ROOT / "data" / "samples" / args.set
    tags = {"kind": "generated", "evaluation_set": args.set, "variant": spec["variant"], "sampler": spec["sampler"],
            "family": spec["family"], "headline": str(bool(spec.get("headline"))).lower(),
            **upstream_run_tags(sample=args.set, train=spec["variant"])}
    with stage_run("evaluate", args.set, record_path("evaluate", args.set), tags=tags, data_paths=[folder]) as run:
        ev.evaluate_folder(params, run, folder, args.set)


if __name__ == "__main__":
    main()
