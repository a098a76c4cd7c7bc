"""What every scoring stage shares: the protocol and settings from params.yaml, the embeddings, where
embedding sets live, and one call that embeds a folder and scores it against every reference set.

The numbers come from ``musicdiff.evaluation`` (protocol, embedding sets, the one scoring path); this
module only knows the pipeline's file layout and params:

* ``data/embeddings/reference/<reference set>/<embedding>.npz`` (stage ``reference@``);
* ``data/embeddings/eval/<evaluation set>/<embedding>.npz`` (stages ``evaluate@`` and ``floor@``);
* MLflow metric keys ``<embedding>/<reference set>/<metric>`` (e.g. ``musicnn/heldout/fad``).
"""

from __future__ import annotations

from pathlib import Path

from pipelines.common import ROOT

CACHE = ROOT / "data" / "cache" / "embeddings"


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


def build_embedding(params: dict, name: str):
    """The embedding ``name`` with its ``embed.options``; MusiCNN's checkpoint from ``data/weights/musicnn``
    (stage ``weights``). Raises the loader's error naming missing weights."""
    from musicdiff.evaluation.embeddings.registry import get_embedding

    options = dict((params["embed"].get("options") or {}).get(name) or {})
    if name == "musicnn":
        from musicdiff.evaluation.embeddings.musicnn import fetch_musicnn_checkpoint

        options["checkpoint"] = fetch_musicnn_checkpoint(ROOT / "data" / "weights" / "musicnn")
    return get_embedding(name, **options)


def reference_path(reference: str, embedding: str) -> Path:
    return ROOT / "data" / "embeddings" / "reference" / reference / f"{embedding}.npz"


def eval_path(name: str, embedding: str, floor: bool = False) -> Path:
    """Where an evaluation set's embeddings live: ``data/embeddings/eval/<set>/`` for generated sets,
    ``data/embeddings/floors/<set>/`` for the floors."""
    return ROOT / "data" / "embeddings" / ("floors" if floor else "eval") / name / f"{embedding}.npz"


def set_path(params: dict, name: str, embedding: str) -> Path:
    """``eval_path`` of evaluation set ``name``, a generated set or a floor."""
    return eval_path(name, embedding, floor=name in floor_names(params))


def audio_files(folder: Path) -> list[Path]:
    """The WAV files under ``folder`` (clips the pipeline wrote), sorted. Raises ``FileNotFoundError`` naming
    an empty or missing folder."""
    files = sorted(Path(folder).rglob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no WAV files under {folder}")
    return files


def input_policy(params: dict):
    """The bad-input policy of params.yaml's ``inputs`` section (``musicdiff.data.screening``)."""
    from musicdiff.data.screening import InputPolicy

    return InputPolicy.from_params(params.get("inputs"))


def screen_folder(params: dict, folder: Path, name: str, evaluated: bool = True):
    """Every audio file under ``folder`` listed and screened by the bad-input policy under the params'
    protocol (``musicdiff.evaluation.engine.ScreenedFiles``). Raises ``FileNotFoundError`` naming a missing
    folder or one without audio files (``musicdiff.evaluation.folders.screen_folder``, the entry ``musicdiff fad``
    uses too)."""
    from musicdiff.evaluation.folders import screen_folder as screen

    return screen(folder, protocol(params), name, input_policy(params), evaluated=evaluated)


def embed_folder(params: dict, embedding, folder: Path, name: str, max_clips: int | None = None, seed: int = 0,
                 screened=None, evaluated: bool = True):
    """The evaluation clips of every audio file under ``folder`` embedded with ``embedding`` (an embedding
    object), under the params' protocol and bad-input policy, through the shared cache. ``evaluated``
    (default) screens it as an evaluated set (generated or degraded clips); reference sets pass False."""
    from musicdiff.evaluation.engine import embed_files

    screened = screened or screen_folder(params, folder, name, evaluated)
    return embed_files(embedding, screened.paths, protocol(params), name, cache_dir=CACHE, root=ROOT,
                       max_clips=max_clips, seed=seed, policy=input_policy(params), screened=screened)


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


def evaluate_folder(params: dict, run, folder: Path, name: str, max_clips: int | None = None) -> dict:
    """Screen every audio file of ``folder`` (the bad-input policy; skips logged to ``run``), embed it with each embedding, save each set to ``set_path(params, name, ...)``
    and score it against every reference set; logs metrics and flag tags to ``run``. Returns
    ``{embedding: EmbeddedSet}``."""
    score_settings = settings(params)
    screened = screen_folder(params, folder, name)
    run.log_inputs(screened.log)
    screened.log.check(input_policy(params).max_skip_fraction)
    out = {}
    for embedding_name in embeddings(params):
        embedding = build_embedding(params, embedding_name)
        evaluation = embed_folder(params, embedding, folder, name, max_clips=max_clips,
                                  seed=params["evaluation"].get("seed", 0), screened=screened)
        evaluation.save(set_path(params, name, embedding_name))
        metrics, tags = score_all(evaluation, references(params, embedding_name), score_settings)
        run.log_metrics(metrics)
        if tags:
            run.set_tags(tags)
        out[embedding_name] = evaluation
    run.log_params({"evaluation": params["evaluation"], "embeddings": embeddings(params),
                    "reference_sets": list(params["reference_sets"])})
    run.set_tags({"scored": "true"})  # one row per evaluated system in the MLflow UI's score view
    return out


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
