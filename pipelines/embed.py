"""Stages embed_reference@<set> and embed_samples@<variant>-<sampler>: per-clip embeddings of one audio set.

Writes ``data/embeddings/<embedding>/<group>/<set>.npz`` (group: ``reference`` or ``samples``).
"""

from __future__ import annotations

import numpy as np

from musicdiff.metrics.embeddings import embed_files, get_embedding
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, load_params, parser, record_path


def build_embedding(params: dict):
    """The embedding named in params (weights from the ``weights@`` stage's folder)."""
    name = params["embed"]["embedding"]
    options = dict(params["embed"].get("options", {}).get(name, {}))
    if name == "musicnn":
        from musicdiff.metrics.musicnn import fetch_musicnn_checkpoint

        options["checkpoint"] = fetch_musicnn_checkpoint(ROOT / "data" / "weights" / "musicnn")
    return get_embedding(name, **options)


def main() -> None:
    args = parser(__doc__, "--set", "--folder", "--group").parse_args()
    params = load_params()
    settings = params["embed"]
    folder = ROOT / args.folder
    if not folder.is_dir():
        raise FileNotFoundError(f"audio set {args.set!r}: no folder {folder}")
    embedding = build_embedding(params)
    instance = f"{embedding.name}-{args.set}"
    out = ROOT / "data" / "embeddings" / embedding.name / args.group / f"{args.set}.npz"
    with stage_run("embed", instance, record_path("embed", instance),
                   tags={"embedding": embedding.name, "audio_set": args.set, "group": args.group, "weight_sha256": embedding.weight_sha256},
                   data_paths=[folder]) as run:
        files = sorted(folder.rglob("*.wav"))
        available = len(files)
        limit = settings.get("max_clips")
        if limit and available > limit:
            pick = np.random.default_rng(settings["seed"]).choice(available, size=limit, replace=False)
            files = [files[i] for i in sorted(pick)]
        run.log_params({"embedding": embedding.name, "config": embedding.config, "max_clips": limit,
                        "seed": settings["seed"], "folder": str(folder.relative_to(ROOT))})
        embedded = embed_files(embedding, files, cache_dir=ROOT / "data" / "cache" / "embeddings", root=ROOT)
        embedded.save(out)
        run.log_metrics({"clips": len(files), "clips_available": available, "frames": len(embedded.frames),
                         "dim": embedded.frames.shape[1]})


if __name__ == "__main__":
    main()
