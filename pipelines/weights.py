"""Stage weights@<embedding>: fetch and verify embedding weights into data/weights/<embedding>."""

from __future__ import annotations

from musicdiff.tracking import stage_run

from pipelines.common import ROOT, parser, record_path


def main() -> None:
    args = parser(__doc__, "--embedding").parse_args()
    if args.embedding != "musicnn":
        raise SystemExit(f"no weights stage for embedding {args.embedding!r}")
    from musicdiff.metrics.musicnn import MUSICNN_DATA_SHA256, MUSICNN_WHEEL, fetch_musicnn_checkpoint

    with stage_run("weights", args.embedding, record_path("weights", args.embedding),
                   tags={"embedding": args.embedding}) as run:
        prefix = fetch_musicnn_checkpoint(ROOT / "data" / "weights" / "musicnn")
        run.log_params({"source": MUSICNN_WHEEL, "checkpoint": str(prefix.relative_to(ROOT))})
        run.set_tags({"weight_sha256": MUSICNN_DATA_SHA256})


if __name__ == "__main__":
    main()
