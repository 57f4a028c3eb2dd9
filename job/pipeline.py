"""One model through every stage: source → tokens → layout → quality → render → run directory.

A finished layout in the run directory is reused (job/upgrade.py brings one of an older
vocabmap up to date): a rerun only re-renders, and only what changed (job/render_cache.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job import (
    contextual,
    gpu,
    memory,
    neighbours_file,
    quality,
    reduce,
    render_cache,
    rundir,
    runread,
    search,
    select,
    source,
    tokens,
    undertrained,
    upgrade,
    weights,
)
from job.config import Config, LayoutConfig, ModelConfig
from job.knn import l2_normalise
from job.render import zooms
from job.stages import Stages

log = logging.getLogger(__name__)


def _on_device(backend: str) -> bool:
    """The layout runs on the GPU: the matrix is uploaded once and normalisation, kNN,
    t-SNE and the quality score run there."""
    return backend == "cuml"


def _all_rows(matrix: np.ndarray, rows: np.ndarray) -> bool:
    return len(rows) == matrix.shape[0] and bool((rows == np.arange(len(rows))).all())


def _selected_rows(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The selected rows, in order: the matrix itself when all are selected (no copy)."""
    if _all_rows(matrix, rows):
        return matrix
    return np.ascontiguousarray(matrix[rows])


def _check_read(rows: int, dims: int, matrices: int = 1) -> None:
    """Before a matrix is read: stop when even its smallest selection could not fit beside
    the ``matrices - 1`` already read (an untied model's two, for the under-trained score)."""
    memory.check_read(rows, dims, memory.host_limit(), matrices)


def memory_plan(emb: source.Embeddings, rows: np.ndarray, cfg: LayoutConfig, backend: str,
                route: search.Search | None, contextual_run: bool) -> memory.Plan:
    """Estimate the layout's peak memory, compare it with what this job may use and decide
    (job/memory.py); a job that cannot fit stops here, before the first costly stage."""
    matrix = emb.matrix
    job = memory.Job(
        vocab=matrix.shape[0], rows=len(rows), dims=matrix.shape[1],
        neighbours=reduce.n_neighbors(cfg, len(rows)), route=route.name if route else "",
        backend=backend, matrices=2 if contextual_run else 1, scored=1 if emb.tied else 2,
        copy=not _all_rows(matrix, rows) or (contextual_run and cfg.metric == "cosine"))
    device = memory.device_limit() if _on_device(backend) else None
    plan = memory.plan(job, memory.host_limit(), device)
    log.info("%s", plan.describe())
    return plan


def _select(emb: source.Embeddings, config: Config, stages: Stages,
            occurrences: np.ndarray | None, input_matrix: np.ndarray | None,
            ) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any], pd.DataFrame]:
    """The token table of the selected rows, their vocabulary rows, the facts of the
    vocabulary, score and selection, and the ranked list of the most under-trained tokens."""
    with stages.stage("tokens"):
        table = tokens.build_table(emb.tokenizer, emb.matrix.shape[0],
                                   tokens.vocab_file_tokens(emb.path))
        vocabulary = table.attrs["vocabulary_checks"]
    with stages.stage("undertrained"):
        own_input, output = emb.score_matrices()
        scored = undertrained.add_columns(
            table, own_input if input_matrix is None else input_matrix, emb.tokenizer, output)
        emb.other = None  # read for the score only
    with stages.stage("select"):  # each stage is announced once
        vocabulary_table = table
        if occurrences is not None:
            table["occurrences"] = occurrences
            table = table[occurrences >= config.contextual.min_count]
        rows, selection = select.select(table, config.tokens)
        rows = table.index.to_numpy()[rows]  # positions → vocabulary rows
        table = table.loc[rows].reset_index(drop=True)
        ranked = undertrained.ranked(vocabulary_table, on_map=table["token_id"].to_numpy())
        del vocabulary_table
    log.info("%s: %d of %d tokens selected (%s), %d dims", emb.label, len(rows),
             emb.matrix.shape[0], selection["rule"], emb.matrix.shape[1])
    facts = {"vocabulary": vocabulary, "selection": selection, "undertrained": scored}
    return table, rows, facts, ranked


def _prepare(emb: source.Embeddings, rows: np.ndarray, cfg: LayoutConfig, backend: str,
             contextual_run: bool, stages: Stages) -> Any:
    """The matrix the layout sees: the selected rows, on the device, row-normalised."""
    with stages.stage("prepare"):
        X = _selected_rows(emb.matrix, rows)
        if _on_device(backend):
            X = gpu.to_device(X)
        if cfg.metric == "cosine":
            # the input matrix is not needed again, except for a contextual run's vectors
            X = l2_normalise(X, inplace=X is not emb.matrix or not contextual_run)
    return X


