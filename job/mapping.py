"""One matrix mapped: its kNN graph by the chosen search, the t-SNE layout, and how well the
map keeps neighbourhoods. The run's layout (job/pipeline.py) and compare's aligned layouts
(job/compare/aligned.py) both go through here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from job import quality, reduce
from job.config import LayoutConfig
from job.search import Search
from job.stages import Stages


@contextlib.contextmanager
def _stage(stages: Stages | None, name: str) -> Iterator[None]:
    if stages is None:
        yield
    else:
        with stages.stage(name):
            yield


def fit(X: Any, cfg: LayoutConfig, backend: str, search: Search | None,
        stages: Stages | None = None, init: np.ndarray | None = None, in_place: bool = False,
        ) -> tuple[reduce.Layout, tuple[Any, Any] | None]:
    """The layout of ``X`` and the kNN graph it was fitted on: searched by ``search`` (None:
    the backend searches its own, as sklearn does), timed as ``stages`` "knn" and "layout"
    when given."""
    with _stage(stages, "knn"):
        graph = search.graph(X, reduce.n_neighbors(cfg, X.shape[0])) if search else None
    with _stage(stages, "layout"):
        layout = reduce.fit(X, cfg, backend, graph, init=init, in_place=in_place)
    return layout, graph


def preservation(X: Any, coords: Any, graph: tuple[Any, Any] | None, search: Search | None,
                 k: int, sample: int, seed: int = 0) -> dict[str, Any]:
    """kNN preservation of ``coords`` (job/quality.py), reusing the graph where it is exact."""
    return quality.knn_preservation(X, coords, k, sample, seed,
                                    neighbours=graph[0] if graph is not None else None,
                                    exact=search is None or search.exact)
