"""Online reference sets of the seed study: real loaders for data that lives on Zenodo and the HF hub.

A set spec (``datasets.<name>.source`` in ``params.yaml``) of the form ``{online: NAME, ...}`` goes
through :func:`musicdiff.data.sources.download_set` like any other source (same ``manifest.csv``,
``manifest.json`` summary and prepare step). Known names (:data:`ONLINE_SETS`):

``song-describer``
    Song Describer Dataset (Manco et al. 2023; ~706 MTG-Jamendo recordings of about 2 minutes,
    1,106 captions), Zenodo record 10072001: ``song_describer.csv`` (one row per caption; column
    ``path`` names the recording) and ``audio.zip`` (MP3s). Options: ``folder`` (a folder holding
    ``song_describer.csv`` and the recordings, unzipped or as ``audio.zip``: nothing is downloaded),
    ``valid_only`` (only recordings with a caption in the validated subset, column
    ``is_valid_subset``; default false).

``musiccaps``
    MusicCaps (Agostinelli et al. 2023; 5,521 ten-second YouTube segments with captions), dataset
    ``google/MusicCaps`` on the HF hub: ``musiccaps-public.csv`` with ``ytid``, ``start_s``,
    ``end_s``. The audio is on YouTube, which this suite does not fetch: ``folder`` is *required*
    and holds the user's clips, one file per video named ``<ytid>.<ext>`` (any audio format
    libsndfile reads). ``clipped``: ``true`` (each file is already the segment), ``false`` (each
    file is the whole video: the loader cuts ``[start_s, end_s)``), or ``auto`` (default: cut when the
    file is long enough to hold ``end_s`` and longer than the segment by over 1 s). ``csv``: a local
    copy of ``musiccaps-public.csv`` (else it is taken from ``folder`` if there, else from the hub).
    ``subset``: ``all`` (default), ``balanced`` (``is_balanced_subset``) or ``audioset_eval``
    (``is_audioset_eval``). Videos without a file are counted (``n_missing``), not an error, since
    many MusicCaps videos are no longer online; no match at all is an error.

``tiny-audio-diffusion-drums``
    ``crlandsc/tiny-audio-diffusion-drums`` on the HF hub (about 1.5k drum one-shots in
    ``hihat/``, ``kicks/``, ``percussion/``, ``snares/``; CC-BY-NC-4.0). Options: ``folder`` (a
    local copy: every ``*.wav`` under it), ``revision`` (a commit of the hub repo; default ``main``,
    the resolved commit is recorded).

Every spec also takes ``timeout_s`` (network timeout in seconds, default 20). Without network a
loader fails within about that time with :class:`OnlineSourceError`, naming the set, its URL and
the ``folder`` option; with ``HF_HUB_OFFLINE=1`` the hub loaders only look in the local HF cache.
What was fetched (URLs, revisions, file checksums, match counts, licence) is returned as a record
that :func:`~musicdiff.data.sources.download_set` keeps as ``source.json`` and in the summary.

This module holds the sets (their names, URLs, licences, how to provide them by hand), their specs and
the two hosts they come from (the HF hub, Zenodo); ``musicdiff.data.online_loaders`` holds one loader a
set and :func:`~musicdiff.data.online_loaders.fetch_online`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ONLINE_SETS", "OnlineFile", "OnlineSet", "OnlineSourceError", "normalise_online_spec", "unavailable",
           "folder_option", "audio_files", "hf_fetch", "zenodo_record", "zenodo_file", "md5"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".m4a")
DEFAULT_TIMEOUT_S = 20.0
CHUNK = 1 << 20  # bytes read or copied at a time


class OnlineSourceError(RuntimeError):
    """An online set could not be obtained (no network, missing files, nothing matched)."""


@dataclass(frozen=True)
class OnlineSet:
    """What is known about one online set before fetching it."""

    name: str
    title: str
    url: str  # human-facing page
    licence: str  # as declared by the publisher (fetched metadata may refine it)
    options: tuple[str, ...]  # spec keys beside online/folder/timeout_s
    by_hand: str  # how to provide the files without this loader


ONLINE_SETS: dict[str, OnlineSet] = {
    s.name: s
    for s in (
        OnlineSet(
            "song-describer", "Song Describer Dataset", "https://zenodo.org/records/10072001",
            "captions: see the Zenodo record; audio: per-recording Creative Commons licences (audio_licenses.txt)",
            ("valid_only",),
            "download song_describer.csv and audio.zip (and audio_licenses.txt) from that page, put them in one "
            "folder (audio.zip may stay zipped) and declare the set as {online: song-describer, folder: FOLDER}",
        ),
        OnlineSet(
            "musiccaps", "MusicCaps", "https://huggingface.co/datasets/google/MusicCaps",
            "CC-BY-SA-4.0 (captions and metadata); audio: the YouTube uploaders' terms",
            ("csv", "clipped", "subset", "revision"),
            "download musiccaps-public.csv from that page, obtain the audio of the listed YouTube videos yourself "
            "(one file per video, named <ytid>.<ext>), put both in one folder and declare the set as "
            "{online: musiccaps, folder: FOLDER}",
        ),
        OnlineSet(
            "tiny-audio-diffusion-drums", "tiny-audio-diffusion drum samples",
            "https://huggingface.co/datasets/crlandsc/tiny-audio-diffusion-drums", "CC-BY-NC-4.0",
            ("revision",),
            "download the repository's folders (hihat, kicks, percussion, snares) from that page, e.g. with "
            "`git clone` or `huggingface-cli download --repo-type dataset`, and declare the set as "
            "{online: tiny-audio-diffusion-drums, folder: FOLDER}",
        ),
    )
}


@dataclass(frozen=True)
class OnlineFile:
    """One audio file an online loader produced, ready to be copied into the set."""

    src: Path  # the file to copy (in the user's folder, the HF cache or the work folder)
    dest: str  # path relative to the set's audio/<set>/ folder (POSIX)
    path_in_source: str  # where it is in the published data ("audio.zip!audio/00/x.mp3", "<ytid>@30-40")
    source_sha256: str  # SHA-256 of the archive it came from ("" for a loose file)


# --------------------------------------------------------------------------------------- specs


def normalise_online_spec(spec: dict) -> dict:
    """The canonical form of an ``{online: NAME, ...}`` spec (absolute folder, defaults filled in).

    Raises:
        ValueError: unknown set name or option, or a bad option value.
    """
    name = spec.get("online")
    if name not in ONLINE_SETS:
        raise ValueError(f"unknown online set {name!r}; known: {sorted(ONLINE_SETS)}")
    known = {"online", "folder", "timeout_s", *ONLINE_SETS[name].options}
    extra = set(spec) - known
    if extra:
        raise ValueError(f"online set {name}: unknown keys {sorted(extra)}; allowed: {sorted(known)}")
    out: dict = {"online": name}
    out["folder"] = str(Path(spec["folder"]).expanduser().resolve()) if spec.get("folder") else None
    out["timeout_s"] = float(spec.get("timeout_s", DEFAULT_TIMEOUT_S))
    if name == "song-describer":
        out["valid_only"] = bool(spec.get("valid_only", False))
    elif name == "musiccaps":
        clipped = spec.get("clipped", "auto")
        if clipped not in (True, False, "auto"):
            raise ValueError(f"musiccaps: clipped must be true, false or auto, got {clipped!r}")
        subset = spec.get("subset", "all")
        if subset not in ("all", "balanced", "audioset_eval"):
            raise ValueError(f"musiccaps: subset must be all, balanced or audioset_eval, got {subset!r}")
        out.update(clipped=clipped, subset=subset, revision=str(spec.get("revision", "main")),
                   csv=str(Path(spec["csv"]).expanduser().resolve()) if spec.get("csv") else None)
    else:
        out["revision"] = str(spec.get("revision", "main"))
    return out


def unavailable(name: str, reason: str) -> OnlineSourceError:
    s = ONLINE_SETS[name]
    return OnlineSourceError(
        f"{s.title} ({name}) could not be fetched from {s.url}: {reason}\n"
        f"To provide it by hand: {s.by_hand}."
    )


def folder_option(spec: dict) -> Path | None:
    if spec.get("folder") is None:
        return None
    folder = Path(spec["folder"])
    if not folder.is_dir():
        raise OnlineSourceError(f"{spec['online']}: folder {folder} does not exist")
    return folder


def audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


# ------------------------------------------------------------------------------ the HF hub


def hf_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    if "HF_HUB_OFFLINE" in os.environ:
        return os.environ["HF_HUB_OFFLINE"].strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(constants.HF_HUB_OFFLINE)


def reachable(url: str, timeout_s: float) -> str | None:
    """``None`` if ``url``'s host answers an HTTP request within ``timeout_s``, else the reason."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s).close()
        return None
    except urllib.error.HTTPError:
        return None  # the server answered
    except (urllib.error.URLError, OSError) as e:
        return f"{url} is unreachable ({getattr(e, 'reason', e)})"


