"""The study's creative tools on any trained checkpoint: generate, vary, inpaint, continue, loop.

All of them run one reverse diffusion in the variant's own space (scaled log-mel, VAE latent or
waveform; ``musicdiff.generation.representation``) and decode the result:

* **generate**: the ordinary reverse chain from noise; clips longer than one model window are
  continued window by window.
* **vary** (variations, the study's partial noising to T = 950, 750, 500, 250): the source is
  noised to timestep T with the forward process ``x_T = sqrt(abar_T) x_0 + sqrt(1 - abar_T) eps``
  (Ho et al. 2020, eq. 4) and denoised from there (SDEdit, Meng et al. 2022, §3); ``strength`` is
  ``T / num_train_timesteps``.
* **inpaint** (regenerate a time range): at every step the region to keep is replaced by the source
  noised to the step's timestep, the region to regenerate comes from the model (the replacement
  method of Song et al. 2021, "Score-Based Generative Modeling through SDEs", appendix G; teticio's
  audio-diffusion masks spectrogram columns the same way). The last step keeps the source exactly.
* **continue** (extend by N seconds; outpainting as in seed 001): a window whose first part is the
  end of the audio so far is inpainted, its new part appended, and so on.
* **loop** (seamless loop): the window is rolled by half its length, so its end and start meet in
  the middle; a band around that seam is inpainted and the window rolled back.

Audio in and out is mono float at the model's rate. Decoded audio replaces only what was
regenerated: outside it the input samples are kept exactly, joined with a raised-cosine crossfade
of ``CROSSFADE_S`` seconds (Griffin-Lim does not keep the source's phase, so a hard cut would click).

Bad input and output (README "Creative tools"; the file functions live in
:mod:`musicdiff.generation.creative_io` and are re-exported here):

* **input**: :func:`load_wav` reads a file through the shared bad-input policy
  (:func:`musicdiff.data.screening.screen_file`, one model window at least): a file the policy would
  skip (silent, DC only, non-finite or over-range samples, below the minimum rate, anti-phase stereo,
  too short, unreadable, a directory, ...) is refused with ``BadAudioError`` naming the file and the
  reason; a flagged file (clipped, DC offset, multichannel, over full scale, band limited) is used
  and the flags are reported.
* **output**: :func:`save_wav` writes through a temporary file in the same folder and ``os.replace``
  (:func:`stage_file`: the temporary file is removed on any failure), so no partial WAV is left.
  Non-finite or empty audio is refused. A peak above full scale is not clipped: the WAV is float and
  keeps it, and :func:`output_level` measures it (the CLI warns and records it in the sidecar).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from musicdiff.generation.creative_io import load_wav, output_level, save_wav, stage_file, stage_wav  # noqa: F401  (re-exported)
from musicdiff.generation.sampling import TextCondition, predict
from musicdiff.generation.trained import TrainedVariant

CROSSFADE_S = 0.02  # crossfade at every join of kept and generated audio (seconds)


@dataclass(frozen=True)
class SamplerSettings:
    """Which sampler runs the reverse chain: ``scheduler`` ddim | ddpm | dpmsolver++, its number of
    steps over the full chain (a variation from T runs the steps at or below T), DDIM's ``eta``."""

    scheduler: str = "ddim"
    num_inference_steps: int = 50
    eta: float = 0.0


def start_timestep(trained: TrainedVariant, strength: float | None = None, timestep: int | None = None) -> int:
    """The timestep T a variation starts from: ``timestep`` itself, or ``round(strength * num_train_timesteps)``
    (strength 0.95 -> T = 950 of 1000). Raises ``ValueError`` unless exactly one is given and T lies
    in [1, num_train_timesteps - 1]."""
    total = trained.noise_scheduler.config.num_train_timesteps
    if (strength is None) == (timestep is None):
        raise ValueError("give exactly one of strength (0-1) and start timestep")
    t = int(timestep) if timestep is not None else round(float(strength) * total)
    if not 1 <= t <= total - 1:
        raise ValueError(f"start timestep {t} is outside [1, {total - 1}] (strength = T / {total})")
    return t


