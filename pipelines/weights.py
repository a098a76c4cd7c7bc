"""Stage weights@<embedding>: find and verify an embedding's weights; record what was found.

Writes ``data/weights/<embedding>/weights.json``: ``{"embedding", "status": "present"|"missing",
"files": [{"file", "sha256", "verified"}], "message"}`` (no absolute paths, so the output is the
same on every machine that has the same files). MusiCNN's checkpoint is fetched from PyPI into the
same folder. With ``embed.on_missing_weights: skip`` missing weights are recorded (the MLflow run is
tagged ``weights_status=missing`` with the message saying how to provide them) and the embedding's
``embed@``/``fad@`` stages record skips; with ``fail`` the stage stops with that message.
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
        from musicdiff.metrics.musicnn import MUSICNN_DATA_SHA256, MUSICNN_WHEEL, fetch_musicnn_checkpoint

        fetch_musicnn_checkpoint(folder)
        return {"embedding": embedding, "status": "present", "message": "",
                "files": [{"file": f"{MUSICNN_WHEEL}: MSD_musicnn/.data-00000-of-00001",
                           "sha256": MUSICNN_DATA_SHA256, "verified": True}]}
    from musicdiff.weights import resolve

    resolved = resolve(embedding)
    return {"embedding": embedding, "status": "present", "message": "",
            "files": [{"entry": key, "file": found.path.name, "sha256": found.sha256 or "", "verified": found.verified}
                      for key, found in resolved.found.items()]}


def main() -> None:
    args = parser(__doc__, "--embedding").parse_args()
    policy = load_params()["embed"].get("on_missing_weights", "skip")
    if policy not in ("skip", "fail"):
        raise ValueError(f"embed.on_missing_weights must be 'skip' or 'fail', got {policy!r}")
    from musicdiff.metrics.musicnn import MusicnnWeightsUnavailable
    from musicdiff.weights import MissingWeightsError

    folder = ROOT / "data" / "weights" / args.embedding
    folder.mkdir(parents=True, exist_ok=True)
    with stage_run("weights", args.embedding, record_path("weights", args.embedding),
                   tags={"embedding": args.embedding}) as run:
        try:
            status = find_weights(args.embedding, folder)
        except (MissingWeightsError, MusicnnWeightsUnavailable) as error:
            if policy == "fail":
                raise
            status = {"embedding": args.embedding, "status": "missing", "message": str(error), "files": []}
            print(f"weights of {args.embedding} are missing; its embed@ and fad@ stages will record skips.\n{error}")
        run.log_params({"on_missing_weights": policy})
        run.set_tags({"weights_status": status["status"],
                      "weight_sha256": ",".join(f["sha256"] for f in status["files"])})
        if status["message"]:
            run.set_tags({"weights_message": status["message"][:4000]})
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(status, fh, indent=2, sort_keys=True)
        os.replace(tmp, folder / "weights.json")


if __name__ == "__main__":
    main()
