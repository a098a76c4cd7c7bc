"""A folder of audio as one set to evaluate: listed and screened by the bad-input policy under a protocol.
The one screening entry of ``musicdiff fad`` and the pipeline's scoring stages (``pipelines/evaluation.py``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["screen_folder"]


def screen_folder(folder, protocol, name: str, policy=None, evaluated: bool = True):
    """Every audio file under ``folder`` listed (:func:`musicdiff.data.screening.find_audio_files`: dangling
    links, folders named like audio and unreadable files are skips of the set) and screened under
    ``protocol`` with ``policy`` (``InputPolicy``, default thresholds when None); ``evaluated`` screens it as
    an evaluated set (generated clips, a system's files), False as a reference set.

    Returns ``musicdiff.evaluation.engine.ScreenedFiles`` (its ``log`` unchecked: the caller applies
    ``max_skip_fraction`` when it chooses).

    Raises:
        FileNotFoundError: ``folder`` is not a folder, or holds no audio file at all (the message names the
            set and the folder).
        musicdiff.data.screening.UnexpectedInputError: a file raised an exception the policy does not know.
    """
    from musicdiff.data.screening import find_audio_files
    from musicdiff.evaluation.engine import screen_files

    folder = Path(folder)
    files, listing = find_audio_files(folder)
    if not files and not listing:
        raise FileNotFoundError(f"{name}: no audio files under {folder}")
    return screen_files(files, protocol, name, policy, listing_skips=listing, evaluated=evaluated)
