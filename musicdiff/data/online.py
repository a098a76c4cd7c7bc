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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd
import soundfile as sf

from musicdiff.data.hashing import sha256_file

__all__ = ["ONLINE_SETS", "OnlineFile", "OnlineSet", "OnlineSourceError", "fetch_online", "normalise_online_spec"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".m4a")
DEFAULT_TIMEOUT_S = 20.0
_CHUNK = 1 << 20


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


def _unavailable(name: str, reason: str) -> OnlineSourceError:
    s = ONLINE_SETS[name]
    return OnlineSourceError(
        f"{s.title} ({name}) could not be fetched from {s.url}: {reason}\n"
        f"To provide it by hand: {s.by_hand}."
    )


def _folder(spec: dict) -> Path | None:
    if spec.get("folder") is None:
        return None
    folder = Path(spec["folder"])
    if not folder.is_dir():
        raise OnlineSourceError(f"{spec['online']}: folder {folder} does not exist")
    return folder


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


# ------------------------------------------------------------------------------ the HF hub


def _hf_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    if "HF_HUB_OFFLINE" in os.environ:
        return os.environ["HF_HUB_OFFLINE"].strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(constants.HF_HUB_OFFLINE)


def _reachable(url: str, timeout_s: float) -> str | None:
    """``None`` if ``url``'s host answers an HTTP request within ``timeout_s``, else the reason."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s).close()
        return None
    except urllib.error.HTTPError:
        return None  # the server answered
    except (urllib.error.URLError, OSError) as e:
        return f"{url} is unreachable ({getattr(e, 'reason', e)})"


def _hf_fetch(name: str, repo_id: str, spec: dict, cache_dir: Path | None, *, filename: str | None = None,
              allow_patterns: list[str] | None = None) -> tuple[Path, str]:
    """One file (``filename``) or a snapshot of dataset ``repo_id``; returns ``(path, commit)``.

    Without network (or with ``HF_HUB_OFFLINE=1``) only the local cache is used, so a cached copy
    still works offline; nothing cached means :class:`OnlineSourceError` right away (the hub
    client's own retries would take a minute).
    """
    from huggingface_hub import constants, hf_hub_download, snapshot_download

    offline, reason = _hf_offline(), "HF_HUB_OFFLINE is set and the files are not in the local cache"
    if not offline:
        why = _reachable(constants.ENDPOINT, spec["timeout_s"])
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
        raise _unavailable(name, reason if offline else f"{type(e).__name__}: {e}") from e
    commit = next((p.name for p in [path, *path.parents] if p.parent.name == "snapshots"), "")
    return path, commit


# --------------------------------------------------------------------------------- Zenodo


def _zenodo_record(name: str, record_id: str, timeout_s: float) -> dict:
    url = f"https://zenodo.org/api/records/{record_id}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return json.loads(r.read().decode())
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise _unavailable(name, f"{url}: {getattr(e, 'reason', e)}") from e


def _zenodo_file(name: str, entry: dict, dest_dir: Path, timeout_s: float) -> Path:
    """Download one file of a Zenodo record (reused if present with the right MD5) and verify it."""
    key = entry["key"]
    algo, _, digest = str(entry.get("checksum", "")).partition(":")
    final = dest_dir / key
    if final.is_file() and algo == "md5" and _md5(final) == digest:
        return final
    url = entry.get("links", {}).get("self") or entry.get("links", {}).get("content")
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".{key}.part"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r, open(tmp, "wb") as fh:
            shutil.copyfileobj(r, fh, _CHUNK)
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise _unavailable(name, f"downloading {key} from {url}: {getattr(e, 'reason', e)}") from e
    if algo == "md5" and _md5(tmp) != digest:
        tmp.unlink(missing_ok=True)
        raise OnlineSourceError(f"{name}: {key} from {url} does not match the record's MD5 {digest}")
    os.replace(tmp, final)
    return final


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# -------------------------------------------------------------------------------- loaders


def _song_describer(spec: dict, work: Path, cache_dir: Path | None) -> tuple[list[OnlineFile], dict, list[Path]]:
    name, info = "song-describer", ONLINE_SETS["song-describer"]
    folder = _folder(spec)
    record: dict = {"url": info.url, "zenodo_record": "10072001", "licence": info.licence, "files": []}
    if folder is None:
        meta = _zenodo_record(name, "10072001", spec["timeout_s"])
        entries = {e["key"]: e for e in meta.get("files", [])}
        if "song_describer.csv" not in entries or "audio.zip" not in entries:
            raise OnlineSourceError(f"{name}: Zenodo record 10072001 lists {sorted(entries)}, "
                                    "expected song_describer.csv and audio.zip")
        lic = (meta.get("metadata", {}).get("license") or {}).get("id")
        if lic:
            record["licence"] = f"{lic} (Zenodo record); audio: per-recording licences (audio_licenses.txt)"
        record["version"] = meta.get("metadata", {}).get("version", "")
        folder = (cache_dir / "zenodo-10072001") if cache_dir else work / "zenodo"
        for key in ("song_describer.csv", "audio.zip", "audio_licenses.txt"):
            if key in entries:
                f = _zenodo_file(name, entries[key], folder, spec["timeout_s"])
                record["files"].append({"name": key, "url": entries[key].get("links", {}).get("self", ""),
                                        "checksum": entries[key].get("checksum", ""), "sha256": sha256_file(f)})
    csv = folder / "song_describer.csv"
    if not csv.is_file():
        raise OnlineSourceError(f"{name}: {csv} not found. To provide the set by hand: {info.by_hand}.")
    table = pd.read_csv(csv)
    if "path" not in table.columns:
        raise OnlineSourceError(f"{name}: {csv} has no 'path' column (columns: {list(table.columns)})")
    if spec.get("valid_only"):
        if "is_valid_subset" not in table.columns:
            raise OnlineSourceError(f"{name}: valid_only needs the column is_valid_subset in {csv}")
        table = table[table["is_valid_subset"].astype(str).str.lower().isin(["true", "1"])]
    wanted = sorted(set(table["path"].astype(str)))
    by_base: dict[str, Path] = {p.name: p for p in _audio_files(folder)}
    files, source_sha = [], ""
    zpath = folder / "audio.zip"
    missing_loose = [w for w in wanted if PurePosixPath(w).name not in by_base]
    if missing_loose and zpath.is_file():  # take what is missing out of audio.zip
        source_sha = sha256_file(zpath)
        with zipfile.ZipFile(zpath) as zf:
            members = {PurePosixPath(m).name: m for m in zf.namelist() if not m.endswith("/")}
            for w in missing_loose:
                m = members.get(PurePosixPath(w).name)
                if m is None or ".." in PurePosixPath(m).parts:
                    continue
                target = work / "unzipped" / PurePosixPath(w).name
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
                files.append(OnlineFile(target, w, f"audio.zip!{m}", source_sha))
    for w in wanted:
        p = by_base.get(PurePosixPath(w).name)
        if p is not None:
            files.append(OnlineFile(p, w, p.relative_to(folder).as_posix(), ""))
    record.update(n_listed=len(wanted), n_matched=len(files), n_missing=len(wanted) - len(files),
                  missing=sorted(set(wanted) - {f.dest for f in files})[:20], csv_sha256=sha256_file(csv))
    if not files:
        raise OnlineSourceError(f"{name}: none of the {len(wanted)} recordings listed in {csv} was found in {folder} "
                                "(loose files matched by file name, or inside audio.zip)")
    extras = [p for p in (csv, folder / "audio_licenses.txt") if p.is_file()]
    return sorted(files, key=lambda f: f.dest), record, extras


def _cut(src: Path, start_s: float, end_s: float, out: Path) -> None:
    """Write ``[start_s, end_s)`` of ``src`` to ``out`` as 24-bit FLAC at the source's rate and channels."""
    info = sf.info(str(src))
    a, b = int(round(start_s * info.samplerate)), int(round(end_s * info.samplerate))
    x, sr = sf.read(str(src), start=a, stop=min(b, info.frames), dtype="float32", always_2d=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out), x, sr, format="FLAC", subtype="PCM_24")


