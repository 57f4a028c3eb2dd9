"""``neighbours.parquet``: each token's nearest neighbours in the original embedding space.

One row per (token, rank): ``token_id``, ``rank`` (1 = nearest), ``neighbour_id``,
``similarity`` (cosine of the two embedding rows, float32) and ``map_neighbour`` (whether the
neighbour is also among the token's ``k`` nearest tokens on the 2-D map). The order is the
layout's metric (cosine by default; euclidean distance of the raw rows when
``layout.metric = "euclidean"``). The rows come from the kNN graph the layout already
searched: nothing is searched again, except that an approximate (int8) graph's candidates
are re-ranked with float32 products, and the sklearn backend (which searches its own graph)
gets an exact search of its own. The parquet file's metadata (``vocabmap`` key) records
``k``, the metric and how the lists were found.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from job.gpu import to_host
from job.knn import array_module, knn, map_knn, pair_products, squared_norms
from job.rundir import atomic_write

log = logging.getLogger(__name__)

def from_graph(X: Any, graph: tuple[Any, Any] | None, k: int, metric: str, exact: bool,
               ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Top-``k`` neighbour rows (positions in ``X``) and cosine similarities per row of ``X``
    (the layout's matrix: unit rows for ``metric = "cosine"``), from the layout's kNN
    ``graph`` (indices, distances); with ``graph=None``, or fewer than ``k`` columns in it,
    an exact search. Returns (indices, similarities, how they were found).

    The candidates are ranked again by the metric in float32: the first ``2k`` of an
    approximate (int8) graph, the first ``k`` of an exact one, plus one per all-zero row (a zero
    row, such as an untrained padding token, has cosine similarity 0 to every row; the
    graph's search puts it apart the same way, ``job.knn.zero_rows_apart``, but a graph
    made before that listed it at the formula's distance 1, ahead of neighbours with a
    cosine below 0.5)."""
    xp = array_module(X)
    n = X.shape[0]
    k = min(k, n - 1)
    zeros = int((to_host(squared_norms(X)) == 0).sum())
    if graph is None or graph[0].shape[1] < k:
        graph = knn(X, min(k + zeros, n - 1))
        how = {"source": "exact search (the layout had no kNN graph of k columns)",
               "exact": True}
        exact = True
    else:
        how = {"source": f"the layout's kNN graph ({graph[0].shape[1]} neighbours per token)",
               "exact": exact}
    # int8 products only swap near-ties, so the true k nearest are among the first 2k
    width = min(graph[0].shape[1], (2 * k if not exact else k) + zeros)
    idx = graph[0][:, :width]
    dots, sq = pair_products(X, xp.asarray(idx))
    dots, sq, idx = to_host(dots), to_host(sq), to_host(idx)
    norms = np.sqrt(sq)
    cos = np.clip(dots / np.maximum(norms[:, None] * norms[idx], 1e-12), -1, 1)
    if width > k or not exact:  # rank the candidates by the metric, in float32
        if not exact:
            how["reranked"] = f"{width} candidates re-ranked with float32 products"
        key = -cos if metric == "cosine" else sq[:, None] + sq[idx] - 2 * dots
        order = np.argsort(key, axis=1, kind="stable")[:, :k]
        idx = np.take_along_axis(idx, order, axis=1)
        cos = np.take_along_axis(cos, order, axis=1)
    return idx.astype(np.int64), cos.astype(np.float32), how


def map_neighbours(coords: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Whether ``idx[i, j]`` is among row i's ``idx.shape[1]`` nearest points on the map
    (euclidean in 2-D, the point itself left out)."""
    on_map = map_knn(coords, idx.shape[1])
    return (idx[:, :, None] == on_map[:, None, :]).any(axis=2)


def frame(token_ids: np.ndarray, idx: np.ndarray, sim: np.ndarray, on_map: np.ndarray,
          ) -> pd.DataFrame:
    """The file's table from row positions: ids are the tokens' own ids."""
    n, k = idx.shape
    token_ids = np.asarray(token_ids, dtype=np.int32)
    return pd.DataFrame({
        "token_id": np.repeat(token_ids, k),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int16), n),
        "neighbour_id": token_ids[idx.ravel()],
        "similarity": sim.ravel().astype(np.float32),
        "map_neighbour": on_map.ravel(),
    })


def build(X: Any, graph: tuple[Any, Any] | None, coords: np.ndarray,
          token_ids: np.ndarray, k: int, metric: str, exact: bool,
          ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The neighbours table and its metadata for one layout (see :func:`from_graph`)."""
    idx, sim, how = from_graph(X, graph, k, metric, exact)
    table = frame(token_ids, idx, sim, map_neighbours(np.asarray(coords), idx))
    meta = {"k": int(idx.shape[1]), "metric": metric, **how,
            "map_overlap": round(float(table["map_neighbour"].mean()), 4)}
    return table, meta


def write(path: Path, table: pd.DataFrame, meta: dict[str, Any]) -> Path:
    """Write the table atomically, ``meta`` in the parquet metadata under ``vocabmap``."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata(
        (arrow.schema.metadata or {}) | {b"vocabmap": json.dumps(meta).encode()})
    return atomic_write(path, lambda tmp: pq.write_table(arrow, tmp))
