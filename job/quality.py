"""How well a map keeps neighbourhoods: kNN preservation on a fixed sample of tokens.

For each sampled token, its k nearest neighbours in the original space (searched over the
whole vocabulary) are compared with its k nearest on the map (also over the whole map); the
score is the mean share they have in common. Runs on the GPU when the matrix lives there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from job.knn import array_module, knn, map_knn, shared_counts

if TYPE_CHECKING:
    from job.search import Search


def sample_ids(n: int, size: int, seed: int) -> np.ndarray:
    """A fixed, sorted sample of row numbers (all rows when ``n <= size``)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def knn_preservation(data: Any, coords: Any, k: int = 10, sample: int = 2000,
                     seed: int = 0, neighbours: Any | None = None, exact: bool = True,
                     ) -> dict[str, float | int]:
    """Mean share of each sampled row's k nearest neighbours in ``data`` kept in ``coords``.

    ``data`` should be the matrix the layout saw (row-normalised for the cosine metric).
    ``data`` and ``coords`` may be numpy or cupy arrays (both of the same module).
    ``neighbours``, an exact kNN index of ``data`` with at least ``k`` columns (such as the
    graph the layout used), saves the high-dimensional search. ``chance`` in the result is
    what a random map would score on average, k / (n − 1).
    """
    xp = array_module(data)
    n = data.shape[0]
    if coords.shape[0] != n:
        raise ValueError(f"coords has {coords.shape[0]} rows, data has {n}")
    if n < 2:
        raise ValueError("kNN preservation needs at least 2 rows")
    k = min(k, n - 1)
    ids_np = sample_ids(n, sample, seed)
    ids = xp.asarray(ids_np)
    # float64 for the map: |a|² + |b|² − 2ab in float32 loses near neighbours' order once
    # the map spans a hundred units; two columns make it cheap.
    coords = xp.asarray(coords, dtype=xp.float64)
    recall: dict[str, float] = {}
    if neighbours is not None and exact and neighbours.shape[1] >= k:
        high = xp.asarray(neighbours)[ids, :k]
    else:
        width = k if neighbours is None else max(k, min(neighbours.shape[1], n - 1))
        high, _ = knn(data, width, queries=data[ids], query_ids=ids)
        if neighbours is not None:
            graph = xp.asarray(neighbours)[ids, :width]
            recall = {"graph_recall": float(shared_counts(high, graph).mean()) / width}
        high = high[:, :k]
    low = map_knn(coords, k, ids)
    score = float(shared_counts(high, low).mean()) / k
    return {"k": k, "sample": int(len(ids_np)), "seed": seed, "knn_preservation": score,
            "chance": k / (n - 1), **recall}


def of_layout(data: Any, coords: Any, graph: tuple[Any, Any] | None, search: Search | None,
              k: int, sample: int, seed: int = 0) -> dict[str, float | int]:
    """:func:`knn_preservation` of a layout fitted on ``graph`` (found by ``search``; None
    when the backend searched its own): the graph is reused where it is exact."""
    return knn_preservation(data, coords, k, sample, seed,
                            neighbours=graph[0] if graph is not None else None,
                            exact=search is None or search.exact)
