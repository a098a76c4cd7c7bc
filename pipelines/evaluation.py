"""What every scoring stage shares: the protocol and settings from params.yaml, the embeddings' names,
where embedding sets live, the reference sets and one call that scores a set against each of them.
Stages that also embed audio use ``pipelines/embedding.py``; a stage that only reads embedding sets
(compare, filter, outliers, sample_size) imports no network.

The numbers come from ``musicdiff.evaluation`` (protocol, embedding sets, the one scoring path); this
module only knows the pipeline's file layout and params:

* ``data/embeddings/reference/<reference set>/<embedding>.npz`` (stage ``reference@``);
* ``data/embeddings/eval/<evaluation set>/<embedding>.npz`` (stages ``evaluate@`` and ``floor@``);
* MLflow metric keys ``<embedding>/<reference set>/<metric>`` (e.g. ``musicnn/heldout/fad``).
"""

from __future__ import annotations

from pathlib import Path

from pipelines.common import ROOT

def protocol(params: dict):
    """The evaluation protocol of params.yaml's ``evaluation`` section."""
    from musicdiff.evaluation.protocol import EvaluationProtocol

    return EvaluationProtocol.from_params(params["evaluation"])


def settings(params: dict):
    """The scoring settings of params.yaml's ``evaluation`` section."""
    from musicdiff.evaluation.scoring import ScoreSettings

    return ScoreSettings.from_params(params["evaluation"])


def embeddings(params: dict) -> list[str]:
    """The embeddings every set is scored with (``embed.embeddings``)."""
    return list(params["embed"]["embeddings"])


def reference_path(reference: str, embedding: str) -> Path:
    return ROOT / "data" / "embeddings" / "reference" / reference / f"{embedding}.npz"


def eval_path(name: str, embedding: str, floor: bool = False) -> Path:
    """Where an evaluation set's embeddings live: ``data/embeddings/eval/<set>/`` for generated sets,
    ``data/embeddings/floors/<set>/`` for the floors."""
    return ROOT / "data" / "embeddings" / ("floors" if floor else "eval") / name / f"{embedding}.npz"


def set_path(params: dict, name: str, embedding: str) -> Path:
    """``eval_path`` of evaluation set ``name``, a generated set or a floor."""
    return eval_path(name, embedding, floor=name in floor_names(params))


def references(params: dict, embedding: str, names: list[str] | None = None, shipped: bool = True) -> dict:
    """``{name: Reference}`` of the reference sets ``names`` (default: all of ``reference_sets``) embedded
    with ``embedding``, plus the shipped statistics (``reference_stats``) that cover it when ``shipped``."""
    from musicdiff.evaluation.scoring import Reference
    from musicdiff.evaluation.sets import EmbeddedSet

    out = {}
    for name in names or list(params["reference_sets"]):
        if name not in params["reference_sets"]:
            raise KeyError(f"no reference set {name!r} in params.yaml reference_sets; known: {sorted(params['reference_sets'])}")
        out[name] = Reference.from_set(EmbeddedSet.load(reference_path(name, embedding)))
    if shipped:
        for name, stats in reference_statistics(params, embedding).items():
            out[name] = Reference.from_stats(name, stats, embedding, params["reference_stats"][name])
    return out


def reference_statistics(params: dict, embedding: str) -> dict:
    """``{name: GaussianStats}`` of the ``reference_stats`` entries that cover ``embedding``.

    Raises ``KeyError`` naming the known sources for an unknown one."""
    from musicdiff.data.reference_stats import shipped_statistics

    found = {}
    for name, source in (params.get("reference_stats") or {}).items():
        try:
            stats = shipped_statistics(source, embedding)
        except KeyError as error:
            raise KeyError(f"reference_stats.{name}: {error.args[0]}") from None
        if stats is not None:
            found[name] = stats
    return found


def score_all(evaluation, refs: dict, score_settings, fad_inf: bool = True, kad: bool = True) -> tuple[dict, dict]:
    """Score ``evaluation`` (an EmbeddedSet) against every reference of ``refs``: returns
    ``(metrics, tags)`` keyed ``<embedding>/<reference>/<name>``."""
    from musicdiff.evaluation.scoring import score_against

    return score_against(evaluation, refs, score_settings, fad_inf_=fad_inf, kad=kad)


def floor_names(params: dict) -> list[str]:
    """The floors' evaluation sets: the real clips (``floors.real.name``), then one per decoder."""
    floors = params.get("floors") or {}
    return ([floors["real"]["name"]] if floors.get("real") else []) + list(floors.get("decoders") or {})


def floor_labels(params: dict) -> dict[str, str]:
    """``{floor set: the label tables print}``."""
    floors = params.get("floors") or {}
    labels = {floors["real"]["name"]: floors["real"]["label"]} if floors.get("real") else {}
    labels.update({k: v["label"] for k, v in (floors.get("decoders") or {}).items()})
    return labels
