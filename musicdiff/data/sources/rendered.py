"""Source kind ``rendered``: a set rendered from scores with pip packages only.

Spec (see :mod:`musicdiff.data.rendered`, the renderer, for the sets and options)::

    {"rendered": "bach-chorales", "limit": 20}

The rendered audio goes to ``<out>/audio/<set>/``; the music21 corpus licence and a licence note to
``<out>/licences/<set>/``; the renderer's record (package versions, SoundFont) to
``<out>/source.json``.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from musicdiff.data.rendered import normalise_rendered_spec, render_bach_chorales
from musicdiff.data.sources.files import Item, write_source_record
from musicdiff.data.sources.registry import BuildContext, SourceKind, register

__all__ = ["build"]


def build(norm: dict, tmp_out: Path, ctx: BuildContext) -> list[Item]:
    """Render the set into ``tmp_out/audio/<set>/`` and keep its licences and record.

    Raises:
        ImportError: a package the renderer needs is not installed.
    """
    name = norm["rendered"]
    files, record = render_bach_chorales(tmp_out / "audio" / name, norm["limit"], ctx.progress)
    lic_dir = tmp_out / "licences" / name
    lic_dir.mkdir(parents=True, exist_ok=True)
    corpus_licence = Path(importlib.util.find_spec("music21").submodule_search_locations[0]) / "corpus" / "license.txt"
    if corpus_licence.is_file():
        shutil.copyfile(corpus_licence, lic_dir / "music21-corpus-license.txt")
    (lic_dir / "LICENCE").write_text(f"{record['title']}\nLicences: {record['licence']}\n")
    write_source_record(tmp_out, record)
    version = "; ".join(f"{k} {v}" for k, v in record["versions"].items())
    return [Item(f"audio/{name}/{f.dest}", name, version, f.score, f.score_sha256, f"licences/{name}/LICENCE")
            for f in files]


KIND = register(SourceKind("rendered", normalise_rendered_spec, build))
