"""Stage sample_size: FAD and KAD against the number of evaluation clips (the study's "Number of
FAD samples" experiment).

``sample_size.n_samples`` clips of ``sample_size.variant`` with ``sample_size.sampler`` are
generated (more than the sample@ stages make, so the curve reaches far), written to
``data/sample_size/<variant>-<sampler>/``, embedded with ``sample_size.embedding`` and, for each
reference set, scored at every size of ``sample_size.sizes`` (``musicdiff.metrics.sample_size``),
beside FAD-inf (``musicdiff.metrics.kad.fad_inf``). Metrics are ``<reference>/n_<n>/<name>``,
``<reference>/fad_inf`` (with CI, slope, R^2) and, for MLflow's charts, ``<reference>/fad`` logged at
step n.
"""

from __future__ import annotations

import torch

from musicdiff.metrics.embeddings import EmbeddedSet
from musicdiff.metrics.kad import fad_inf
from musicdiff.metrics.sample_size import scores_vs_n
from musicdiff.tracking import stage_run
from musicdiff.trained import TrainedVariant

from pipelines.common import ROOT, load_params, parser, record_path
from pipelines.embed import embed_folder
from pipelines.sample import write_clips


def main() -> None:
    parser(__doc__).parse_args()
    params = load_params()
    settings, fad_settings = params["sample_size"], params["fad"]
    family = params["variants"][settings["variant"]]["family"]
    sampler_cfg = params["samplers"][settings["sampler"]]
    name = f"{settings['variant']}-{settings['sampler']}"
    model_dir = ROOT / "data" / "models" / settings["variant"]
    out_dir = ROOT / "data" / "sample_size" / name
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tags = {"variant": settings["variant"], "sampler": settings["sampler"], "family": family,
            "embedding": settings["embedding"], "reference_sets": ",".join(settings["reference_sets"]),
            "evaluation_set": name, "device": device}
    with stage_run("sample_size", name, record_path("sample_size", name), tags=tags,
                   data_paths=[model_dir / "unet_ema"]) as run:
        run.log_params({"sample_size": settings, "sampler_config": sampler_cfg, "fad": fad_settings,
                        "batch_size": params["sample"]["batch_size"]})
        trained = TrainedVariant.load(family, model_dir)
        audio, _, _ = trained.generate_audio(sampler_cfg, settings["n_samples"], settings["seed"],
                                             params["sample"]["batch_size"], device)
        write_clips(out_dir, name, audio, trained.representation.sample_rate)
        evaluation = embed_folder(params, settings["embedding"], out_dir)
        if evaluation.skipped:
            run.set_tags({"skipped": evaluation.skipped})
            print(f"skipped sample_size: {evaluation.skipped}")
            return
        metrics = {"clips": len(evaluation.clips)}
        for ref in settings["reference_sets"]:
            path = ROOT / "data" / "embeddings" / settings["embedding"] / "reference" / f"{ref}.npz"
            reference = EmbeddedSet.load(path).frames
            points = scores_vs_n(reference, evaluation.clips, settings["sizes"], repeats=settings["repeats"],
                                 seed=settings["seed"], ci=fad_settings["ci"], n_bootstrap=fad_settings["n_bootstrap"])
            for point in points:
                metrics.update({f"{ref}/n_{point.n}/{k}": v for k, v in point.to_dict().items() if k != "n"})
                run.log_metrics({f"{ref}/fad": point.fad, f"{ref}/kad": point.kad}, step=point.n)
            inf = fad_inf(reference, evaluation.clips, repeats=fad_settings["fad_inf_repeats"],
                          seed=fad_settings["seed"])
            metrics.update({f"{ref}/fad_inf": inf.fad_inf, f"{ref}/fad_inf_ci_low": inf.ci_low,
                            f"{ref}/fad_inf_ci_high": inf.ci_high, f"{ref}/fad_inf_slope": inf.slope,
                            f"{ref}/fad_inf_r2": inf.r2})
        run.log_metrics(metrics)


if __name__ == "__main__":
    main()
