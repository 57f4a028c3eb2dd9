"""One model through every stage: source → tokens → layout → quality → render → run directory.

A finished layout in the run directory is reused: a rerun only re-renders.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job import contextual, quality, reduce, rundir, select, source, tokens
from job.config import Config, ModelConfig
from job.knn import knn, l2_normalise
from job.render import pictures, zooms

log = logging.getLogger(__name__)


def _to_device(matrix: np.ndarray, backend: str) -> Any:
    """The matrix on the GPU (cupy, uploaded once; normalisation, kNN, t-SNE and the quality
    score then run there) for the cuML backend, else as it is."""
    if backend == "cuml":
        import cupy

        from job.reduce.cuml import track_device_memory

        track_device_memory()
        return cupy.asarray(matrix, dtype=cupy.float32)
    return matrix


def _device_info(backend: str) -> dict[str, Any]:
    """Where the layout ran: the CPU, or the GPU's name, memory and peak use (MiB)."""
    if backend != "cuml":
        return {"kind": "cpu"}
    import cupy

    from job.reduce.cuml import peak_device_memory

    props = cupy.cuda.runtime.getDeviceProperties(0)
    return {"kind": "cuda", "name": reduce.gpu_name(),
            "total_mib": round(props["totalGlobalMem"] / 2**20, 1),
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "peak_memory": peak_device_memory()}


