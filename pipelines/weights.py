"""Stage weights: find and verify the weights of every embedding the pipeline runs; say what the others lack.

For each embedding of ``embed.embeddings`` it writes ``data/weights/<embedding>/weights.json``
(``{"embedding", "status": "present", "files": [{"file", "sha256", "verified"}]}``, no absolute paths);
MusiCNN's checkpoint is fetched from PyPI into the same folder, ``logmel-stats`` needs none. An embedding
listed there whose weights are missing stops the stage with the loader's message (which file, where it
was looked for, how to provide it): list only embeddings you can run. The embeddings musicdiff knows but
the params do not run are recorded as tags ``unavailable.<embedding>`` (why, and how to provide their
weights) or ``available.<embedding>``, which the report lists in its "not run" section.
"""

from __future__ import annotations

import json
import os
import tempfile

from musicdiff.tracking import stage_run

from pipelines.common import ROOT, load_params, parser, record_path


def find_weights(embedding: str, folder) -> dict:
    """``weights.json`` content for ``embedding``; raises the loaders' error when weights are missing."""
    if embedding == "musicnn":
        from musicdiff.weights.fetch import fetch_musicnn_checkpoint
        from musicdiff.weights.registry import MUSICNN_DATA_SHA256, MUSICNN_WHEEL

        fetch_musicnn_checkpoint(folder)
        return {"embedding": embedding, "status": "present",
                "files": [{"file": f"{MUSICNN_WHEEL}: MSD_musicnn/.data-00000-of-00001",
                           "sha256": MUSICNN_DATA_SHA256, "verified": True}]}
    if embedding == "logmel-stats":
        return {"embedding": embedding, "status": "present", "files": []}
    from musicdiff.weights.verify import resolve

    resolved = resolve(embedding)
    return {"embedding": embedding, "status": "present",
            "files": [{"entry": key, "file": found.path.name, "sha256": found.sha256 or "", "verified": found.verified}
                      for key, found in resolved.found.items()]}


def other_embeddings(run_list: list[str]) -> dict[str, str]:
    """``{embedding: "" if its weights are present, else the reason}`` for the known embeddings not in
    ``run_list`` (MusiCNN counts as present: its wheel is fetched on demand)."""
    from musicdiff.evaluation.embeddings.registry import EMBEDDINGS
    from musicdiff.weights.registry import MissingWeightsError
    from musicdiff.weights.verify import resolve

    out = {}
    for name in EMBEDDINGS:
        if name in run_list or name in ("musicnn", "logmel-stats"):
            continue
        try:
            resolve(name)
            out[name] = ""
        except MissingWeightsError as error:
            out[name] = str(error)
    return out


def main() -> None:
    parser(__doc__).parse_args()
    names = list(load_params()["embed"]["embeddings"])
    with stage_run("weights", "all", record_path("weights", "all"), tags={"embeddings": ",".join(names)}) as run:
        for name in names:
            folder = ROOT / "data" / "weights" / name
            folder.mkdir(parents=True, exist_ok=True)
            status = find_weights(name, folder)  # missing weights of a listed embedding stop the stage
            run.set_tags({f"weight_sha256.{name}": ",".join(f["sha256"] for f in status["files"]) or "none"})
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".json")
            with os.fdopen(fd, "w") as fh:
                json.dump(status, fh, indent=2, sort_keys=True)
            os.replace(tmp, folder / "weights.json")
        others = other_embeddings(names)
        run.set_tags({(f"unavailable.{k}" if v else f"available.{k}"): (v[:4000] if v else
                      "weights present; add it to embed.embeddings to run it") for k, v in others.items()})
        run.log_params({"embeddings": names, "not_run": sorted(others)})


if __name__ == "__main__":
    main()
