"""``musicdiff generate | vary | inpaint | continue | loop``: the creative tools on a trained model folder,
WAV in and WAV out, with a JSON sidecar (``<out>.json``) that records what made the file: tool,
settings, seed, model weight and input audio SHA-256, library versions."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

TOOLS = ("generate", "vary", "inpaint", "continue", "loop")


def add_parsers(sub) -> None:
    """Add the five tools to the ``musicdiff`` sub-command parser ``sub``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("model", help="trained model folder (data/models/<variant>: unet_ema/, scheduler/, "
                                      "representation.json)")
    common.add_argument("--out", required=True, help="output WAV (float32 at the model's rate); <out>.json records how")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm", "dpmsolver++"])
    common.add_argument("--steps", type=int, default=50, help="sampler steps over the whole chain (default 50)")
    common.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default 0: deterministic)")
    common.add_argument("--step", type=int, default=None, help="use the EMA weights of this training checkpoint")
    common.add_argument("--caption", default=None, help="text prompt (text-conditioned models only)")
    common.add_argument("--guidance-scale", type=float, default=None,
                        help="classifier-free guidance scale (default: the model's)")
    common.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")

    p = sub.add_parser("generate", parents=[common], help="new audio from noise")
    p.add_argument("--seconds", type=float, default=None, help="length (default: one model window)")
    p.add_argument("-n", type=int, default=1, help="clips; more than one writes <out stem>_<i>.wav")

    p = sub.add_parser("vary", parents=[common], help="a variation of a WAV: noise it to a timestep, denoise")
    p.add_argument("input", help="source audio (any readable file; mono-mixed and resampled)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--strength", type=float, help="T / num_train_timesteps, e.g. 0.5")
    g.add_argument("--timestep", type=int, help="start timestep T, e.g. 950, 750, 500, 250 (the study's)")

    p = sub.add_parser("inpaint", parents=[common], help="regenerate a time range of a WAV")
    p.add_argument("input")
    p.add_argument("--start", type=float, required=True, help="range start (seconds)")
    p.add_argument("--end", type=float, required=True, help="range end (seconds)")

    p = sub.add_parser("continue", parents=[common], help="extend a WAV by N seconds")
    p.add_argument("input")
    p.add_argument("--seconds", type=float, required=True, help="seconds to add")
    p.add_argument("--context", type=float, default=0.5, help="fraction of each window kept from what exists")

    p = sub.add_parser("loop", parents=[common], help="a seamless loop of a WAV's first window (or of new audio)")
    p.add_argument("input", nargs="?", default=None, help="source audio (default: generate one)")
    p.add_argument("--seam", type=float, default=0.25, help="fraction of the window regenerated around the join")
    for name in TOOLS:
        sub.choices[name].set_defaults(func=run)


def run(args) -> int:
    """Run one tool from parsed arguments; writes the WAV(s) and the sidecar."""
    import torch

    from musicdiff import creative
    from musicdiff.hashing import sha256_file, sha256_tree
    from musicdiff.tracking import library_versions
    from musicdiff.trained import TrainedVariant

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_dir = Path(args.model)
    trained = TrainedVariant.load(None, model_dir, step=args.step)
    sampler = creative.SamplerSettings(args.sampler, args.steps, args.eta)
    common = dict(seed=args.seed, sampler=sampler, caption=args.caption, guidance_scale=args.guidance_scale,
                  device=device)
    audio = creative.load_wav(args.input, trained) if getattr(args, "input", None) else None
    if args.command == "generate":
        out = creative.generate(trained, args.n, args.seconds, **common)
    elif args.command == "vary":
        out = creative.vary(trained, audio, strength=args.strength, timestep=args.timestep, **common)
    elif args.command == "inpaint":
        out = creative.inpaint(trained, audio, args.start, args.end, **common)
    elif args.command == "continue":
        out = creative.continue_audio(trained, audio, args.seconds, context=args.context, **common)
    else:
        out = creative.loop(trained, audio, seam=args.seam, **common)
    clips = out if out.dim() == 2 else out.unsqueeze(0)
    target = Path(args.out)
    paths = [target] if len(clips) == 1 else [target.with_name(f"{target.stem}_{i}{target.suffix or '.wav'}")
                                              for i in range(len(clips))]
    weights = model_dir / "unet_ema" if args.step is None else model_dir / "checkpoints" / f"step_{args.step}"
    settings = {k: v for k, v in vars(args).items() if k not in ("func", "out", "model")}
    sidecar = {
        "tool": args.command, "settings": settings, "model": str(model_dir), "family": trained.family,
        "model_weights_sha256": sha256_tree(sorted(p for p in weights.rglob("*") if p.is_file())),
        "input_sha256": sha256_file(args.input) if getattr(args, "input", None) else None,
        "sample_rate": trained.representation.sample_rate, "resolution": trained.representation.resolution,
        "device": device, "versions": library_versions(), "python": platform.python_version(),
        "text_encoder": (trained.conditioning or {}).get("text_encoder"),
    }
    for path, clip in zip(paths, clips):
        creative.save_wav(path, clip, trained)
        record = dict(sidecar, seconds=round(clip.shape[-1] / trained.representation.sample_rate, 4))
        tmp = path.with_name(f".{path.name}.json")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
        tmp.replace(path.with_name(f"{path.name}.json"))
        print(f"wrote {path} ({record['seconds']:.2f} s, {trained.family} model, {args.command})")
    return 0
