"""Stage evaluate@<set>: one generated evaluation set embedded with every embedding and scored against
every reference set under the evaluation protocol; ``--system <name>`` (stage evaluate_system@<name>)
scores an external system's folder (``data/systems/<name>/audio``) the same way, tagged ``kind=external``.

The clips of ``data/samples/<set>/`` are cut by the protocol (``evaluation.clip_s``), embedded into
``data/embeddings/eval/<set>/<embedding>.npz`` and scored by ``musicdiff.evaluation.score`` against each
reference set of ``reference_sets`` (and the shipped statistics of ``reference_stats`` that cover the
embedding): FAD with its bootstrap CI, KAD with its jackknife CI, FAD-inf with its fit, the counts and
the adequacy flags. One MLflow run per set; its metrics are ``<embedding>/<reference>/<name>`` and the
tags name the sample and train runs it came from.
"""

from __future__ import annotations

import json

from musicdiff.tracking import stage_run

from pipelines import embedding as em
from pipelines.common import ROOT, load_params, parser, record_path, run_stage, sample_spec, upstream_run_tags


def main() -> None:
    cli = parser(__doc__)
    group = cli.add_mutually_exclusive_group(required=True)
    group.add_argument("--set", help="a generated set of `samples`")
    group.add_argument("--system", help="an external system of `systems`")
    args = cli.parse_args()
    params = load_params()
    if args.system:
        return evaluate_system(params, args.system)
    spec = sample_spec(params, args.set)
    folder = ROOT / "data" / "samples" / args.set
    tags = {"kind": "generated", "evaluation_set": args.set, "variant": spec["variant"], "sampler": spec["sampler"],
            "family": spec["family"], "headline": str(bool(spec.get("headline"))).lower(),
            **upstream_run_tags(sample=args.set, train=spec["variant"])}
    with stage_run("evaluate", args.set, record_path("evaluate", args.set), tags=tags, data_paths=[folder]) as run:
        em.evaluate_folder(params, run, folder, args.set)


def evaluate_system(params: dict, name: str) -> None:
    from musicdiff.evaluation.systems import SystemSpec

    spec = SystemSpec.from_params(name, params["systems"][name])
    folder = ROOT / "data" / "systems" / name / "audio"
    tags = {"kind": "external", "evaluation_set": name, "label": spec.label, "system_kind": spec.kind,
            "headline": "false", **upstream_run_tags(system=name)}
    made = record_path("system", name)
    if made.is_file():  # where the audio came from (folder, generator, model), as the system stage recorded it
        tags.update({k: v for k, v in json.loads(made.read_text())["tags"].items() if k.startswith("provenance.")})
    with stage_run("evaluate", name, record_path("evaluate", name), tags=tags, data_paths=[folder]) as run:
        em.evaluate_folder(params, run, folder, name)


if __name__ == "__main__":
    run_stage(main)
