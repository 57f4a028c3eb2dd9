"""Exact k-nearest neighbours by blocked matrix products, on the GPU (cupy) or the CPU (numpy).

Squared euclidean distance ``|a|² + |b|² − 2 a·b`` for a block of query rows against all
rows, then ``argpartition`` for the k smallest. A block is sized so its distance tile stays
within a fixed memory budget, so the whole vocabulary never needs a V × V matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Bytes a (block × V) float32 distance tile may take.
_TILE_BYTES = 256 * 2**20


def array_module(x: Any) -> Any:
    """numpy or cupy, whichever owns ``x``."""
    if type(x).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def l2_normalise(x: Any) -> Any:
    """Rows scaled to unit length (zero rows stay zero); works on numpy and cupy arrays."""
    xp = array_module(x)
    norms = xp.linalg.norm(x, axis=1, keepdims=True)
    return x / xp.maximum(norms, xp.float32(1e-12))


def knn(data: Any, k: int, queries: Any | None = None, query_ids: Any | None = None,
        ) -> tuple[Any, Any]:
    """Indices and euclidean distances of the ``k`` nearest rows of ``data``.

    With ``queries=None`` every row of ``data`` is a query and each row's own index is left
    out. Otherwise ``query_ids`` (the queries' row numbers in ``data``, if they are rows of it)
    are left out of their own neighbour lists. Returns arrays of the same module as ``data``,
    sorted by distance.
    """
    xp = array_module(data)
    if queries is None:
        queries, query_ids = data, xp.arange(data.shape[0])
    n, m = queries.shape[0], data.shape[0]
    extra = 1 if query_ids is not None else 0
    kk = min(k + extra, m)
    sq_data = (data * data).sum(axis=1)
    block = max(1, min(n, _TILE_BYTES // (4 * m)))
    out_idx = xp.empty((n, k), dtype=xp.int64)
    out_dist = xp.empty((n, k), dtype=xp.float32)
    for start in range(0, n, block):
        q = queries[start:start + block]
        d2 = sq_data[None, :] - 2.0 * (q @ data.T)  # |q|² is constant per row: add it later
        if query_ids is not None:
            rows = xp.arange(q.shape[0])
            d2[rows, query_ids[start:start + block]] = xp.inf
        part = xp.argpartition(d2, kk - 1, axis=1)[:, :kk]
        part_d = xp.take_along_axis(d2, part, axis=1)
        order = xp.argsort(part_d, axis=1)[:, :k]
        idx = xp.take_along_axis(part, order, axis=1)
        dist = xp.take_along_axis(part_d, order, axis=1) + (q * q).sum(axis=1)[:, None]
        out_idx[start:start + block] = idx
        out_dist[start:start + block] = xp.sqrt(xp.maximum(dist, 0))
    return out_idx, out_dist
