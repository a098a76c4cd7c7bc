"""``reports/tables/bench.md``: musicdiff against fadtk, from the MLflow run of the ``bench`` stage."""

from __future__ import annotations

import pandas as pd


def bench_frames(runs: list[dict]) -> dict[str, pd.DataFrame]:
    """``{"frechet": ..., "float16": ..., "throughput": ...}`` tables from the ``bench`` run (empty
    dict when there is none). Frechet rows: one per statistics pair; throughput rows: one per
    embedding, with whether the network had its pretrained or randomly initialised weights."""
    bench = [r for r in runs if r["stage"] == "bench"]
    if not bench:
        return {}
    m, t, p = bench[-1]["metrics"], bench[-1]["tags"], bench[-1]["params"]

    def grouped(prefix: str) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for key, value in m.items():
            if key.startswith(prefix + "/"):
                name, field = key[len(prefix) + 1:].rsplit("/", 1)
                out.setdefault(name, {})[field] = value
        return out

    frechet = frechet_frame(grouped("frechet"))
    f16 = m.get("float16/fad_float32")
    float16 = pd.DataFrame([{"FAD from float32 embeddings": f16, "FAD from float16 embeddings (fadtk's storage)":
                             m.get("float16/fad_float16"), "abs difference": m.get("float16/abs_diff")}]) \
        if f16 is not None else pd.DataFrame()
    throughput = pd.DataFrame([
        {"embedding": name, "weights": t.get(f"throughput/{name}/weights", ""), "clips": int(v["clips"]),
         "audio (s)": v["audio_s"], "musicdiff (x real time)": v["ours_x_realtime"],
         "fadtk (x real time)": v["fadtk_x_realtime"], "speed-up": v["fadtk_s"] / v["ours_s"],
         **_stage_columns(v), **_network_columns(v)}
        for name, v in sorted(grouped("throughput").items())])
    skipped = pd.DataFrame([{"embedding": key.split("/")[1], "skipped": value} for key, value in sorted(t.items())
                            if key.startswith("throughput/") and key.endswith("/skipped")])
    return {"frechet": frechet, "bootstrap": bootstrap_frame(m), "float16": float16, "throughput": throughput,
            "skipped": skipped,
            "setup": pd.DataFrame([{"repeats": p.get("repeats"), "threads": p.get("threads"),
                                    "device": t.get("device", "")}])}


def _network_columns(v: dict) -> dict:
    """The network alone (per file as fadtk calls it; batched) and the speed-up no pipeline can pass."""
    names = {"network_per_file_s": "network alone, per file (s)", "network_batched_s": "network alone, batched (s)",
             "ceiling": "ceiling (x fadtk)"}
    return {label: v[key] for key, label in names.items() if key in v}


def _stage_columns(v: dict) -> dict:
    """musicdiff's seconds per stage of one throughput row (runs before the stages were logged have none)."""
    names = {"ours_decode_s": "decode (s, threads)", "ours_resample_s": "resample (s, threads)",
             "ours_embed_s": "network (s)"}
    return {label: v[key] for key, label in names.items() if key in v}


def frechet_frame(pairs: dict[str, dict]) -> pd.DataFrame:
    """One row per statistics pair (``{pair: {metric: value}}`` of the ``frechet/`` metrics): d, FAD,
    musicdiff per distance with the reference factor cached, the factoring once, musicdiff from scratch,
    fadtk, speed-up (fadtk over cached), relative difference. Runs from before the factored reference
    lack the cached and factoring times (NaN)."""
    nan = float("nan")
    rows = []
    for name, v in sorted(pairs.items(), key=lambda item: item[1]["dim"]):
        cached = v.get("ours_cached_s", nan)
        rows.append({"statistics pair": name, "d": int(v["dim"]), "FAD musicdiff": v["ours"],
                     "musicdiff per distance, factor cached (ms)": 1000 * cached,
                     "factoring once (ms)": 1000 * v.get("factor_s", nan),
                     "musicdiff from scratch (ms)": 1000 * v["ours_s"], "fadtk (ms)": 1000 * v["fadtk_s"],
                     "speed-up (cached)": v["fadtk_s"] / cached, "speed-up (from scratch)": v["fadtk_s"] / v["ours_s"],
                     "relative difference": v.get("rel_diff", v["abs_diff"] / abs(v["fadtk"]))})
    return pd.DataFrame(rows)


