"""MLflow conventions: one experiment, one run per stage instance, and a JSON record of each run.

Every stage instance (``train@mel-64x64``, ``evaluate@mel-64x64-dpmpp20``, ...) opens one MLflow run named
``<stage>@<instance>`` in the experiment ``musicdiff`` (``MUSICDIFF_EXPERIMENT`` overrides) of the
store at ``MLFLOW_TRACKING_URI`` (default: ``sqlite:///mlflow.db`` in the working directory). The
run carries params, metrics and the tags ``stage``, ``instance``, ``variant``, ``sampler``,
``embedding``, ``reference_set``, ``git_commit``, ``data_hash`` and the versions of the libraries
that shape results.

The same params, metrics (with their step histories) and tags are written to a small JSON record
(a DVC output) together with the run id and a content ``key``. Reports read the record to find the run
and take the numbers from MLflow; a store that lacks the run (outputs pulled from a DVC remote onto a
fresh machine) is repaired with ``musicdiff relog``, which logs the records again, histories included;
reports then find the new run through its ``key`` tag.

Grouping: every stage run of one ``dvc repro`` (or ``dvc exp run``) is nested under one parent run
named ``repro@<time>``: the stage finds the ``dvc`` process it was started by (Linux ``/proc``; on other
systems runs are not nested) and reuses the parent run tagged with that process's id and start time,
creating it for the first stage. Under ``dvc exp run`` every run carries the tag ``dvc_experiment``
(DVC's ``DVC_EXP_NAME``), so the MLflow UI filters and groups an experiment's runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterator

from musicdiff.data.hashing import sha256_tree

DEFAULT_EXPERIMENT = "musicdiff"
TRACKED_LIBRARIES = ("torch", "torchaudio", "diffusers", "accelerate", "numpy", "scipy", "mlflow", "dvc")


class MissingRunError(LookupError):
    """A JSON record names an MLflow run that the current store does not hold."""


def tracking_uri() -> str:
    """The MLflow store: ``MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db`` (relative to the cwd)."""
    return os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")


def experiment_name() -> str:
    return os.environ.get("MUSICDIFF_EXPERIMENT", DEFAULT_EXPERIMENT)


def git_commit() -> str:
    """The HEAD commit of the working directory's repository, ``+dirty`` if tracked code changed."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        # The whole repository counts (a stage may run in a sub-folder such as pipelines/regress/), except
        # the pipeline outputs tracked in git (dvc.lock files, records, reports), which do not make code dirty.
        outputs = ["dvc.lock", "metrics", "reports", "pipelines/regress/dvc.lock", "pipelines/regress/metrics"]
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                *(f":(top,exclude){p}" for p in outputs)],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape results, plus Python's."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def flatten_params(params: dict) -> dict[str, str]:
    """Nested params -> ``{"a.b.c": "value"}`` strings, as MLflow stores them."""
    out: dict = {}
    _flatten("", params, out)
    return {k: json.dumps(v) if isinstance(v, (list, tuple)) else str(v) for k, v in out.items()}