def _musiccaps(spec: dict, work: Path, cache_dir: Path | None) -> tuple[list[OnlineFile], dict, list[Path]]:
    name, info = "musiccaps", ONLINE_SETS["musiccaps"]
    folder = _folder(spec)
    if folder is None:
        raise OnlineSourceError(
            f"{info.title} ({name}) lists YouTube videos ({info.url}); this suite does not download from "
            f"YouTube, so the audio must be provided by hand: {info.by_hand}."
        )
    record: dict = {"url": info.url, "repo_id": "google/MusicCaps", "licence": info.licence}
    if spec.get("csv"):
        csv = Path(spec["csv"])
        if not csv.is_file():
            raise OnlineSourceError(f"{name}: csv {csv} does not exist")
    elif (folder / "musiccaps-public.csv").is_file():
        csv = folder / "musiccaps-public.csv"
    else:
        csv, commit = _hf_fetch(name, "google/MusicCaps", spec, cache_dir, filename="musiccaps-public.csv")
        record.update(revision=spec["revision"], commit=commit)
    table = pd.read_csv(csv)
    need = {"ytid", "start_s", "end_s"}
    if need - set(table.columns):
        raise OnlineSourceError(f"{name}: {csv} lacks columns {sorted(need - set(table.columns))}")
    column = {"balanced": "is_balanced_subset", "audioset_eval": "is_audioset_eval"}.get(spec["subset"])
    if column is not None:
        table = table[table[column].astype(str).str.lower().isin(["true", "1"])]
    by_stem: dict[str, list[Path]] = {}
    for p in _audio_files(folder):
        by_stem.setdefault(p.stem, []).append(p)
    files, cut = [], 0
    for row in table.drop_duplicates("ytid").sort_values("ytid").itertuples():
        ytid, start, end = str(row.ytid), float(row.start_s), float(row.end_s)
        cands = by_stem.get(ytid, [])
        if not cands:
            continue
        src = cands[0]
        try:
            duration = sf.info(str(src)).duration
        except Exception:
            duration = None  # copied as it is; the prepare step counts it as unreadable
        whole = duration is not None and (spec["clipped"] is False or (
            spec["clipped"] == "auto" and duration >= end - 0.05 and duration > (end - start) + 1.0))
        tag = f"{ytid}@{start:g}-{end:g}"
        if whole:
            out = work / "musiccaps" / f"{ytid}.flac"
            _cut(src, start, end, out)
            files.append(OnlineFile(out, f"{ytid}.flac", f"{tag}:{src.relative_to(folder).as_posix()}", ""))
            cut += 1
        else:
            files.append(OnlineFile(src, f"{ytid}{src.suffix.lower()}", f"{tag}:{src.relative_to(folder).as_posix()}",
                                    ""))
    n_listed = int(table["ytid"].nunique())
    record.update(subset=spec["subset"], csv_sha256=sha256_file(csv), n_listed=n_listed, n_matched=len(files),
                  n_missing=n_listed - len(files), n_cut=cut)
    if not files:
        raise OnlineSourceError(f"{name}: none of the {n_listed} videos listed in {csv} has a file named "
                                f"<ytid>.<audio suffix> in {folder}")
    return files, record, [csv]


