"""Stage prepare@<dataset>: decode, downmix, resample, cut fixed-length segments, split by track.

Every entry of the source that was lost (at download or here) is in the record's ``inputs`` and the MLflow
artifact ``inputs/<dataset>.json``. A set that lost too much stops the stage; the skip list is written
first: to the (FAILED) MLflow run as ``inputs/<dataset>.json`` and to ``data/prepared/<dataset>.skipped.json``
(file, reason and detail of each, and the error), which a later successful run removes.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from musicdiff.data.prepare import prepare_set
from musicdiff.data.screening import InputPolicy, SkipLog, TooManySkippedError
from musicdiff.data.summary import SUMMARY_FILE, read_summary, summary_metrics, summary_tags
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, load_params, parser, record_path, run_stage


def skipped_path(dataset: str):
    """Where a failed prepare@<dataset> leaves its skip list: ``data/prepared/<dataset>.skipped.json``."""
    return ROOT / "data" / "prepared" / f"{dataset}.skipped.json"


def write_skipped(path, log: SkipLog, error: str) -> None:
    """Write ``log`` (total, skipped files with reason and detail, counts, flags) and the error to ``path``,
    atomically."""
    import json
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump({"set": path.name.removesuffix(".skipped.json"), "error": error, **log.to_dict()}, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


def main() -> None:
    args = parser(__doc__, "--dataset").parse_args()
    params = load_params()
    options = params["datasets"][args.dataset]["prepare"]
    raw_dir = ROOT / "data" / "raw" / args.dataset
    out_dir = ROOT / "data" / "prepared" / args.dataset
    with stage_run("prepare", args.dataset, record_path("prepare", args.dataset),
                   tags={"dataset": args.dataset}) as run:
        settings = {"sample_rate": params["audio"]["sample_rate"], "seed": params["seed"], **options}
        run.log_params(settings)
        policy = InputPolicy.from_params(params.get("inputs"))
        run.log_params({"inputs": policy.to_dict()})
        manifest = pd.read_csv(raw_dir / "manifest.csv")
        failed = skipped_path(args.dataset)
        try:
            result = prepare_set(manifest, raw_dir, out_dir, policy=policy, **settings)
        except TooManySkippedError as error:
            if error.log is not None:  # the skip list, before the stage fails
                write_skipped(failed, error.log, str(error))
                run.log_inputs(error.log)
                raise TooManySkippedError(f"{error}\n  (this list: {failed} and the MLflow run's artifact "
                                          f"inputs/{args.dataset}.json)", log=error.log) from None
            raise
        failed.unlink(missing_ok=True)
        run.log_inputs(result.skip_log)
        run.log_metrics({
            "tracks": result.n_tracks, "clips": result.n_clips, "minutes": result.total_s / 60.0,
            **{f"clips_{split}": int(n) for split, n in result.manifest["split"].value_counts().items()},
        })
        tags = {}
        for split in sorted(result.splits):  # the summary beside each split's audio
            summary = read_summary(out_dir / split / SUMMARY_FILE)
            numbers = summary_metrics(summary, f"_{split}")
            numbers.pop(f"clips_{split}")  # logged above
            run.log_metrics(numbers)
            tags.update(summary_tags(summary, f"_{split}"))
        run.set_tags({"data_hash": hashlib.sha256("".join(sorted(result.manifest["sha256"])).encode()).hexdigest(),
                      **tags})


if __name__ == "__main__":
    run_stage(main)