@torch.inference_mode()
def denoise(trained: TrainedVariant, shape: tuple[int, ...], seed: int, sampler: SamplerSettings = SamplerSettings(),
            source: torch.Tensor | None = None, from_timestep: int | None = None, keep: torch.Tensor | None = None,
            condition: TextCondition | None = None, device: str = "cpu", progress: bool = False) -> torch.Tensor:
    """One reverse chain in the variant's space, returning tensors of ``shape`` (batch, channels, ..., time).

    ``source`` (same shape) is the clip being varied or inpainted. ``from_timestep`` T starts from the
    source noised to T (only the sampler's timesteps <= T run); otherwise the chain starts from noise.
    ``keep`` (broadcastable to ``shape``, 1 = keep) holds the source in those positions: after every
    step they are replaced by the source noised to the next timestep, and by the source itself at the
    end. Noise is drawn from ``torch.Generator().manual_seed(seed)``. Raises ``ValueError`` when
    ``from_timestep``/``keep`` come without a source or no sampler timestep lies at or below T, and
    ``FloatingPointError`` for non-finite output.
    """
    if (from_timestep is not None or keep is not None) and source is None:
        raise ValueError("a variation or inpainting needs the source tensors")
    scheduler = trained.sampler(sampler.scheduler)
    scheduler.set_timesteps(sampler.num_inference_steps, device=device)
    timesteps = [int(t) for t in scheduler.timesteps]
    begin = 0
    if from_timestep is not None:
        below = [i for i, t in enumerate(timesteps) if t <= from_timestep]
        if not below:
            raise ValueError(f"no {sampler.scheduler} timestep at or below {from_timestep}: {timesteps[-1]} is the lowest")
        begin = below[0]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(begin)
    generator = torch.Generator().manual_seed(seed)
    model = trained.model.eval().to(device)
    noise = torch.randn(shape, generator=generator).to(device)
    if source is not None:
        source = source.to(device).float()
        if tuple(source.shape) != tuple(shape):
            raise ValueError(f"source of shape {tuple(source.shape)}, expected {tuple(shape)}")
    if from_timestep is not None:
        x = trained.noise_scheduler.add_noise(source, noise, torch.tensor([timesteps[begin]]))
    else:
        x = noise * scheduler.init_noise_sigma
    keep = None if keep is None else keep.to(device).float()
    step_kwargs = {"eta": sampler.eta} if "eta" in scheduler.step.__code__.co_varnames else {}
    run = timesteps[begin:]
    for i, t in enumerate(tqdm(run, desc=f"{sampler.scheduler} from t={run[0]}", disable=not progress)):
        if keep is not None and i == 0 and from_timestep is None:  # the kept part starts as the noised source
            x = keep * trained.noise_scheduler.add_noise(source, x, torch.tensor([t])) + (1 - keep) * x
        model_input = scheduler.scale_model_input(x, t)
        output = predict(model, model_input, torch.tensor(t, device=device), condition)
        x = scheduler.step(output, t, x, generator=generator, **step_kwargs).prev_sample
        if keep is not None:
            if i + 1 < len(run):
                fresh = torch.randn(shape, generator=generator).to(device)
                known = trained.noise_scheduler.add_noise(source, fresh, torch.tensor([run[i + 1]]))
            else:
                known = source
            x = keep * known + (1 - keep) * x
    if not torch.isfinite(x).all():
        raise FloatingPointError("non-finite values in the generated tensors")
    return x.float().cpu()


def _condition(trained: TrainedVariant, n: int, caption: str | None, guidance_scale: float | None):
    if trained.conditioning is None:
        if caption:
            raise ValueError(f"the {trained.family} variant is not text-conditioned; it takes no caption")
        return None
    return trained.text_condition([caption or ""] * n, guidance_scale)


def _fade(n: int) -> torch.Tensor:
    """Raised-cosine fade-in of ``n`` samples, from 0 to 1."""
    return 0.5 - 0.5 * torch.cos(torch.linspace(0.0, math.pi, n + 2)[1:-1])


