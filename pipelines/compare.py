"""Stage compare: is one system better than another? Rankings with paired tests, per embedding and
reference set (``musicdiff.evaluation.comparison``).

The systems are every evaluation set: the generated sets of ``samples``, the external ``systems`` and the real floors of
``floors``. Against each reference set of ``reference_sets`` and with each embedding, the adequately
sampled systems are ranked by FAD and the under-sampled ones by KAD, and each is compared with its
neighbour above: the FAD difference at a matched number of clips with a 95% bootstrap interval that
resamples both evaluation sets, the KAD difference with its jackknife interval, and the verdict.
Metrics: ``<embedding>/<reference>/<system>/<field>`` (rank, fad, kad with CIs, n_clips, adequate, and
``diff_*`` against the system above).
"""

from __future__ import annotations

from musicdiff.evaluation.comparison import rank
from musicdiff.evaluation.sets import EmbeddedSet
from musicdiff.tracking import stage_run

from pipelines import evaluation as ev
from pipelines.evaluation import floor_names
from pipelines.common import load_params, parser, record_path


def systems(params: dict) -> list[str]:
    """Every evaluation set: the generated sets, the external systems, then the floors."""
    return [*params["samples"], *(params.get("systems") or {}), *floor_names(params)]


def main() -> None:
    parser(__doc__).parse_args()
    params = load_params()
    names = systems(params)
    settings = ev.settings(params)
    with stage_run("compare", "all", record_path("compare", "all"),
                   tags={"systems": ",".join(names), "reference_sets": ",".join(params["reference_sets"])}) as run:
        run.log_params({"evaluation": params["evaluation"], "systems": names, "embeddings": ev.embeddings(params)})
        for embedding in ev.embeddings(params):
            sets = {name: EmbeddedSet.load(ev.set_path(params, name, embedding)) for name in names}
            for ref_name, reference in ev.references(params, embedding, shipped=False).items():
                metrics = {}
                for row in rank(sets, reference, settings):
                    prefix = f"{embedding}/{ref_name}/{row.system}"
                    metrics.update({f"{prefix}/{k}": float(v) for k, v in (
                        ("rank", row.rank), ("fad", row.fad), ("fad_ci_low", row.fad_low),
                        ("fad_ci_high", row.fad_high), ("kad", row.kad), ("kad_ci_low", row.kad_low),
                        ("kad_ci_high", row.kad_high), ("n_clips", row.n_clips), ("adequate", row.adequate))})
                    if row.versus_above is not None:
                        c = row.versus_above
                        metrics.update({f"{prefix}/diff_{k}": float(v) for k, v in (
                            ("n_matched", c.n_matched), ("fad", c.fad_diff), ("fad_low", c.fad_low),
                            ("fad_high", c.fad_high), ("fad_adequate", c.fad_adequate), ("kad", c.kad_diff),
                            ("kad_low", c.kad_low), ("kad_high", c.kad_high))})
                run.log_metrics(metrics)


if __name__ == "__main__":
    main()
