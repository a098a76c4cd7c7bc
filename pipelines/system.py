"""Stage system@<name>: one entry of ``systems`` in params.yaml (a folder of audio, a generator entry
point or a trained model folder of another checkout; ``musicdiff.evaluation.systems``) turned into
``data/systems/<name>/audio/``, with its provenance in the record and the MLflow run. The stage
``evaluate_system@<name>`` scores it like a generated set."""

from __future__ import annotations

from musicdiff.evaluation.system_audio import materialize
from musicdiff.evaluation.systems import SystemSpec
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, load_params, parser, record_path, run_stage


def main() -> None:
    args = parser(__doc__, "--name").parse_args()
    params = load_params()
    spec = SystemSpec.from_params(args.name, params["systems"][args.name])
    out_dir = ROOT / "data" / "systems" / args.name
    with stage_run("system", args.name, record_path("system", args.name),
                   tags={"kind": "external", "system_kind": spec.kind, "label": spec.label}) as run:
        run.log_params({"system": params["systems"][args.name]})
        provenance = materialize(spec, out_dir, sampler_cfg=(params.get("samplers") or {}).get(spec.sampler),
                                 batch_size=int(params.get("sample", {}).get("batch_size", 32)),
                                 decode=params.get("decode"))
        files = sorted(p for p in (out_dir / "audio").rglob("*") if p.is_file())
        run.log_metrics({"files": len(files)})
        run.set_tags({f"provenance.{k}": v for k, v in provenance.items()})
        print(f"system {args.name} ({spec.kind}): {len(files)} files in {out_dir / 'audio'}")


if __name__ == "__main__":
    run_stage(main)
