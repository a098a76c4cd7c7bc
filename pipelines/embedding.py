"""What every stage that embeds audio shares: the embedding networks with their params options and
weights, the bad-input policy, screening a folder, embedding it through the shared cache, and one call
that embeds a folder and scores it against every reference set (``pipelines/evaluation.py``).

Embedding caches live in ``data/cache/embeddings`` (content-addressed: ``musicdiff.evaluation.engine``).
"""

from __future__ import annotations

from pathlib import Path

from pipelines.common import ROOT
from pipelines.evaluation import embeddings, protocol, references, score_all, set_path, settings

CACHE = ROOT / "data" / "cache" / "embeddings"


def build_embedding(params: dict, name: str):
    """The embedding ``name`` with its ``embed.options``; MusiCNN's checkpoint from ``data/weights/musicnn``
    (stage ``weights``). Raises the loader's error naming missing weights."""
    from musicdiff.evaluation.embeddings.registry import get_embedding

    options = dict((params["embed"].get("options") or {}).get(name) or {})
    if name == "musicnn":
        from musicdiff.evaluation.embeddings.musicnn import fetch_musicnn_checkpoint

        options["checkpoint"] = fetch_musicnn_checkpoint(ROOT / "data" / "weights" / "musicnn")
    return get_embedding(name, **options)


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