def _model_facts(emb: source.Embeddings, family: str, contextual_run: bool) -> dict[str, Any]:
    """The manifest's ``model``."""
    return {"id": emb.model_id, "path": emb.path, "revision": emb.revision,
            "embeddings": "contextual" if contextual_run else "input",
            "label": emb.label, "family": family,
            "vocab_size": int(emb.matrix.shape[0]), "dims": int(emb.matrix.shape[1]),
            "stored_dtype": emb.stored_dtype, "read_by": emb.method,
            "tensor": emb.tensor_name, "padding_rows_dropped": emb.padding_rows,
            "padding_share": round(emb.padding_rows / (emb.matrix.shape[0]
                                                       + emb.padding_rows), 4),
            "matrix": emb.kind, "tied": emb.tied, "tied_why": emb.tied_why,
            "output_bias": emb.bias}


def layout_model(emb: source.Embeddings, config: Config, stages: Stages,
                 occurrences: np.ndarray | None = None, input_matrix: np.ndarray | None = None,
                 ) -> tuple[pd.DataFrame, dict[str, Any], pd.DataFrame | None, pd.DataFrame]:
    """Token table with x, y for the selected rows, what the manifest should record, each
    token's original-space neighbours (``neighbours.parquet``; None when
    ``render.neighbours`` is 0), and the ranked list of the whole vocabulary's most
    under-trained tokens (``undertrained.csv``).

    With ``occurrences`` (contextual vectors), tokens seen fewer than ``min_count`` times are
    left out before the token selection applies. The under-trained score is computed on the
    whole vocabulary of ``input_matrix`` (default ``emb.matrix``): a contextual run passes
    the input embeddings it replaced, since the score reads what training left in them.
    """
    contextual_run = occurrences is not None
    table, rows, found, ranked = _select(emb, config, stages, occurrences, input_matrix)
    # everything the token table can tell is checked before the kNN and the layout start
    zooms.check_required(table, config.render)
    weights.check_finite(emb.matrix, rows, emb.path)
    cfg, lowered = select.fit_perplexity(config.layout, len(rows))
    if lowered:
        found["selection"]["perplexity_lowered"] = lowered
    backend, why = reduce.choose(config.layout.backend)
    log.info("t-SNE backend: %s (%s)", backend, why)
    route = None  # sklearn, the post's baseline, searches its own neighbours
    if backend != "sklearn":
        route = search.choose_search(cfg.knn, len(rows), emb.matrix.shape[1],
                                     _on_device(backend))
        log.info("kNN search: %s (%s)", route.name, route.why)
    plan = memory_plan(emb, rows, cfg, backend, route, contextual_run)
    X = _prepare(emb, rows, cfg, backend, contextual_run, stages)
    layout, graph = reduce.search_and_fit(X, cfg, backend, route, stages, in_place=plan.in_place)
    with stages.stage("quality"):
        q = config.quality
        score = quality.of_layout(X, layout.coords, graph, route, q.k, q.sample, q.seed)
    log.info("kNN preservation at k=%d on %d tokens: %.3f%s", score["k"], score["sample"],
             score["knn_preservation"], f"; the kNN graph holds {score['graph_recall']:.3f} of "
             "the exact neighbours" if "graph_recall" in score else "")
    table["x"] = layout.coords[:, 0]
    table["y"] = layout.coords[:, 1]
    near = None
    if config.render.neighbours:
        with stages.stage("neighbours"):
            near, near_facts = neighbours_file.build(
                X, graph, layout.coords, table["token_id"].to_numpy(), config.render.neighbours,
                cfg.metric, route is None or route.exact)
    facts = {
        "model": _model_facts(emb, table.attrs.get("family", ""), contextual_run),
        "vocabulary": found["vocabulary"],
        "selection": found["selection"],
        "backend": {"name": backend, "why": why, "effective_params": layout.params},
        "knn": route.record() if route else None,
        "device": gpu.device_info() if _on_device(backend) else {"kind": "cpu"},
        "quality": score,
        "undertrained": found["undertrained"],
        "memory": plan.record(),
    }
    if near is not None:
        facts["neighbours"] = near_facts | {"file": rundir.NEIGHBOURS}
    return table, facts, near, ranked


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.save(handle, array)