def hf_fetch(name: str, repo_id: str, spec: dict, cache_dir: Path | None, *, filename: str | None = None,
              allow_patterns: list[str] | None = None) -> tuple[Path, str]:
    """One file (``filename``) or a snapshot of dataset ``repo_id``; returns ``(path, commit)``.

    Without network (or with ``HF_HUB_OFFLINE=1``) only the local cache is used, so a cached copy
    still works offline; nothing cached means :class:`OnlineSourceError` right away (the hub
    client's own retries would take a minute).
    """
    from huggingface_hub import constants, hf_hub_download, snapshot_download

    offline, reason = hf_offline(), "HF_HUB_OFFLINE is set and the files are not in the local cache"
    if not offline:
        why = reachable(constants.ENDPOINT, spec["timeout_s"])
        if why is not None:
            offline, reason = True, why + " and the files are not in the local cache"
    kw = dict(repo_type="dataset", revision=spec.get("revision", "main"), local_files_only=offline,
              etag_timeout=spec["timeout_s"], cache_dir=str(cache_dir / "huggingface") if cache_dir else None)
    try:
        if filename is not None:
            path = Path(hf_hub_download(repo_id, filename, **kw))
        else:
            path = Path(snapshot_download(repo_id, allow_patterns=allow_patterns, **kw))
    except Exception as e:  # LocalEntryNotFoundError, HTTP errors, gated repos, ...
        raise unavailable(name, reason if offline else f"{type(e).__name__}: {e}") from e
    commit = next((p.name for p in [path, *path.parents] if p.parent.name == "snapshots"), "")
    return path, commit


# --------------------------------------------------------------------------------- Zenodo


def zenodo_record(name: str, record_id: str, timeout_s: float) -> dict:
    url = f"https://zenodo.org/api/records/{record_id}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return json.loads(r.read().decode())
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise unavailable(name, f"{url}: {getattr(e, 'reason', e)}") from e


def zenodo_file(name: str, entry: dict, dest_dir: Path, timeout_s: float) -> Path:
    """Download one file of a Zenodo record (reused if present with the right MD5) and verify it."""
    key = entry["key"]
    algo, _, digest = str(entry.get("checksum", "")).partition(":")
    final = dest_dir / key
    if final.is_file() and algo == "md5" and md5(final) == digest:
        return final
    url = entry.get("links", {}).get("self") or entry.get("links", {}).get("content")
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".{key}.part"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r, open(tmp, "wb") as fh:
            shutil.copyfileobj(r, fh, CHUNK)
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise unavailable(name, f"downloading {key} from {url}: {getattr(e, 'reason', e)}") from e
    if algo == "md5" and md5(tmp) != digest:
        tmp.unlink(missing_ok=True)
        raise OnlineSourceError(f"{name}: {key} from {url} does not match the record's MD5 {digest}")
    os.replace(tmp, final)
    return final


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