def bootstrap_frame(metrics: dict[str, float]) -> pd.DataFrame:
    """One row per timed bootstrap (``bootstrap<n>/d<dim>/...`` metrics): resamples, d, clips, frames per
    clip, seconds for the whole bootstrap, per resample, per resample the direct way, the factoring."""
    found: dict[str, dict] = {}
    for key, value in metrics.items():
        if key.startswith("bootstrap") and key.count("/") == 2:
            run, dim, field = key.split("/")
            found.setdefault((run, dim), {})[field] = value
    return pd.DataFrame([
        {"resamples": int(run[len("bootstrap"):]), "d": int(dim[1:]), "clips": int(v.get("clips", 0)),
         "frames per clip": int(v.get("frames_per_clip", 0)), "whole bootstrap (s)": v.get("seconds"),
         "per resample (ms)": 1000 * v.get("per_resample_s", float("nan")),
         "direct per resample (ms)": 1000 * v.get("direct_per_resample_s", float("nan")),
         "factoring once (ms)": 1000 * v.get("factor_s", float("nan"))}
        for (run, dim), v in sorted(found.items())])


def bench_markdown(tables: dict[str, pd.DataFrame]) -> str:
    """The benchmark tables as Markdown, with what each measures."""
    setup = tables["setup"].iloc[0]
    parts = ["# musicdiff against fadtk", "",
             "Generated by `musicdiff report` from the MLflow run of the `bench` stage; do not edit. "
             f"Device {setup['device']}, {setup['threads']} threads; times are medians of {setup['repeats']} runs "
             "after a warm-up.", "",
             "## Frechet distance from the same statistics",
             "",
             "musicdiff in float64: the reference factored once (`C_r = F F^T` from one `eigh`), then "
             "`sum sqrt(eigvalsh(F^T C_e F))` per distance; fadtk: `calc_frechet_distance` (scipy `sqrtm` and `eig` "
             "of `C_r C_e`). 'Factor cached' is the cost of every further distance against the same reference "
             "(bootstrap resamples, FAD-inf subsets, other evaluation sets); 'from scratch' includes the factoring. "
             "Pairs: MusiCNN embeddings of fadtk's MusicGen vs Mubert clips, and pairs of the FMA-Pop statistics "
             "fadtk ships, at the embedding sizes in use.", "",
             tables["frechet"].to_markdown(index=False, floatfmt=".6g"), ""]
    if len(tables.get("bootstrap", [])):
        parts += ["FAD bootstrap: random clips (frames drawn from N(mu + 0.1, C) of FMA-Pop's 512-d CLAP statistics) "
                  "resampled with replacement against those statistics, factored beforehand; 'direct' stacks the "
                  "drawn clips' frames and recomputes their covariance for each resample (the path before "
                  "`ProjectedClips`), timed on a few resamples.", "",
                  tables["bootstrap"].to_markdown(index=False, floatfmt=".4g"), ""]
    if len(tables["float16"]):
        parts += ["## Effect of fadtk's float16 embedding storage", "",
                  "fadtk stores every embedding as float16; the same MusiCNN embeddings in float32 and rounded "
                  "to float16:", "", tables["float16"].to_markdown(index=False, floatfmt=".6g"), ""]
    if len(tables["throughput"]):
        parts += ["## Embedding throughput of the same network", "",
                  "fadtk's 23 ten-second clips embedded from scratch (decode, resample, embed, write) through "
                  "musicdiff's `embed_files` and fadtk's `cache_embedding_file`, with the same model object. "
                  "MusiCNN runs in fadtk's pipeline as a fadtk `ModelLoader` around musicdiff's network. "
                  "musicdiff decodes and resamples in threads beside the network (their seconds are summed over "
                  "the threads and overlap the network's) and embeds many files per forward pass. Both sides: "
                  "medians of interleaved runs after a warm-up. 'Network alone' runs the network on the same "
                  "audio decoded and resampled beforehand, one file per call as fadtk calls it, or all files in "
                  "one batched call; the ceiling is fadtk's time over the faster of the two: no pipeline around "
                  "this network, on this machine, can be faster than fadtk by more.", "",
                  tables["throughput"].to_markdown(index=False, floatfmt=".4g"), ""]
    if len(tables["skipped"]):
        parts += ["Not measured (weights missing; `musicdiff weights` lists them):", "",
                  tables["skipped"].to_markdown(index=False), ""]
    return "\n".join(parts)
