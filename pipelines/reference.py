"""Stage reference: the evaluation clips of every reference set, embedded with every embedding.

For each set of ``reference_sets`` in params.yaml, its WAV files are cut by the evaluation protocol
(``evaluation.clip_s`` non-overlapping clips, as every evaluated set is), a seeded subset of at most
``evaluation.max_reference_clips`` clips is kept, and each clip is embedded (through the shared cache)
into ``data/embeddings/reference/<set>/<embedding>.npz``. One MLflow run (and JSON record
``metrics/reference/<set>.json``) per set; metrics per embedding: clips, clips available, files,
embedding frames, independent frames and the dimension. One process embeds every set, so the
networks load once.
"""

from __future__ import annotations

from musicdiff.tracking import stage_run

from pipelines import embedding as em
from pipelines import evaluation as ev
from pipelines.common import ROOT, load_params, parser, record_path, run_stage


def main() -> None:
    parser(__doc__).parse_args()
    params = load_params()
    section = params["evaluation"]
    embeddings = {name: em.build_embedding(params, name) for name in ev.embeddings(params)}
    for name, relative in params["reference_sets"].items():
        folder = ROOT / relative
        with stage_run("reference", name, record_path("reference", name),
                       tags={"reference_set": name, "folder": relative}, data_paths=[folder]) as run:
            run.log_params({"evaluation": section, "embeddings": list(embeddings)})
            for embedding_name, embedding in embeddings.items():
                embedded = em.embed_folder(params, embedding, folder, name, max_clips=section.get("max_reference_clips"),
                                           seed=section.get("reference_seed", 0), evaluated=False)
                embedded.save(ev.reference_path(name, embedding_name))
                run.log_metrics({f"{embedding_name}/clips": len(embedded.clips),
                                 f"{embedding_name}/clips_available": embedded.clips_available,
                                 f"{embedding_name}/files": embedded.files, f"{embedding_name}/frames": len(embedded.frames),
                                 f"{embedding_name}/independent": embedded.n_independent,
                                 f"{embedding_name}/dim": embedded.dim})
                run.set_tags({f"{embedding_name}/weight_sha256": embedded.weight_sha256})


if __name__ == "__main__":
    run_stage(main)
