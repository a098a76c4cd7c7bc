"""Stage vae@<name>: train the AutoencoderKL on a mel feature set, then write its scaled latents.

Output ``data/latents/<name>/``: ``vae/`` (diffusers AutoencoderKL, ``scaling_factor`` = 1 / std of
the latents), ``train.safetensors`` (the scaled posterior means, the latent denoiser's training set)
and ``representation.json`` (kind ``latent``).
"""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file

from musicdiff.generation.latent_codec import encode_latents
from musicdiff.generation.models.latent import build_vae, train_vae
from musicdiff.generation.representation import Representation
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, atomic_dir, load_params, parser, record_path


def main() -> None:
    args = parser(__doc__, "--name").parse_args()
    params = load_params()
    spec = params["autoencoders"][args.name]
    features = ROOT / "data" / "features" / spec["features"]
    out_dir = ROOT / "data" / "latents" / args.name
    torch.manual_seed(spec["train"]["seed"])
    with stage_run("vae", args.name, record_path("vae", args.name), tags={"features": spec["features"]},
                   data_paths=[features / "train.safetensors"]) as run:
        mel = Representation.load(features)
        if mel.kind != "mel":
            raise ValueError(f"autoencoders.{args.name}.features must name a mel feature set, got {mel.kind}")
        data = load_file(str(features / "train.safetensors"))["x"]
        vae = build_vae(spec["model"])
        run.log_params({"model": spec["model"], "train": spec["train"], "features": spec["features"]})
        with atomic_dir(out_dir) as tmp:
            result = train_vae(vae, data, spec["train"], tmp, log_metrics=run.log_metrics)
            latents = encode_latents(vae, data, result["latent_scale"])
            save_file({"x": latents.contiguous()}, str(tmp / "train.safetensors"))
            representation = Representation("latent", mel.sample_rate, tuple(latents.shape[1:]), frames=mel.frames,
                                            mel=mel.mel)
            representation.save(tmp)
            with torch.no_grad():  # reconstruction error of the whole chain's first half, on training mels
                probe = data[: min(64, len(data))]
                recon = vae.decode(encode_latents(vae, probe, 1.0)).sample
                l1 = float((recon.clamp(-1, 1) - probe).abs().mean())
        n_params = sum(p.numel() for p in vae.parameters())
        run.log_metrics({"final_loss": result["final_loss"], "latent_scale": result["latent_scale"],
                         "train_s_per_step": result["seconds_per_step"], "steps": result["step"],
                         "reconstruction_l1": l1, "params_millions": n_params / 1e6,
                         "size_mb": n_params * 4 / 2**20, "examples": len(data)})
        run.set_tags({"resolution": representation.resolution})


if __name__ == "__main__":
    main()