def _splice(kept: torch.Tensor, generated: torch.Tensor, start: int, end: int, fade: int) -> torch.Tensor:
    """``kept`` with samples [start, end) taken from ``generated`` (same length), crossfaded over ``fade``
    samples on each side inside the range."""
    out = kept.clone()
    out[start:end] = generated[start:end]
    for a, b, rising in ((start, min(start + fade, end), True), (max(end - fade, start), end, False)):
        if b > a and (a > 0 if rising else b < len(kept)):
            w = _fade(b - a) if rising else 1 - _fade(b - a)
            out[a:b] = (1 - w) * kept[a:b] + w * generated[a:b]
    return out


def _window_audio(trained: TrainedVariant, audio: torch.Tensor, offset: int) -> tuple[torch.Tensor, int]:
    """One model window of ``audio`` from sample ``offset``: the tensors (1, ...) and their length in samples."""
    enc = trained.encoder
    length = enc.samples_for_units(enc.units)
    if audio.shape[-1] < length:
        raise ValueError(f"audio of {audio.shape[-1] / trained.representation.sample_rate:.2f} s is shorter than "
                         f"one model window ({length / trained.representation.sample_rate:.2f} s)")
    window = audio[offset:offset + length]
    tensors = enc(window.unsqueeze(0))[..., :enc.units]
    return tensors, length


def generate(trained: TrainedVariant, n: int = 1, seconds: float | None = None, seed: int = 0,
             sampler: SamplerSettings = SamplerSettings(), caption: str | None = None,
             guidance_scale: float | None = None, device: str = "cpu", progress: bool = True) -> torch.Tensor:
    """``n`` new clips, audio (n, samples) at the model's rate: one model window each, or ``seconds`` long
    (longer clips are continued window by window with :func:`continue_audio`). A text-conditioned
    model takes ``caption`` and ``guidance_scale``."""
    enc = trained.encoder
    shape = (n, *trained.representation.shape)
    x = denoise(trained, shape, seed, sampler, condition=_condition(trained, n, caption, guidance_scale),
                device=device, progress=progress)
    audio = enc.decode(x)
    if seconds is None or seconds * trained.representation.sample_rate <= audio.shape[-1]:
        return audio if seconds is None else audio[:, : round(seconds * trained.representation.sample_rate)]
    extra = seconds - audio.shape[-1] / trained.representation.sample_rate
    return torch.stack([continue_audio(trained, clip, extra, seed=seed + 1 + i, sampler=sampler, caption=caption,
                                       guidance_scale=guidance_scale, device=device, progress=progress)
                        for i, clip in enumerate(audio)])


def vary(trained: TrainedVariant, audio: torch.Tensor, strength: float | None = None, timestep: int | None = None,
         seed: int = 0, sampler: SamplerSettings = SamplerSettings(), caption: str | None = None,
         guidance_scale: float | None = None, overlap_s: float = 0.1, device: str = "cpu",
         progress: bool = True) -> torch.Tensor:
    """A variation of ``audio`` (samples,) at the model's rate. Model windows overlapping by ``overlap_s``
    seconds cover the audio; all of them are noised to the start timestep (``strength`` or ``timestep``,
    :func:`start_timestep`) and denoised as one batch (noise from one generator seeded with ``seed``),
    and neighbours are crossfaded over the overlap. Returns the audio the windows cover (a tail shorter
    than one window step is dropped). Raises ``ValueError`` for audio shorter than one window."""
    t = start_timestep(trained, strength, timestep)
    source, length, overlap = _windows(trained, audio, overlap_s)
    x = denoise(trained, tuple(source.shape), seed, sampler, source=source, from_timestep=t,
                condition=_condition(trained, len(source), caption, guidance_scale), device=device, progress=progress)
    return _overlap_join(list(trained.encoder.decode(x)[:, :length]), overlap)


def round_trip(trained: TrainedVariant, audio: torch.Tensor, overlap_s: float = 0.1) -> torch.Tensor:
    """``audio`` (samples,) encoded and decoded in the windows :func:`vary` uses, without any diffusion:
    what the representation alone (Griffin-Lim; the VAE for latents) does to a clip, the floor of
    every variation's distance to its source. The identity for waveform models."""
    source, length, overlap = _windows(trained, audio, overlap_s)
    return _overlap_join(list(trained.encoder.decode(source)[:, :length]), overlap)


