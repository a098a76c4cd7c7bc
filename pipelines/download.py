"""Stage download@<dataset>: fetch a declared audio set into data/raw/<dataset> (verified, with licences).

Matching entries the source could not use are printed to stderr, one line each, and logged as the
metrics ``skipped_files`` (total) and ``skipped/<reason>`` (every reason, zeros included).
"""

from __future__ import annotations

import sys

from musicdiff.data.sources import download_set, skip_counts
from musicdiff.data.summary import SUMMARY_FILE, read_summary, summary_metrics, summary_tags
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, load_params, parser, record_path, run_stage


def main() -> None:
    args = parser(__doc__, "--dataset").parse_args()
    params = load_params()
    spec = params["datasets"][args.dataset]["source"]
    out_dir = ROOT / "data" / "raw" / args.dataset
    with stage_run("download", args.dataset, record_path("download", args.dataset),
                   tags={"dataset": args.dataset}) as run:
        run.log_params({"source": spec})
        manifest = download_set(spec, out_dir)
        summary = read_summary(out_dir / SUMMARY_FILE)
        skipped = manifest.attrs["skipped"]
        for r in skipped:
            print(f"skipped {r['path']}: {r['reason']} ({r['detail']})", file=sys.stderr)
        run.log_metrics({"files": len(manifest), "minutes": float(manifest["duration_s"].sum()) / 60.0,
                         **summary_metrics(summary), "skipped_files": len(skipped),
                         **{f"skipped/{reason}": n for reason, n in skip_counts(skipped).items()}})
        run.set_tags({"data_hash": _manifest_hash(manifest), **summary_tags(summary)})


def _manifest_hash(manifest) -> str:
    import hashlib

    return hashlib.sha256("".join(sorted(manifest["sha256"])).encode()).hexdigest()


if __name__ == "__main__":
    run_stage(main)
