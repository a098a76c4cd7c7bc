"""Time a whole `dvc repro` of the main pipeline and record it: ``python -m pipelines.timed_repro``.

Runs ``dvc repro`` in the folder it is started in (the repository root), then writes
``reports/repro.json``: the date, the wall time in seconds, the number of stage instances in the graph
and of stages that ran, the seconds each stage took (from one ``Running stage`` line of DVC's output to
the next), the git commit and the machine (CPU count, platform). The README's run time
and stage count are checked against this file by ``tests/test_dvc_graph.py``. Timings need the
machine to themselves: nothing else should run beside it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    root = Path.cwd()
    began = time.time()
    started = time.perf_counter()
    output, stage_seconds = [], {}
    current, since = None, started
    with subprocess.Popen([sys.executable, "-m", "dvc", "repro", *sys.argv[1:]], cwd=root, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        for line in proc.stdout:  # streamed, so each stage's start is timed as DVC prints it
            sys.stdout.write(line)
            output.append(line)
            if line.startswith("Running stage '"):
                now = time.perf_counter()
                if current is not None:
                    stage_seconds[current] = round(now - since, 1)
                current, since = line.split("'")[1], now
    wall = time.perf_counter() - started
    if current is not None:
        stage_seconds[current] = round(wall - (since - started), 1)
    if proc.returncode != 0:
        print(f"dvc repro failed after {wall / 60:.1f} minutes; nothing recorded", file=sys.stderr)
        return proc.returncode
    stdout = "".join(output)
    from dvc.repo import Repo

    from musicdiff.tracking import git_commit

    instances = [s for s in Repo(str(root)).index.stages if Path(s.path).resolve() == (root / "dvc.yaml").resolve()]
    record = {"date": time.strftime("%Y-%m-%d", time.localtime(began)), "wall_s": round(wall, 1),
              "stage_instances": len(instances), "stages_run": stdout.count("Running stage '"),
              "stage_seconds": stage_seconds,
              "git_commit": git_commit(), "cpus": os.cpu_count(), "platform": platform.platform()}
    path = root / "reports" / "repro.json"
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"dvc repro: {wall / 60:.1f} minutes, {record['stages_run']} of {len(instances)} stage instances ran; "
          f"wrote {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
