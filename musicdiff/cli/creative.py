"""``musicdiff generate | vary | inpaint | continue | loop``: the creative tools on a trained model folder,
WAV in and WAV out, with a JSON sidecar (``<out>.json``) that records what made the file: tool,
settings, seed, model weight and input audio SHA-256, library versions, and the output's peak.

Bad input never ends in a traceback or a partial file. Every failure is one line
``musicdiff <tool>: error: <what>`` on stderr and exit status 2:

* **arguments** (:func:`validate_arguments`, before the model is loaded): ``--steps``, ``-n``,
  ``--timestep`` at least 1; ``--seconds`` and ``--guidance-scale`` finite (``--seconds`` > 0,
  the scale >= 0; ``--seconds`` of output, float32, at most a quarter of the memory available, see
  :func:`_check_output_memory`, checked once the model's rate is known); ``--strength``, ``--context``,
  ``--seam`` in (0, 1); ``--eta`` in [0, 1];
  ``0 <= --start < --end``, both finite; ``--seed`` in [0, 2**62); ``--step`` >= 0; the model a
  folder; the input an existing regular file this user can read (the listing checks of
  :func:`musicdiff.data.screening.listing_skip`); ``--out`` (and ``<out>_<i>`` for ``-n``) not a
  directory, below a writable folder (missing folders are created). A value argparse cannot parse
  is refused the same way, in one line (:func:`_one_line_error`).
* **input audio**: :func:`musicdiff.generation.creative.load_wav`, the shared bad-input policy with the
  thresholds of the ``inputs`` section of ``--params`` (default ``params.yaml`` of the working directory
  when present, as for ``musicdiff fad``; a ``--params`` file given must exist); a refused file
  is ``<file>: <reason> (<detail>)`` (an input is refused, never skipped); a flagged one is used
  with a warning line ``musicdiff <tool>: warning: <file>: flagged ...``.
* **output**: non-finite or empty generated audio is an error and nothing is written. A peak above
  full scale (1.0) is kept (the WAV is float, nothing is clipped); a warning names the file and the
  peak in dBFS, and the sidecar records ``peak``, ``peak_dbfs`` and ``over_full_scale``. All WAVs and
  sidecars are first written to temporary files in the output folder and renamed into place only
  when every one is complete; on any failure the temporary files are removed.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import sys
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
    common.add_argument("--params", default=None,
                        help="params file whose inputs section (the bad-input thresholds) applies to the input "
                             "audio (default: params.yaml of the working directory when present, else the defaults)")

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
        sub.choices[name].error = functools.partial(_one_line_error, sub.choices[name])


def _one_line_error(parser: argparse.ArgumentParser, message: str) -> None:
    """argparse's error for a tool's parser, as one line ``musicdiff <tool>: error: <message>`` on stderr
    (no usage block, like every other error of the tools); exits with status 2."""
    parser.exit(2, f"{parser.prog}: error: {message} (see {parser.prog} -h)\n")


class ArgumentError(ValueError):
    """An argument a creative tool cannot run with; the message names the argument."""


#: Allowed values: attribute, flag, lowest, highest (None: unbounded), lowest allowed, highest allowed.
BOUNDS = (
    ("steps", "--steps", 1, None, True, False),
    ("n", "-n", 1, None, True, False),
    ("timestep", "--timestep", 1, None, True, False),
    ("step", "--step", 0, None, True, False),
    ("seed", "--seed", 0, 2 ** 62, True, False),
    ("eta", "--eta", 0, 1, True, True),
    ("guidance_scale", "--guidance-scale", 0, None, True, False),
    ("seconds", "--seconds", 0, None, False, False),
    ("strength", "--strength", 0, 1, False, False),
    ("context", "--context", 0, 1, False, False),
    ("seam", "--seam", 0, 1, False, False),
    ("start", "--start", 0, None, True, False),
)


def _check_bound(value, flag: str, low, high, low_ok: bool, high_ok: bool) -> None:
    """Raise :class:`ArgumentError` unless ``value`` is finite and within the bounds."""
    v = float(value)
    if math.isfinite(v) and (v >= low if low_ok else v > low) and (high is None or (v <= high if high_ok else v < high)):
        return
    where = f"{'>=' if low_ok else '>'} {low}" if high is None else \
        f"in {'[' if low_ok else '('}{low}, {high}{']' if high_ok else ')'}"
    kind = "a finite number " if isinstance(value, float) else ""
    raise ArgumentError(f"argument {flag}: must be {kind}{where}, got {value}")


def output_paths(out: str | Path, n: int = 1) -> list[Path]:
    """The WAV files a tool writes for ``--out`` ``out``: ``out`` itself, or ``<stem>_<i><suffix>`` (i < n)
    when ``n`` > 1 clips are generated. Each gets a sidecar ``<file>.json``."""
    target = Path(out)
    if n == 1:
        return [target]
    return [target.with_name(f"{target.stem}_{i}{target.suffix or '.wav'}") for i in range(n)]


def _check_output(path: Path) -> None:
    """Raise :class:`ArgumentError` when ``path`` or its sidecar is a directory, or its nearest existing
    folder is not a folder this user can write in (missing folders are created when writing)."""
    for target in (path, path.with_name(f"{path.name}.json")):
        if target.is_dir():
            raise ArgumentError(f"argument --out: {target} is a directory; name a file in it")
    folder = path.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ArgumentError(f"argument --out: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ArgumentError(f"argument --out: cannot write in {folder} (no permission)")


def validate_arguments(args: argparse.Namespace) -> None:
    """Check a tool's parsed arguments before anything is loaded (the module docstring lists the rules).

    Raises:
        ArgumentError: a value out of range (zero, negative, NaN, infinite; see :data:`BOUNDS`), a
            missing model folder or input, an ``--out`` that is a directory or cannot be written, a
            device that is not there; the message names the argument.
        musicdiff.data.audio.BadAudioError: the input is a dangling link, a directory or other
            non-regular file, or not readable (:func:`musicdiff.data.screening.listing_skip`).
    """
    from musicdiff.data.audio import BadAudioError
    from musicdiff.data.screening import listing_skip

    if getattr(args, "seed", None) is not None and not 0 <= args.seed < 2 ** 62:
        raise ArgumentError(f"argument --seed: must be in [0, 2**62), got {args.seed}: a seed is a non-negative "
                            f"integer below 2**62 (torch and NumPy generators refuse negative seeds)")
    for name, flag, *bounds in BOUNDS:
        if getattr(args, name, None) is not None:
            _check_bound(getattr(args, name), flag, *bounds)
    end = getattr(args, "end", None)
    if end is not None and not (math.isfinite(end) and end > args.start):
        raise ArgumentError(f"argument --end: must be a finite number > --start ({args.start}), got {end}")
    if not Path(args.model).is_dir():
        raise ArgumentError(f"argument model: {args.model} is not a folder (a trained model: unet_ema/, scheduler/, "
                            f"representation.json)")
    if getattr(args, "input", None) is not None:
        source = Path(args.input)
        if not source.exists() and not source.is_symlink():
            raise ArgumentError(f"argument input: no such file: {source}")
        skip = listing_skip(source)
        if skip is not None:
            raise BadAudioError(skip.reason, skip.detail, source)
    for path in output_paths(args.out, getattr(args, "n", 1)):
        _check_output(path)
    if args.device is not None:
        import torch

        try:
            device = torch.device(args.device)
        except RuntimeError as error:
            raise ArgumentError(f"argument --device: {error}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ArgumentError(f"argument --device: {args.device} asked for, but torch sees no CUDA device")


def _validate_for_model(args: argparse.Namespace, trained) -> None:
    """The checks that need the loaded model: ``--steps`` and ``--timestep`` against its training timesteps,
    ``--seconds`` at least one sample at its rate. Raises :class:`ArgumentError`."""
    total = trained.noise_scheduler.config.num_train_timesteps
    _check_bound(args.steps, "--steps", 1, total, True, True)
    if getattr(args, "timestep", None) is not None:
        _check_bound(args.timestep, "--timestep", 1, total - 1, True, True)
    if getattr(args, "seconds", None) is not None and round(args.seconds * trained.representation.sample_rate) < 1:
        raise ArgumentError(f"argument --seconds: {args.seconds} s is less than one sample at "
                            f"{trained.representation.sample_rate} Hz")
    if getattr(args, "seconds", None) is not None:
        _check_output_memory(args.seconds, getattr(args, "n", 1), trained.representation.sample_rate)


#: The output may take at most this fraction of the memory available now: sampling holds a few copies of
#: it (the clip being continued, the decoded windows, the joined result) besides the model.
MEMORY_FRACTION = 0.25


def available_memory_bytes() -> int | None:
    """Memory available to this process now, bytes (``MemAvailable`` of /proc/meminfo on Linux, else the
    free physical pages); None when the system does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_output_memory(seconds: float, n: int, rate: int) -> None:
    """Raise :class:`ArgumentError` when ``n`` clips of ``seconds`` s at ``rate`` Hz (float32) would need more
    than :data:`MEMORY_FRACTION` of the available memory; the message names both sizes."""
    needed = int(n) * math.ceil(seconds * rate) * 4
    available = available_memory_bytes()
    if available is None or needed <= MEMORY_FRACTION * available:
        return
    clips = f"{n} clips of " if n > 1 else ""
    raise ArgumentError(f"argument --seconds: {clips}{seconds:g} s at {rate} Hz need {_size(needed)} of float32 "
                        f"audio, more than {MEMORY_FRACTION:.0%} of the {_size(available)} of memory available "
                        f"(sampling holds several copies); ask for at most "
                        f"{MEMORY_FRACTION * available / (4 * rate * int(n)):.0f} s")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _warn(tool: str, line: str) -> None:
    print(f"musicdiff {tool}: warning: {line}", file=sys.stderr)