def contextualise(emb: source.Embeddings, config: Config, stages: rundir.Stages,
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """Swap the input embeddings for contextual means; return occurrence counts and facts."""
    cfg = config.contextual
    with stages.stage("contextual"):
        vectors = contextual.compute(emb.path, emb.tokenizer, cfg, emb.matrix.shape[0])
    emb.matrix = vectors.means()
    seen = vectors.counts > 0
    kept = vectors.counts >= cfg.min_count
    facts = {"corpus": list(cfg.corpus), "layer": cfg.layer, "min_count": cfg.min_count,
             "texts": vectors.texts, "tokens": vectors.tokens, "device": vectors.device,
             "seconds": vectors.seconds, "tokens_per_second": round(
                 vectors.tokens / max(vectors.seconds, 1e-9), 1),
             "vocabulary_seen": int(seen.sum()), "kept": int(kept.sum()),
             "left_out_below_min_count": int((seen & ~kept).sum()),
             "never_seen": int((~seen).sum())}
    log.info("contextual: %d vocabulary tokens seen, %d kept (>= %d occurrences), %d below, "
             "%d never seen", facts["vocabulary_seen"], facts["kept"], cfg.min_count,
             facts["left_out_below_min_count"], facts["never_seen"])
    return vectors.counts, facts


def layout_model(emb: source.Embeddings, config: Config, stages: rundir.Stages,
                 occurrences: np.ndarray | None = None,
                 ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Token table with x, y for the selected rows, and what the manifest should record.

    With ``occurrences`` (contextual vectors), tokens seen fewer than ``min_count`` times are
    left out before the token selection applies.
    """
    with stages.stage("tokens"):
        table = tokens.build_table(emb.tokenizer, emb.matrix.shape[0],
                                   tokens.vocab_file_tokens(emb.path))
        vocabulary = table.attrs["vocabulary_checks"]
        if occurrences is not None:
            table["occurrences"] = occurrences
            table = table[occurrences >= config.contextual.min_count]
        rows, selection = select.select(table, config.tokens)
        rows = table.index.to_numpy()[rows]  # positions → vocabulary rows
        table = table.loc[rows].reset_index(drop=True)
    log.info("%s: %d of %d tokens selected (%s), %d dims", emb.label, len(rows),
             emb.matrix.shape[0], selection["rule"], emb.matrix.shape[1])
    # everything the token table can tell is checked before the kNN and the layout start
    zooms.check_required(table, config.render)
    source.check_finite(emb.matrix, rows, emb.path)
    cfg, lowered = select.fit_perplexity(config.layout, len(rows))
    if lowered:
        selection["perplexity_lowered"] = lowered
    backend, why = reduce.choose(config.layout.backend)
    log.info("t-SNE backend: %s (%s)", backend, why)
    with stages.stage("prepare"):
        X = _to_device(np.ascontiguousarray(emb.matrix[rows]), backend)
        if cfg.metric == "cosine":
            X = l2_normalise(X)
    with stages.stage("knn"):
        graph = knn(X, reduce.n_neighbors(cfg, X.shape[0])) if backend != "sklearn" else None
    with stages.stage("layout"):
        layout = reduce.fit(X, cfg, backend, graph)
    with stages.stage("quality"):
        q = config.quality
        score = quality.knn_preservation(X, layout.coords, q.k, q.sample, q.seed,
                                         neighbours=graph[0] if graph is not None else None)
    log.info("kNN preservation at k=%d on %d tokens: %.3f", score["k"], score["sample"],
             score["knn_preservation"])
    table["x"] = layout.coords[:, 0]
    table["y"] = layout.coords[:, 1]
    facts = {
        "model": {"id": emb.model_id, "path": emb.path, "revision": emb.revision,
                  "embeddings": "contextual" if occurrences is not None else "input",
                  "label": emb.label, "family": table.attrs.get("family", ""),
                  "vocab_size": int(emb.matrix.shape[0]), "dims": int(emb.matrix.shape[1]),
                  "stored_dtype": emb.stored_dtype, "read_by": emb.method,
                  "tensor": emb.tensor_name, "padding_rows_dropped": emb.padding_rows,
                  "padding_share": round(emb.padding_rows / (emb.matrix.shape[0]
                                                             + emb.padding_rows), 4)},
        "vocabulary": vocabulary,
        "selection": selection,
        "backend": {"name": backend, "why": why, "effective_params": layout.params},
        "device": _device_info(backend),
        "quality": score,
    }
    return table, facts


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.save(handle, array)


def run_model(model: ModelConfig, config: Config) -> Path:
    """Lay out (or reuse) and render one model; returns its run directory."""
    folder = rundir.run_dir(model, config)
    folder.mkdir(parents=True, exist_ok=True)
    if rundir.clean_stale_temp(folder):
        log.info("removed temporary files left by an interrupted run in %s", folder)
    stages = rundir.Stages()
    layout_path = folder / rundir.LAYOUT
    contextual_run = model.embeddings == "contextual"
    if layout_path.is_file() and (folder / rundir.FACTS).is_file():
        log.info("reusing the finished layout in %s (delete it to recompute)", folder)
        table = pd.read_parquet(layout_path)
        facts = rundir.read_json(folder / rundir.FACTS)
        reused = True
    else:
        if contextual_run:
            contextual.check_corpus(config.contextual)  # before the model is loaded
        with stages.stage("load"):
            emb = source.load(model)
        counts, ctx = contextualise(emb, config, stages) if contextual_run else (None, None)
        table, facts = layout_model(emb, config, stages, counts)
        if ctx:
            # the corpus pass is costly to repeat: keep the mapped vectors for `compare`
            vectors = emb.matrix[table["token_id"].to_numpy()].astype(np.float16)
            rundir.atomic_write(folder / rundir.VECTORS, lambda tmp: _save_npy(tmp, vectors))
            facts["contextual"] = ctx | {"vectors_file": rundir.VECTORS}
        del emb
        facts["layout_seconds"] = dict(stages.seconds)
        rundir.write_parquet(layout_path, table)
        rundir.write_json(folder / rundir.FACTS, facts)
        reused = False
    with stages.stage("render"):
        drawn = pictures.render_all(table, config.render, folder)
    manifest = {
        **facts,  # includes layout_seconds: the stages that made the layout
        "config": config.to_dict() | {"models": [vars(model)]},
        "run_key": rundir.run_key(model, config),
        "layout_reused": reused,
        "rendered": drawn,
        "seconds": {**stages.seconds, "total": stages.total},  # this run's stages
        "peak_rss_mib": round(rundir.peak_rss_mib(), 1),
        "environment": rundir.environment(),
    }
    rundir.write_json(folder / rundir.MANIFEST, manifest)
    return folder
