"""A finished layout reused, and brought up to date where an older vocabmap made it.

A layout written before the under-trained score existed gets the score's columns (and its
ranked list); one whose ``neighbours.parquet`` is missing or too short gets its neighbours
searched again. The layout itself (x, y) is never changed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job import neighbours_file, rundir, runread, search, source, tokens, undertrained
from job.config import Config, ModelConfig
from job.knn import l2_normalise
from job.stages import Stages

log = logging.getLogger(__name__)


def reuse(model: ModelConfig, config: Config, folder: Path, stages: Stages,
          ) -> tuple[pd.DataFrame, dict[str, Any], int] | None:
    """The finished layout of ``folder``, its facts and the rows of its ranked list, brought
    up to date; None when there is no finished layout to reuse."""
    stored = _reusable_layout(folder)
    if stored is None:
        return None
    table, facts = stored
    csv = folder / undertrained.CSV
    if undertrained.COLUMN not in table:
        table, facts, ranked_rows = _add_score(model, folder, table, facts, stages)
    elif not csv.is_file():
        log.info("%s is missing: ranking the tokens of the stored layout (the map's "
                 "selection) instead of the whole vocabulary", undertrained.CSV)
        ranked_rows = undertrained.write_ranked(undertrained.ranked(table), csv)
    else:
        ranked_rows = len(pd.read_csv(csv))
    _ensure_neighbours(model, config, folder, table, facts, stages)
    return table, facts, ranked_rows


def _reusable_layout(folder: Path) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """The finished layout and its facts, when both are there (facts.json is written after
    the layout, and removed before a new layout is made, so both means they match)."""
    layout, facts = folder / rundir.LAYOUT, folder / rundir.FACTS
    if not (layout.is_file() and facts.is_file()):
        return None
    log.info("reusing the finished layout in %s (delete it to recompute)", folder)
    return runread.layout(folder), runread.Facts.read(folder).data


def _add_score(model: ModelConfig, folder: Path, table: pd.DataFrame, facts: dict[str, Any],
               stages: Stages) -> tuple[pd.DataFrame, dict[str, Any], int]:
    """A layout written before the under-trained score existed: compute the score from the
    model's input embeddings (and an untied model's output matrix) and add its columns to
    the stored layout, keeping x and y."""
    log.info("the layout in %s has no under-trained score (written by an earlier version): "
             "computing it from the model; the layout itself is kept", folder)
    with stages.stage("load"):
        emb = source.load(model)
    with stages.stage("tokens"):
        full = tokens.build_table(emb.tokenizer, emb.matrix.shape[0],
                                  tokens.vocab_file_tokens(emb.path))
    with stages.stage("undertrained"):
        own_input, output = emb.score_matrices()
        scored = undertrained.add_columns(full, own_input, emb.tokenizer, output)
    del emb
    rows = table["token_id"].to_numpy()
    table[undertrained.COLUMN] = full[undertrained.COLUMN].to_numpy()[rows]
    table[undertrained.ROUNDTRIP] = full[undertrained.ROUNDTRIP].array[rows]
    facts["undertrained"] = scored | {"added_to_stored_layout": True}
    ranked_rows = undertrained.write_ranked(undertrained.ranked(full, on_map=rows),
                                            folder / undertrained.CSV)
    rundir.write_parquet(folder / rundir.LAYOUT, table)
    rundir.write_json(folder / rundir.FACTS, facts)
    return table, facts, ranked_rows


def _ensure_neighbours(model: ModelConfig, config: Config, folder: Path, table: pd.DataFrame,
                       facts: dict[str, Any], stages: Stages) -> None:
    """A reused layout whose ``neighbours.parquet`` is missing (a run directory of an older
    vocabmap) or holds fewer than ``render.neighbours`` per token gets them searched again
    from the model's matrix; the layout itself is kept."""
    k = config.render.neighbours
    meta = runread.neighbours_meta(folder)
    if not k or (meta and meta.get("k", 0) >= min(k, len(table) - 1)):
        return
    log.info("%s %s: searching the neighbours again (the layout is kept)", rundir.NEIGHBOURS,
             "holds fewer than render.neighbours" if meta else "is missing")
    with stages.stage("neighbours"):
        if (folder / rundir.VECTORS).is_file():  # a contextual run's mapped vectors
            X = np.load(folder / rundir.VECTORS).astype(np.float32)
        else:
            X = source.load(model, both=False).matrix[table["token_id"].to_numpy()]
        metric = config.layout.metric  # part of the run key: the layout's own
        if metric == "cosine":
            X = l2_normalise(X, inplace=True)
        route = search.choose_search(config.layout.knn, X.shape[0], X.shape[1], False)
        graph = route.graph(X, min(3 * k, len(X) - 1)) if not route.exact else None
        near, meta = neighbours_file.build(X, graph, table[["x", "y"]].to_numpy(),
                                             table["token_id"].to_numpy(), k, metric,
                                             route.exact)
        meta["source"] = f"searched again for a reused layout ({meta['source']})"
    neighbours_file.write(folder / rundir.NEIGHBOURS, near, meta | {"file": rundir.NEIGHBOURS})
    facts["neighbours"] = meta | {"file": rundir.NEIGHBOURS}
    rundir.write_json(folder / rundir.FACTS, facts)