def run(args) -> int:
    """Run one tool from parsed arguments; writes the WAV(s) and their sidecars, all or nothing.

    Raises :class:`ArgumentError` or ``BadAudioError`` (bad arguments or input, before anything is
    sampled), ``FileNotFoundError`` (a missing ``--params`` file, model file or checkpoint),
    ``musicdiff.generation.trained.CorruptModelError`` (a ``RuntimeError``: a weight file that cannot be
    read), ``ValueError`` (a request the model cannot serve, a bad params file or representation.json,
    non-finite output), ``RuntimeError``
    (an output that cannot be written); ``musicdiff.cli.main`` prints each as one line and returns 2."""
    validate_arguments(args)
    from musicdiff.cli.params import input_policy, load_tool_params

    policy = input_policy(load_tool_params(getattr(args, "params", None))[0])
    import torch

    from musicdiff.generation import creative
    from musicdiff.data.hashing import sha256_file, sha256_tree
    from musicdiff.tracking import library_versions
    from musicdiff.generation.trained import TrainedVariant

    tool = args.command
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_dir = Path(args.model)
    trained = TrainedVariant.load(None, model_dir, step=args.step)
    _validate_for_model(args, trained)
    sampler = creative.SamplerSettings(args.sampler, args.steps, args.eta)
    common = dict(seed=args.seed, sampler=sampler, caption=args.caption, guidance_scale=args.guidance_scale,
                  device=device)
    audio = creative.load_wav(args.input, trained, policy, warn=functools.partial(_warn, tool)) \
        if getattr(args, "input", None) else None
    try:
        if tool == "generate":
            out = creative.generate(trained, args.n, args.seconds, **common)
        elif tool == "vary":
            out = creative.vary(trained, audio, strength=args.strength, timestep=args.timestep, **common)
        elif tool == "inpaint":
            out = creative.inpaint(trained, audio, args.start, args.end, **common)
        elif tool == "continue":
            out = creative.continue_audio(trained, audio, args.seconds, context=args.context, **common)
        else:
            out = creative.loop(trained, audio, seam=args.seam, **common)
    except FloatingPointError as error:
        raise ValueError(f"{error}; nothing written") from error
    clips = out if out.dim() == 2 else out.unsqueeze(0)
    levels = [creative.output_level(clip) for clip in clips]  # ValueError for non-finite audio: nothing written
    paths = output_paths(args.out, len(clips))
    rate = trained.representation.sample_rate
    weights = model_dir / "unet_ema" if args.step is None else model_dir / "checkpoints" / f"step_{args.step}"
    settings = {**{k: v for k, v in vars(args).items() if k not in ("func", "out", "model")},
                "inputs": policy.to_dict()}
    sidecar = {
        "tool": tool, "settings": settings, "model": str(model_dir), "family": trained.family,
        "model_weights_sha256": sha256_tree(sorted(p for p in weights.rglob("*") if p.is_file())),
        "input_sha256": sha256_file(args.input) if getattr(args, "input", None) else None,
        "sample_rate": rate, "resolution": trained.representation.resolution,
        "device": device, "versions": library_versions(), "python": platform.python_version(),
        "text_encoder": (trained.conditioning or {}).get("text_encoder"),
    }
    records = [dict(sidecar, seconds=round(clip.shape[-1] / rate, 4), **level) for clip, level in zip(clips, levels)]
    _write_outputs(paths, clips, records, trained)
    for path, record in zip(paths, records):
        if record["over_full_scale"]:
            _warn(tool, f"{path}: peak {record['peak']:.4g} ({record['peak_dbfs']:+.1f} dBFS) is above full scale; "
                        f"kept in the float WAV, not clipped (scale it down before converting to fixed point)")
        print(f"wrote {path} ({record['seconds']:.2f} s, {trained.family} model, {tool})")
    return 0


def _write_outputs(paths: list[Path], clips, records: list[dict], trained) -> None:
    """Write every clip (float32 WAV) and its sidecar JSON to temporary files beside them, then rename all
    into place; on any failure the temporary files are removed and nothing new is left. Raises
    ``RuntimeError`` naming the file when one cannot be written (``OSError``, libsndfile's error)."""
    import soundfile

    from musicdiff.generation import creative

    staged: list[tuple[Path, Path]] = []
    try:
        for path, clip, record in zip(paths, clips, records):
            text = json.dumps(record, indent=1, sort_keys=True, default=str)
            sidecar = path.with_name(f"{path.name}.json")
            staged.append((creative.stage_wav(path, clip, trained), path))
            staged.append((creative.stage_file(sidecar, lambda tmp: tmp.write_text(text)), sidecar))
        for tmp, final in staged:
            os.replace(tmp, final)
    except (OSError, soundfile.SoundFileError) as error:
        where = getattr(error, "filename", None) or paths[0]
        raise RuntimeError(f"cannot write {where}: {getattr(error, 'strerror', None) or error}") from error
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
