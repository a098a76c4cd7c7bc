"""One loader a set of :data:`musicdiff.data.online.ONLINE_SETS` (Song Describer from Zenodo, MusicCaps
with the user's clips, the tiny drum set from the HF hub) and :func:`fetch_online`, which runs the
loader of a spec. See ``musicdiff.data.online`` for the sets and their options."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

import pandas as pd
import soundfile as sf

from musicdiff.data.hashing import sha256_file
from musicdiff.data.online import (
    CHUNK,
    ONLINE_SETS,
    OnlineFile,
    OnlineSourceError,
    audio_files,
    folder_option,
    hf_fetch,
    zenodo_file,
    zenodo_record,
    normalise_online_spec,
)

__all__ = ["fetch_online"]


# -------------------------------------------------------------------------------- loaders


def _song_describer(spec: dict, work: Path, cache_dir: Path | None) -> tuple[list[OnlineFile], dict, list[Path]]:
    name, info = "song-describer", ONLINE_SETS["song-describer"]
    folder = folder_option(spec)
    record: dict = {"url": info.url, "zenodo_record": "10072001", "licence": info.licence, "files": []}
    if folder is None:
        meta = zenodo_record(name, "10072001", spec["timeout_s"])
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
                f = zenodo_file(name, entries[key], folder, spec["timeout_s"])
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
    by_base: dict[str, Path] = {p.name: p for p in audio_files(folder)}
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
                    shutil.copyfileobj(src, dst, CHUNK)
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
    folder = folder_option(spec)
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
        csv, commit = hf_fetch(name, "google/MusicCaps", spec, cache_dir, filename="musiccaps-public.csv")
        record.update(revision=spec["revision"], commit=commit)
    table = pd.read_csv(csv)
    need = {"ytid", "start_s", "end_s"}
    if need - set(table.columns):
        raise OnlineSourceError(f"{name}: {csv} lacks columns {sorted(need - set(table.columns))}")
    column = {"balanced": "is_balanced_subset", "audioset_eval": "is_audioset_eval"}.get(spec["subset"])
    if column is not None:
        table = table[table[column].astype(str).str.lower().isin(["true", "1"])]
    by_stem: dict[str, list[Path]] = {}
    for p in audio_files(folder):
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
    folder = folder_option(spec)
    if folder is None:
        folder, commit = hf_fetch(name, repo, spec, cache_dir, allow_patterns=["*.wav", "*/*.wav", "README.md"])
        record.update(revision=spec["revision"], commit=commit)
    wavs = [p for p in audio_files(folder) if p.suffix.lower() == ".wav"]
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
