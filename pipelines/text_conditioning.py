"""Stage text_conditioning@<variant>: does the caption steer a text-conditioned variant? FAD per label.

For every label of the variant's captions (``conditioning.json``; e.g. orchestral, ambient, band,
drums), ``text_conditioning.n_samples`` clips are generated with that label's captions in turn at the
variant's classifier-free guidance scale (Ho & Salimans 2022, eq. 6), and as many unconditional clips
(the empty caption the model was trained to know through caption dropout, guidance scale 1) are
generated once. Both are embedded with ``text_conditioning.embedding`` and scored against the
reference set of the label (``text_conditioning.label_reference_sets``) and against every set there,
under the evaluation protocol by ``musicdiff.evaluation.score``: FAD with its bootstrap CI, KAD with its
jackknife CI and the adequacy flag. Metrics: ``<label>/<embedding>/<reference>/fad`` (and CI, KAD) for
the conditional clips, ``unconditional/<embedding>/<reference>/fad`` for the unconditional ones. Audio:
``data/text_conditioning/<variant>/``.
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
    settings = params["text_conditioning"]
    variant, _, _ = variant_settings(params, args.variant)
    sampler_cfg = params["samplers"][settings["sampler"]]
    model_dir = ROOT / "data" / "models" / args.variant
    out_dir = ROOT / "data" / "text_conditioning" / args.variant
    device = "cuda" if torch.cuda.is_available() else "cpu"
    label_refs = settings["label_reference_sets"]
    n, batch = int(settings["n_samples"]), int(params["sample"]["batch_size"])
    tags = {"variant": args.variant, "family": variant["family"], "sampler": settings["sampler"],
            "embedding": settings["embedding"], "device": device, **upstream_run_tags(train=args.variant)}
    with stage_run("text_conditioning", args.variant, record_path("text_conditioning", args.variant), tags=tags,
                   data_paths=[model_dir / "unet_ema"]) as run:
        trained = TrainedVariant.load(variant["family"], model_dir, decode=params.get("decode"))
        if trained.conditioning is None:
            raise ValueError(f"variant {args.variant} is not text-conditioned (family {variant['family']})")
        labels = trained.conditioning["captions"]
        missing = sorted(set(labels) - set(label_refs))
        if missing:
            raise KeyError(f"labels {missing} have no reference set in text_conditioning.label_reference_sets")
        guidance = float(trained.conditioning["guidance_scale"])
        run.log_params({"text_conditioning": settings, "sampler_config": sampler_cfg, "evaluation": params["evaluation"],
                        "guidance_scale": guidance, "text_encoder": trained.conditioning["text_encoder"],
                        "captions": labels})
        run.set_tags({"text_encoder": trained.conditioning["text_encoder"],
                      "text_encoder_sha256": trained.conditioning["weights_sha256"]})
        with atomic_dir(out_dir) as tmp:
            for label, captions in sorted(labels.items()):
                prompts = [captions[i % len(captions)] for i in range(n)]
                audio, _, _ = trained.generate_audio(sampler_cfg, n, settings["seed"], batch, device,
                                                     captions=prompts, guidance_scale=guidance)
                write_clips(tmp / label, f"{args.variant}-{label}", audio, trained.representation.sample_rate)
            audio, _, _ = trained.generate_audio(sampler_cfg, n, settings["seed"], batch, device,
                                                 captions=[""] * n, guidance_scale=1.0)
            write_clips(tmp / "unconditional", f"{args.variant}-unconditional", audio,
                        trained.representation.sample_rate)
        embedding = em.build_embedding(params, settings["embedding"])
        refs = ev.references(params, settings["embedding"], sorted(set(label_refs.values())), shipped=False)
        metrics = {}
        for group in [*sorted(labels), "unconditional"]:
            evaluation = em.embed_folder(params, embedding, out_dir / group, f"{args.variant}@{group}")
            scores, flags = ev.score_all(evaluation, refs, ev.settings(params), fad_inf=False)
            metrics.update({f"{group}/{k}": v for k, v in scores.items()})
            if flags:
                run.set_tags({f"{group}/{k}": v for k, v in flags.items()})
        run.log_metrics(metrics)

if __name__ == "__main__":
    run_stage(main)
