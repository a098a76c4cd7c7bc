"""Source kind ``online``: a set of the seed study fetched from the network.

Spec (Song Describer, MusicCaps, tiny-audio-diffusion drums; see :mod:`musicdiff.data.online`, the
fetching library, for the names and options)::

    {"online": "song-describer", "folder": "/optional/local/copy"}

The audio is copied to ``<out>/audio/<set>/...``, the loader's metadata files (caption CSV, licence
lists) to ``<out>/metadata/<set>/``, a licence note to ``<out>/licences/<set>/LICENCE`` and the
loader's record (URL, revisions, checksums, licence) to ``<out>/source.json``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from musicdiff.data.online import normalise_online_spec
from musicdiff.data.online_loaders import fetch_online
from musicdiff.data.sources.files import Item, write_source_record
from musicdiff.data.sources.registry import BuildContext, SourceKind, register

__all__ = ["build"]


def build(norm: dict, tmp_out: Path, ctx: BuildContext) -> list[Item]:
    """Fetch the set (downloads kept under ``ctx.cache_dir`` when given) and copy it into ``tmp_out``.

    Raises:
        musicdiff.data.online.OnlineSourceError: (a RuntimeError) the set cannot be fetched and no
            local copy was given, or nothing matched.
    """
    name = norm["online"]
    with tempfile.TemporaryDirectory(dir=tmp_out.parent, prefix=f".{name}-work-") as work:
        files, record, extras = fetch_online(norm, work, ctx.cache_dir)
        lic_dir = tmp_out / "licences" / name
        lic_dir.mkdir(parents=True, exist_ok=True)
        (lic_dir / "LICENCE").write_text(
            f"{record['title']} ({record['url']})\nLicence as declared by the publisher: {record['licence']}\n")
        for f in extras:
            (tmp_out / "metadata" / name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, tmp_out / "metadata" / name / f.name)
        write_source_record(tmp_out, record)
        items = []
        for f in files:
            dest = f"audio/{name}/{f.dest}"
            (tmp_out / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f.src, tmp_out / dest)
            items.append(Item(dest, name, record.get("commit") or record.get("version") or "", f.path_in_source,
                              f.source_sha256, f"licences/{name}/LICENCE"))
    return items


KIND = register(SourceKind("online", normalise_online_spec, build))