def _windows(trained: TrainedVariant, audio: torch.Tensor, overlap_s: float) -> tuple[torch.Tensor, int, int]:
    """The model windows covering ``audio`` with ``overlap_s`` seconds of overlap: their tensors
    (windows, ...), the window length and the overlap in samples."""
    enc = trained.encoder
    length = enc.samples_for_units(enc.units)
    overlap = min(int(overlap_s * trained.representation.sample_rate), length // 2)
    step = length - overlap
    windows = 1 + (audio.shape[-1] - length) // step if audio.shape[-1] >= length else 0
    if windows == 0:
        _window_audio(trained, audio, 0)  # raises the error naming both lengths
    return torch.cat([_window_audio(trained, audio, i * step)[0] for i in range(windows)]), length, overlap


def _overlap_join(pieces: list[torch.Tensor], overlap: int) -> torch.Tensor:
    """Concatenate clips that overlap by ``overlap`` samples, crossfading each overlap."""
    out = pieces[0]
    for piece in pieces[1:]:
        if overlap == 0:
            out = torch.cat([out, piece])
            continue
        w = _fade(overlap)
        out = torch.cat([out[:-overlap], (1 - w) * out[-overlap:] + w * piece[:overlap], piece[overlap:]])
    return out


def inpaint(trained: TrainedVariant, audio: torch.Tensor, start_s: float, end_s: float, seed: int = 0,
            sampler: SamplerSettings = SamplerSettings(), caption: str | None = None,
            guidance_scale: float | None = None, device: str = "cpu", progress: bool = True) -> torch.Tensor:
    """``audio`` (samples,) with the time range [start_s, end_s) seconds regenerated to fit what surrounds it.

    The model window is placed so that the range sits in its middle (clamped to the audio); the window's
    tensors outside the range are kept (:func:`denoise` with ``keep``), those inside are generated.
    The returned audio has the input's length; outside the range it is the input, sample for sample,
    and the decoded range is crossfaded in over ``CROSSFADE_S`` at each side. Raises ``ValueError``
    when the range is empty, outside the audio, or longer than the model window minus one step.
    """
    rate = trained.representation.sample_rate
    enc = trained.encoder
    length = enc.samples_for_units(enc.units)
    start, end = round(start_s * rate), round(end_s * rate)
    if not 0 <= start < end <= audio.shape[-1]:
        raise ValueError(f"range [{start_s}, {end_s}) s is empty or outside the audio (0-{audio.shape[-1] / rate:.2f} s)")
    if end - start > length - 2 * enc.samples_per_unit:
        raise ValueError(f"range of {(end - start) / rate:.2f} s is too long for one model window "
                         f"({length / rate:.2f} s): keep some context on each side")
    offset = min(max(0, (start + end) // 2 - length // 2), audio.shape[-1] - length)
    source, _ = _window_audio(trained, audio, offset)
    first = (start - offset) // enc.samples_per_unit
    last = -(-(end - offset) // enc.samples_per_unit)
    keep = torch.ones_like(source)
    keep[..., first:last + 1] = 0.0
    x = denoise(trained, tuple(source.shape), seed, sampler, source=source, keep=keep,
                condition=_condition(trained, 1, caption, guidance_scale), device=device, progress=progress)
    generated = audio.clone()
    decoded = enc.decode(x)[0]
    generated[offset:offset + len(decoded)] = decoded
    return _splice(audio, generated, start, end, int(CROSSFADE_S * rate))


def continue_audio(trained: TrainedVariant, audio: torch.Tensor, seconds: float, seed: int = 0,
                   sampler: SamplerSettings = SamplerSettings(), context: float = 0.5, caption: str | None = None,
                   guidance_scale: float | None = None, device: str = "cpu", progress: bool = True) -> torch.Tensor:
    """``audio`` (samples,) followed by ``seconds`` of continuation (outpainting, seed 001).

    The last model window of the audio is the prompt. Each round inpaints a window whose first
    ``context`` fraction is the end of what exists so far and appends its new part (round ``i`` uses
    seed ``seed + i``); the new tensors are decoded together with the prompt window and the first
    decoded new sample follows the input's last one, with the input's final ``CROSSFADE_S`` crossfaded
    into the decoded prompt. The input is returned unchanged before that crossfade. Raises
    ``ValueError`` for audio shorter than one window, ``seconds <= 0`` or ``context`` outside (0, 1).
    """
    if seconds <= 0:
        raise ValueError("seconds to continue must be positive")
    if not 0 < context < 1:
        raise ValueError("context is the fraction of a window kept from what exists; it must lie in (0, 1)")
    rate = trained.representation.sample_rate
    enc = trained.encoder
    units = enc.units
    prompt, length = _window_audio(trained, audio, max(0, audio.shape[-1] - enc.samples_for_units(units)))
    kept = max(1, round(context * units))
    new_units = units - kept
    wanted = round(seconds * rate)
    rounds = math.ceil((wanted + enc.samples_per_unit) / (new_units * enc.samples_per_unit))
    condition = _condition(trained, 1, caption, guidance_scale)
    so_far = prompt
    keep = torch.zeros_like(prompt)
    keep[..., :kept] = 1.0
    for i in range(rounds):
        source = torch.zeros_like(prompt)
        source[..., :kept] = so_far[..., -kept:]
        x = denoise(trained, tuple(prompt.shape), seed + i, sampler, source=source, keep=keep, condition=condition,
                    device=device, progress=progress)
        so_far = torch.cat([so_far, x[..., kept:]], dim=-1)
    decoded = enc.decode(so_far)[0]
    prompt_samples = length  # the prompt window's samples: the last ones of the input
    tail = decoded[prompt_samples:prompt_samples + wanted]
    fade = min(int(CROSSFADE_S * rate), audio.shape[-1], prompt_samples)
    head = audio.clone()
    if fade:
        w = _fade(fade)
        head[-fade:] = (1 - w) * audio[-fade:] + w * decoded[prompt_samples - fade:prompt_samples]
    return torch.cat([head, tail])


def loop(trained: TrainedVariant, audio: torch.Tensor | None = None, seam: float = 0.25, seed: int = 0,
         sampler: SamplerSettings = SamplerSettings(), caption: str | None = None,
         guidance_scale: float | None = None, device: str = "cpu", progress: bool = True) -> torch.Tensor:
    """A seamless loop of one model window: of ``audio``'s first window, or of a new clip when ``audio``
    is None. Returns audio (samples,) whose end leads into its start (play it repeated).

    The window's tensors are rolled by half their length, so the end meets the start in the middle;
    a band of ``seam`` (fraction of the window) around that seam is inpainted, and the result rolled
    back. Decoding then runs on three copies in a row and keeps the middle one, so Griffin-Lim sees
    the loop's wrap as ordinary context; its last ``CROSSFADE_S`` is crossfaded into what precedes
    the middle copy, which is what leads into its first sample. Raises ``ValueError`` for ``seam``
    outside (0, 1) or audio shorter than a window.
    """
    if not 0 < seam < 1:
        raise ValueError("seam is the fraction of the window regenerated around the join; it must lie in (0, 1)")
    enc = trained.encoder
    units = enc.units
    condition = _condition(trained, 1, caption, guidance_scale)
    if audio is None:
        source = denoise(trained, (1, *trained.representation.shape), seed, sampler, condition=condition,
                         device=device, progress=progress)
    else:
        source, _ = _window_audio(trained, audio, 0)
    half = units // 2
    rolled = torch.roll(source, half, dims=-1)
    band = max(1, round(seam * units / 2))
    keep = torch.ones_like(rolled)
    keep[..., half - band:half + band] = 0.0
    x = denoise(trained, tuple(rolled.shape), seed + 1, sampler, source=rolled, keep=keep, condition=condition,
                device=device, progress=progress)
    looped = torch.roll(x, -half, dims=-1)
    period = units * enc.samples_per_unit
    decoded = enc.decode(torch.cat([looped] * 3, dim=-1))[0]
    middle = decoded[period:2 * period].clone()
    fade = min(int(CROSSFADE_S * trained.representation.sample_rate), period // 4)
    if fade:
        w = _fade(fade)
        middle[-fade:] = (1 - w) * middle[-fade:] + w * decoded[period - fade:period]
    return middle
