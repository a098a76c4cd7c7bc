"""A pip-only set: Bach chorales from the music21 corpus rendered with a General MIDI SoundFont.

For a machine without apt (or without Debian's archive) the suite still needs real music that nobody
here wrote. music21's corpus holds 408 Bach chorale encodings (``corpus/bach/*.mxl``); each is
written to MIDI by music21, trimmed (MIDI that music21 writes can carry meta events long after the
last note, which a renderer would turn into minutes of silence), and rendered by midirenderer (a
Rust SoundFont synthesiser) with ``TimGM6mb.sf2``, the General MIDI SoundFont that the pretty_midi
wheel ships. Output: 48 kHz stereo 16-bit audio, kept as FLAC. Nothing is downloaded beyond the pip
packages (extra ``rendered`` of this project: music21, pretty_midi, midirenderer).

Spec form (``datasets.<name>.source``)::

    {rendered: bach-chorales, limit: 20}   # limit: the first N chorales by file name (default all)

Rendering depends only on the package versions (recorded), so it is reproducible.
"""

from __future__ import annotations

import importlib.util
import io
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import soundfile as sf
from tqdm.auto import tqdm

from musicdiff.data.hashing import sha256_file

__all__ = ["RENDERED_SETS", "RenderedFile", "normalise_rendered_spec", "render_bach_chorales", "trim_midi"]

RENDERED_SETS = ("bach-chorales",)
_PACKAGES = ("music21", "pretty_midi", "midirenderer")


@dataclass(frozen=True)
class RenderedFile:
    """One rendered track."""

    path: Path  # the FLAC written
    dest: str  # path relative to the set's audio/<set>/ folder
    score: str  # the score's path inside the music21 package, e.g. "corpus/bach/bwv1.6.mxl"
    score_sha256: str


def normalise_rendered_spec(spec: dict) -> dict:
    """Canonical ``{rendered: NAME, limit: int | None}``. Raises ``ValueError`` for anything else."""
    if spec.get("rendered") not in RENDERED_SETS:
        raise ValueError(f"unknown rendered set {spec.get('rendered')!r}; known: {list(RENDERED_SETS)}")
    extra = set(spec) - {"rendered", "limit"}
    if extra:
        raise ValueError(f"rendered set {spec['rendered']}: unknown keys {sorted(extra)}; allowed: ['limit']")
    limit = spec.get("limit")
    if limit is not None and (int(limit) != limit or limit < 1):
        raise ValueError(f"rendered set {spec['rendered']}: limit must be a positive integer, got {limit!r}")
    return {"rendered": spec["rendered"], "limit": None if limit is None else int(limit)}


def _require() -> dict[str, str]:
    """Versions of the packages rendering needs; ``ImportError`` naming the pip extra if one is missing."""
    versions = {}
    for name in _PACKAGES:
        if importlib.util.find_spec(name) is None:
            raise ImportError(f"the rendered Bach chorales need {', '.join(_PACKAGES)}; "
                              f"{name} is not installed: pip install -c requirements.lock -e '.[rendered]'")
        versions[name] = metadata.version(name)
    return versions


def _package_dir(name: str) -> Path:
    return Path(list(importlib.util.find_spec(name).submodule_search_locations)[0])


def trim_midi(midi_bytes: bytes, tail_beats: float = 1.0) -> bytes:
    """Drop every MIDI event later than the last note event plus ``tail_beats``, and end every track
    there, so a renderer stops with the music (the tail leaves room for the notes' release).

    Args:
        midi_bytes: a Standard MIDI File.
        tail_beats: quarter notes kept after the last note event.

    Returns:
        the trimmed Standard MIDI File (same format, resolution and tracks).
    """
    import mido

    mid = mido.MidiFile(file=io.BytesIO(midi_bytes))
    last = 0
    for track in mid.tracks:
        t = 0
        for msg in track:
            t += msg.time
            if msg.type in ("note_on", "note_off"):
                last = max(last, t)
    end = last + int(round(tail_beats * mid.ticks_per_beat))
    for i, track in enumerate(mid.tracks):
        kept, t, t_kept = mido.MidiTrack(), 0, 0
        for msg in track:
            t += msg.time
            if msg.type == "end_of_track" or t > end:
                continue
            kept.append(msg.copy(time=t - t_kept))
            t_kept = t
        kept.append(mido.MetaMessage("end_of_track", time=end - t_kept))
        mid.tracks[i] = kept
    out = io.BytesIO()
    mid.save(file=out)
    return out.getvalue()


def render_bach_chorales(out_dir: str | os.PathLike, limit: int | None = None, progress: bool = True
                         ) -> tuple[list[RenderedFile], dict]:
    """Render the music21 corpus's Bach chorales to FLAC files in ``out_dir``.

    Args:
        out_dir: folder for ``<score stem>.flac`` files (created).
        limit: render only the first ``limit`` chorales, sorted by file name (``None``: all 408).
        progress: show a tqdm progress bar.

    Returns:
        ``(files, record)``: the rendered files (sorted by ``dest``), and a record for the set's
        summary: package versions, the SoundFont's path inside pretty_midi and SHA-256, sample
        rate, licences and the number of chorales.

    Raises:
        ImportError: music21, pretty_midi or midirenderer is not installed.
        RuntimeError: the corpus holds no chorale (a music21 installed without its corpus).
    """
    versions = _require()
    import midirenderer
    from music21 import corpus
    from music21.midi.translate import streamToMidiFile

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    m21 = _package_dir("music21")
    scores = sorted((p for p in corpus.getComposer("bach") if p.suffix == ".mxl"), key=lambda p: p.name)
    if not scores:
        raise RuntimeError("music21's corpus holds no Bach chorale (.mxl); a music21 without its corpus?")
    if limit is not None:
        scores = scores[:limit]
    sf2 = _package_dir("pretty_midi") / "TimGM6mb.sf2"
    sf2_bytes = sf2.read_bytes()
    files, rates = [], set()
    for score in tqdm(scores, desc="render chorales", unit="score", disable=not progress):
        midi = streamToMidiFile(corpus.parse(score)).writestr()
        wav = midirenderer.render_wave_from(sf2_bytes, trim_midi(midi))
        x, sr = sf.read(io.BytesIO(wav), dtype="int16", always_2d=True)
        rates.add(int(sr))
        target = out_dir / f"{score.stem}.flac"
        sf.write(str(target), x, sr, format="FLAC", subtype="PCM_16")
        files.append(RenderedFile(target, target.name, Path(score).relative_to(m21).as_posix(), sha256_file(score)))
    record = {
        "title": "Bach chorales (music21 corpus) rendered with TimGM6mb.sf2",
        "url": "https://pypi.org/project/music21/",
        "versions": versions,
        "soundfont": {"path_in_package": "pretty_midi/TimGM6mb.sf2", "sha256": sha256_file(sf2)},
        "renderer": "midirenderer.render_wave_from (MIDI written by music21, trimmed after the last note)",
        "sample_rate": sorted(rates)[0] if len(rates) == 1 else sorted(rates),
        "n_scores": len(files),
        "licence": "scores: music21 corpus (see music21/corpus/license.txt; Bach's chorales are public domain); "
                   "SoundFont TimGM6mb.sf2: not stated in the pretty_midi wheel (pretty_midi: MIT)",
    }
    return sorted(files, key=lambda f: f.dest), record