@dataclass
class StageRecord:
    """The JSON record of one stage instance (written atomically at the end of the stage)."""

    stage: str
    instance: str
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    run_id: str = ""
    experiment: str = ""
    key: str = ""
    history: dict = field(default_factory=dict)  # metric -> [[step, value], ...] (curves, e.g. the loss)
    inputs: dict = field(default_factory=dict)  # input set -> its skipped files and flag counts (bad-input policy)

    def compute_key(self) -> str:
        body = json.dumps({"stage": self.stage, "instance": self.instance, "params": self.params,
                           "metrics": self.metrics}, sort_keys=True, default=str)
        return f"{self.stage}@{self.instance}:{hashlib.sha256(body.encode()).hexdigest()[:16]}"

    def write(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.__dict__, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> "StageRecord":
        return cls(**json.loads(Path(path).read_text()))


class StageRun:
    """Handle passed to a stage body: log params, metrics (optionally per step) and tags."""

    def __init__(self, record: StageRecord, mlflow_module):
        self.record = record
        self._mlflow = mlflow_module

    def log_params(self, params: dict) -> None:
        self.record.params.update(params)
        flat = flatten_params(params)
        for start in range(0, len(flat), 100):
            self._mlflow.log_params(dict(list(flat.items())[start:start + 100]))

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """Log numbers; with ``step`` they form a curve in MLflow, kept in the record's ``history``."""
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        if step is None:
            self.record.metrics.update(clean)
        else:
            for key, value in clean.items():
                self.record.history.setdefault(key, []).append([int(step), value])
        self._mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Attach a file (a table, a figure, a WAV) to the run, under ``folder`` in its artifacts."""
        self._mlflow.log_artifact(str(path), artifact_path=folder)

    def log_inputs(self, log, prefix: str = "") -> None:
        """Record what the bad-input policy did to one input set (a ``musicdiff.data.screening.SkipLog``):
        metrics ``<prefix>skipped_files``, ``<prefix>skipped/<reason>``, ``<prefix>flagged/<flag>``; the
        list of skipped files with reasons in the record's ``inputs`` and as the MLflow artifact
        ``inputs/<set>.json``; one line per skipped file on stderr."""
        import sys

        self.log_metrics({f"{prefix}{k}": v for k, v in log.metrics().items()})
        self.record.inputs[log.name] = log.to_dict()
        self._mlflow.log_dict(log.to_dict(), f"inputs/{Path(str(log.name)).name or 'set'}.json")
        for line in log.lines():
            print(f"{log.name}: {line}", file=sys.stderr)

    def set_tags(self, tags: dict) -> None:
        tags = {k: str(v) for k, v in tags.items()}
        self.record.tags.update(tags)
        self._mlflow.set_tags(tags)


_first_run = True  # the first stage run of this process records its start-up


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``; None elsewhere): at a stage's start, its
    start-up cost (interpreter, imports, params)."""
    import time

    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return time.time() - (boot + ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, StopIteration):
        return None


def _dvc_process() -> tuple[int, str] | None:
    """``(pid, start time)`` of the ``dvc`` process this one descends from (Linux), else None."""
    pid = os.getppid()
    for _ in range(8):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        if any(part.endswith(b"dvc") or part.endswith(b"dvc/__main__.py") for part in cmdline[:3]) or \
                b"dvc.cli" in b" ".join(cmdline[:3]):
            return pid, stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks since boot
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: the parent's pid
        if pid <= 1:
            return None
    return None


def _parent_run(mlflow_module, client) -> str | None:
    """The id of the parent run of the current ``dvc repro`` (created by its first stage), or None."""
    process = _dvc_process()
    if process is None:
        return None
    key = f"{platform.node()}:{process[0]}:{process[1]}"
    experiment = client.get_experiment_by_name(experiment_name())
    found = client.search_runs([experiment.experiment_id], filter_string=f"tags.dvc_process = '{key}'", max_results=1)
    if found:
        return found[0].info.run_id
    import time

    tags = {"dvc_process": key, "stage": "repro", "git_commit": git_commit()}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    name = f"repro@{time.strftime('%Y-%m-%d %H:%M:%S')}"
    run = client.create_run(experiment.experiment_id, run_name=name, tags={"mlflow.runName": name, **tags})
    client.set_terminated(run.info.run_id, "FINISHED")  # a grouping row: its children carry the numbers
    return run.info.run_id


@contextmanager
def stage_run(stage: str, instance: str, record_path: Path | None, tags: dict | None = None,
              data_paths: list[Path] | None = None) -> Iterator[StageRun]:
    """Open the MLflow run of ``stage@instance``; on success write the JSON record to ``record_path``
    (None: no record, e.g. the report's run, whose outputs are the tables themselves).

    ``data_paths`` (inputs of the stage) are hashed into the ``data_hash`` tag. A failing stage
    leaves its run marked FAILED in MLflow and writes no record. Under ``dvc repro`` the run is nested
    under the repro's parent run (see the module docstring). The run records the stage's start-up
    (``startup_s``: process start to here, i.e. the interpreter and the stage's imports; Linux only),
    whether torch was already imported then, and the time MLflow took to import and open the run
    (``mlflow_setup_s``).
    """
    import sys
    import time

    global _first_run
    startup = process_age() if _first_run else None  # later runs of one process: not start-up
    _first_run = False
    torch_loaded = "torch" in sys.modules
    began = time.perf_counter()
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(experiment_name())
    record = StageRecord(stage=stage, instance=instance, experiment=experiment_name())
    base_tags = {"stage": stage, "instance": instance, "git_commit": git_commit(),
                 **{f"version.{k}": v for k, v in library_versions().items()}}
    if os.environ.get("DVC_EXP_NAME"):
        base_tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    if data_paths:
        base_tags["data_hash"] = sha256_tree(list(data_paths))
    parent = _parent_run(mlflow, MlflowClient())
    with mlflow.start_run(run_name=f"{stage}@{instance}", parent_run_id=parent, nested=parent is not None) as active:
        run = StageRun(record, mlflow)
        run.set_tags({**base_tags, **(tags or {}), "torch_loaded_at_start": str(torch_loaded).lower()})
        overhead = {"mlflow_setup_s": time.perf_counter() - began}
        if startup is not None:
            overhead["startup_s"] = startup
        run.log_metrics(overhead)
        yield run
        record.run_id = active.info.run_id
        record.key = record.compute_key()
        mlflow.set_tag("key", record.key)
    if record_path is not None:
        record.write(record_path)


def relog_records(paths: list[Path]) -> list[str]:
    """Log every JSON record in ``paths`` again as a new MLflow run (same params, metrics, tags,
    ``key``), for a store that lacks them; records whose run or key is already present are skipped.
    Returns the keys logged."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    logged = []
    for path in paths:
        record = StageRecord.read(path)
        mlflow.set_experiment(record.experiment or experiment_name())
        if _find_run(client, record) is not None:
            continue
        with mlflow.start_run(run_name=f"{record.stage}@{record.instance}"):
            flat = flatten_params(record.params)
            for start in range(0, len(flat), 100):
                mlflow.log_params(dict(list(flat.items())[start:start + 100]))
            mlflow.log_metrics(record.metrics)
            for key, points in record.history.items():  # the curves (loss, FAD by step, ...)
                for step, value in points:
                    mlflow.log_metric(key, value, step=int(step))
            mlflow.set_tags({**record.tags, "key": record.key, "relogged_from": record.run_id})
        logged.append(record.key)
    return logged


def _find_run(client, record: StageRecord):
    from mlflow.exceptions import MlflowException

    if record.run_id:
        try:
            return client.get_run(record.run_id)
        except MlflowException:
            pass
    experiment = client.get_experiment_by_name(record.experiment or experiment_name())
    if experiment is None:
        return None
    found = client.search_runs([experiment.experiment_id], filter_string=f"tags.key = '{record.key}'",
                               max_results=1)
    return found[0] if found else None


def load_runs(record_paths: list[Path]) -> list[dict]:
    """For each JSON record, the MLflow run's params, metrics and tags as one flat dict.

    Raises ``MissingRunError`` naming the records whose runs the store lacks, with the command that
    repairs it.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    rows, missing = [], []
    for path in record_paths:
        record = StageRecord.read(path)
        run = _find_run(client, record)
        if run is None:
            missing.append(str(path))
            continue
        rows.append({"stage": record.stage, "instance": record.instance, "run_id": run.info.run_id,
                     "params": dict(run.data.params), "metrics": dict(run.data.metrics),
                     "tags": dict(run.data.tags)})
    if missing:
        raise MissingRunError(
            f"the MLflow store at {tracking_uri()} lacks the runs of {len(missing)} record(s), e.g. "
            f"{missing[0]}. Re-log them from the JSON records with: musicdiff relog metrics/"
        )
    return rows


SCORES_VIEW = "musicdiff-scores"  # the shared view the README links to


def share_scores_view(embeddings: list[str], references: list[str], key: str = SCORES_VIEW) -> str:
    """Store a shared view of the MLflow runs table (the UI's *Share* state, an experiment tag
    ``mlflow.sharedViewState.<key>``): the evaluated systems (runs tagged ``scored``: generated sets and
    floors), sorted by FAD against the first reference set, with a FAD and a KAD column per embedding and
    reference set and the sampler, family and headline tags. Opens as
    ``<ui>/#/experiments/<id>?viewStateShareKey=<key>``; returns the experiment id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name())
    if experiment is None:
        experiment_id = client.create_experiment(experiment_name())
    else:
        experiment_id = experiment.experiment_id
    metric = lambda name: f"metrics.`{name}`"  # noqa: E731 (the UI's column key)
    columns = ["tags.`sampler`", "tags.`family`", "tags.`headline`"]
    columns += [metric(f"{e}/{r}/{m}") for e in embeddings for r in references for m in ("fad", "kad")]
    state = {"searchFilter": "tags.scored = 'true'", "orderByKey": metric(f"{embeddings[0]}/{references[0]}/fad"),
             "orderByAsc": True, "startTime": "ALL", "lifecycleFilter": "Active", "datasetsFilter": [],
             "modelVersionFilter": "All Runs", "selectedColumns": columns, "runsExpanded": {}, "runsPinned": [],
             "runsHidden": [], "runsHiddenMode": "SHOW_ALL", "viewMaximized": False, "runListHidden": False}
    client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{key}", json.dumps(state))
    return str(experiment_id)