def run_model(model: ModelConfig, config: Config) -> Path:
    """Lay out (or reuse) and render one model; returns its run directory.

    The run holds the run directory's lock throughout (``rundir.claim``). Files land in this
    order, each atomically: ``vectors.npy`` (contextual), ``layout.parquet``,
    ``undertrained.csv``, ``facts.json``, the pictures, ``manifest.json``; so a run killed
    at any moment leaves a prefix that the rerun reuses (a layout only with its facts) or
    redoes.
    """
    folder, key = rundir.run_dir(model, config), rundir.run_key(model, config)
    with rundir.claim(folder):
        stages = Stages()
        stored = upgrade.reuse(model, config, folder, stages)
        near = None
        if stored:
            table, facts, ranked_rows = stored
        else:
            table, facts, near, ranked_rows = _make_layout(model, config, folder, stages)
        with stages.stage("render"):
            pictures_part = render_cache.render_pictures(
                table, config.render, folder, near=near, model=runread.map_title(
                    facts["model"]["label"], facts["model"].get("matrix", "input")))
        manifest = {
            **facts,  # includes layout_seconds: the stages that made the layout
            "config": config.to_dict() | {"models": [vars(model)]},
            "run_key": key,
            "layout_reused": stored is not None,
            **pictures_part,
            "ranked_list": {"file": undertrained.CSV, "rows": ranked_rows},
            "seconds": {**stages.seconds, "total": stages.total},  # this run's stages
            "peak_rss_mib": stages.overall_peak_mib,
            "memory": _memory_entry(facts, stages.overall_peak_mib, stored is not None),
            "peak_rss_mib_per_stage": dict(stages.peak_mib),
            "environment": rundir.environment(),
        }
        before = runread.Manifest.read_if_any(folder) if stored else None
        if before and before.verified:  # `vocabmap verify` found it; the layout kept it
            manifest["verified"] = before.verified
        rundir.write_json(folder / rundir.MANIFEST, manifest)
    return folder


def _memory_entry(facts: dict[str, Any], peak: float, reused: bool) -> dict[str, Any]:
    """The manifest's ``memory``: the layout's estimate and limit with this run's measured
    peak; a run that reused the layout measured only its render, so its peak is kept apart."""
    entry = dict(facts.get("memory") or {})
    if reused or not entry:
        return entry | {"peak_mib_of_this_rerun": peak} if entry else {}
    return entry | {"peak_mib": peak,
                    "estimate_over_peak": round(entry["estimate_mib"] / max(peak, 1.0), 3)}


def _make_layout(model: ModelConfig, config: Config, folder: Path, stages: Stages,
                 ) -> tuple[pd.DataFrame, dict[str, Any], pd.DataFrame | None, int]:
    """Compute the layout and write ``layout.parquet`` then ``facts.json``; returns the
    table, its facts, the neighbours table (or None) and the ranked list's rows."""
    for old in (rundir.FACTS, rundir.MANIFEST):  # they describe a layout that is gone
        (folder / old).unlink(missing_ok=True)
    contextual_run = model.embeddings == "contextual"
    if contextual_run:
        contextual.check_corpus(config.contextual)  # before the model is loaded
    with stages.stage("load"):
        emb = source.load(model, before_read=_check_read)
    # the under-trained score reads the input embeddings, which a contextual run replaces
    input_matrix = emb.matrix if contextual_run else None
    counts, ctx = None, None
    if contextual_run:  # the input embeddings swapped for contextual means
        with stages.stage("contextual"):
            vectors = contextual.compute(emb.path, emb.tokenizer, config.contextual,
                                         emb.matrix.shape[0])
        emb.matrix, counts = vectors.means(), vectors.counts
        ctx = contextual.facts(vectors, config.contextual)
        del vectors  # its float64 sums: as large as the matrix, twice over
    table, facts, near, ranked = layout_model(emb, config, stages, counts, input_matrix)
    del input_matrix
    if ctx:
        # the corpus pass is costly to repeat: keep the mapped vectors for `compare`
        vectors = emb.matrix[table["token_id"].to_numpy()].astype(np.float16)
        rundir.atomic_write(folder / rundir.VECTORS, lambda tmp: _save_npy(tmp, vectors))
        facts["contextual"] = ctx | {"vectors_file": rundir.VECTORS}
    del emb
    facts["layout_seconds"] = dict(stages.seconds)
    facts["layout_peak_rss_mib"] = dict(stages.peak_mib)
    rundir.write_parquet(folder / rundir.LAYOUT, table)
    if near is not None:
        neighbours_file.write(folder / rundir.NEIGHBOURS, near, facts["neighbours"])
    # before facts.json: a reusable layout (one with its facts) has its ranked list beside it
    ranked_rows = undertrained.write_ranked(ranked, folder / undertrained.CSV)
    rundir.write_json(folder / rundir.FACTS, facts)
    return table, facts, near, ranked_rows
