"""Stages embed_reference@<embedding>-<set> and embed_samples@<embedding>-<variant>-<sampler>:
per-clip embeddings of one audio set with one embedding.

Writes ``data/embeddings/<embedding>/<group>/<set>.npz`` (group: ``reference`` or ``samples``).
When the ``weights@<embedding>`` stage found the embedding's weights missing (and
``embed.on_missing_weights`` is ``skip``), the stage writes a set that records the reason instead of
embeddings, and its MLflow run carries the tag ``skipped``; ``fad@`` stages pass the skip on.
"""

from __future__ import annotations

import json

import numpy as np

from musicdiff.tracking import stage_run

from pipelines.common import ROOT, load_params, parser, record_path


def weights_status(embedding: str) -> dict:
    """What the ``weights@<embedding>`` stage found: ``{"status": "present"|"missing", ...}``."""
    path = ROOT / "data" / "weights" / embedding / "weights.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro weights@{embedding}` first")
    return json.loads(path.read_text())


def audio_folder(params: dict, group: str, name: str) -> str:
    """The folder of audio set ``name``: ``reference_sets[name]`` or ``data/samples/<name>``."""
    if group == "reference":
        if name not in params["reference_sets"]:
            raise KeyError(f"no reference set {name!r} in params.yaml; known: {sorted(params['reference_sets'])}")
        return params["reference_sets"][name]
    if group == "samples":
        return f"data/samples/{name}"
    raise ValueError(f"group must be 'reference' or 'samples', got {group!r}")


def build_embedding(params: dict, name: str):
    """The embedding ``name`` with its ``embed.options`` (weights resolved and verified)."""
    from musicdiff.metrics.embeddings import get_embedding

    options = dict(params["embed"].get("options", {}).get(name, {}))
    if name == "musicnn":
        from musicdiff.metrics.musicnn import fetch_musicnn_checkpoint

        options["checkpoint"] = fetch_musicnn_checkpoint(ROOT / "data" / "weights" / "musicnn")
    return get_embedding(name, **options)


def embed_folder(params: dict, name: str, folder) -> "EmbeddedSet":
    """Embeddings of every WAV under ``folder`` with embedding ``name`` (through the shared
    content-addressed cache), or a skipped set when the weights@ stage found its weights missing."""
    from musicdiff.metrics.embeddings import EmbeddedSet, embed_files

    status = weights_status(name)
    if status["status"] != "present":
        return EmbeddedSet.skip(name, status["message"])
    files = sorted(folder.rglob("*.wav"))
    return embed_files(build_embedding(params, name), files, cache_dir=ROOT / "data" / "cache" / "embeddings",
                       root=ROOT)


def main() -> None:
    args = parser(__doc__, "--embedding", "--set", "--group").parse_args()
    params = load_params()
    settings = params["embed"]
    folder = ROOT / audio_folder(params, args.group, args.set)
    instance = f"{args.embedding}-{args.set}"
    out = ROOT / "data" / "embeddings" / args.embedding / args.group / f"{args.set}.npz"
    status = weights_status(args.embedding)
    tags = {"embedding": args.embedding, "audio_set": args.set, "group": args.group}
    if status["status"] != "present":
        from musicdiff.metrics.embeddings import EmbeddedSet

        with stage_run("embed", instance, record_path("embed", instance),
                       tags={**tags, "skipped": status["message"]}) as run:
            run.log_params({"embedding": args.embedding, "folder": str(folder.relative_to(ROOT))})
            EmbeddedSet.skip(args.embedding, status["message"]).save(out)
        print(f"skipped {instance}: {status['message']}")
        return
    if not folder.is_dir():
        raise FileNotFoundError(f"audio set {args.set!r}: no folder {folder}")
    from musicdiff.metrics.embeddings import embed_files

    embedding = build_embedding(params, args.embedding)
    with stage_run("embed", instance, record_path("embed", instance),
                   tags={**tags, "weight_sha256": embedding.weight_sha256}, data_paths=[folder]) as run:
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
