"""Stage levels@<variant>-<sampler>: level of every generated clip (RMS dBFS, LUFS, peak dBFS).

Metrics: ``clip_<i>/<level>`` per clip (``i`` indexes the sorted WAV files, named in the param
``files``) and, per level, the set's mean (the study's "mean decibel value"), median, min and max.
The filter@ stages read these records; the report draws their histograms (clip_levels.png).
"""

from __future__ import annotations

import numpy as np
import soundfile as sf

from musicdiff.metrics.loudness import LEVELS, clip_level
from musicdiff.tracking import stage_run

from pipelines.common import ROOT, parser, record_path


def main() -> None:
    args = parser(__doc__, "--variant", "--sampler").parse_args()
    instance = f"{args.variant}-{args.sampler}"
    folder = ROOT / "data" / "samples" / instance
    files = sorted(folder.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no WAV files in {folder}: run `dvc repro sample@{instance}` first")
    with stage_run("levels", instance, record_path("levels", instance),
                   tags={"variant": args.variant, "sampler": args.sampler, "evaluation_set": instance},
                   data_paths=[folder]) as run:
        run.log_params({"files": [f.name for f in files], "folder": str(folder.relative_to(ROOT))})
        metrics, values = {"clips": len(files)}, {name: [] for name in (*LEVELS, "peak_dbfs")}
        for i, path in enumerate(files):
            audio, sample_rate = sf.read(path, dtype="float64")
            if audio.ndim != 1:
                raise ValueError(f"{path}: expected a mono clip, got {audio.shape[1]} channels")
            level = clip_level(audio, sample_rate).to_dict()
            for name, value in level.items():
                if np.isfinite(value):  # LUFS is NaN for clips shorter than 400 ms: not recorded
                    metrics[f"clip_{i:04d}/{name}"] = value
                    values[name].append(value)
        for name, v in values.items():
            if v:
                metrics.update({f"mean_{name}": float(np.mean(v)), f"median_{name}": float(np.median(v)),
                                f"min_{name}": float(np.min(v)), f"max_{name}": float(np.max(v))})
            else:
                run.set_tags({f"no_{name}": "clips shorter than one 400 ms loudness block"})
        run.log_metrics(metrics)


if __name__ == "__main__":
    main()