def _tiny_drums(spec: dict, work: Path, cache_dir: Path | None) -> tuple[list[OnlineFile], dict, list[Path]]:
    name, info = "tiny-audio-diffusion-drums", ONLINE_SETS["tiny-audio-diffusion-drums"]
    repo = "crlandsc/tiny-audio-diffusion-drums"
    record: dict = {"url": info.url, "repo_id": repo, "licence": info.licence}
    folder = _folder(spec)
    if folder is None:
        folder, commit = _hf_fetch(name, repo, spec, cache_dir, allow_patterns=["*.wav", "*/*.wav", "README.md"])
        record.update(revision=spec["revision"], commit=commit)
    wavs = [p for p in _audio_files(folder) if p.suffix.lower() == ".wav"]
    if not wavs:
        raise OnlineSourceError(f"{name}: no .wav file under {folder}")
    files = [OnlineFile(p, p.relative_to(folder).as_posix(), p.relative_to(folder).as_posix(), "") for p in wavs]
    record.update(n_listed=len(files), n_matched=len(files), n_missing=0)
    readme = folder / "README.md"
    return files, record, [readme] if readme.is_file() else []


_LOADERS = {"song-describer": _song_describer, "musiccaps": _musiccaps, "tiny-audio-diffusion-drums": _tiny_drums}


def fetch_online(spec: dict, work_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None
                 ) -> tuple[list[OnlineFile], dict, list[Path]]:
    """Obtain the audio of an online set.

    Args:
        spec: an ``{online: NAME, ...}`` spec (normalised or not, see the module docstring).
        work_dir: a scratch folder for files the loader makes (unzipped or cut audio); it must
            outlive the returned files' use.
        cache_dir: where downloads are kept between runs (``<cache_dir>/huggingface`` for the hub,
            ``<cache_dir>/zenodo-<record>`` for Zenodo); default: the HF cache, and ``work_dir``
            for Zenodo (so the archive is fetched again next time).

    Returns:
        ``(files, record, extras)``: the audio files (:class:`OnlineFile`, sorted by ``dest``), the
        record of what was fetched (``url``, ``licence``, revisions and checksums, ``n_listed``,
        ``n_matched``, ``n_missing``) and metadata files worth keeping beside the audio (the caption
        CSV, licence lists).

    Raises:
        OnlineSourceError: no network and no local copy, a bad folder, or nothing matched.
        ValueError: a malformed spec.
    """
    spec = normalise_online_spec(spec)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    files, record, extras = _LOADERS[spec["online"]](spec, work, Path(cache_dir) if cache_dir else None)
    record = {"set": spec["online"], "title": ONLINE_SETS[spec["online"]].title, **record,
              "folder": spec.get("folder")}
    return files, record, extras
