"""Run the installed cuML's own ``TSNE.fit`` on the host, up to the first step that needs a
CUDA device.

cuML's ``fit`` (``python/cuml/cuml/manifold/t_sne.pyx``, 26.08–26.10) validates ``X`` with
``check_inputs``, validates every parameter in ``_init_params`` (the checks and warnings cuML
runs at fit), and parses the precomputed graph with ``extract_knn_graph``; only then does it
allocate the output on the device. This module calls that real ``fit`` with the two input
steps asked for host memory (``mem_type="host"``, which both functions take) and stops it
with :class:`DeviceBoundary` once the graph is parsed, carrying what cuML made of it. Nothing
of cuML is reimplemented here: if a release changes what it accepts, these calls fail.
"""

from __future__ import annotations

import contextlib
import inspect
import types
from collections.abc import Iterator
from typing import Any

import numpy as np


class DeviceBoundary(Exception):  # noqa: N818 - a signal, not an error
    """cuML's fit reached the device: everything before it accepted the input."""

    def __init__(self, indices: np.ndarray, distances: np.ndarray, n_samples: int,
                 n_neighbors: int) -> None:
        super().__init__("reached the CUDA device")
        self.indices, self.distances = indices, distances
        self.n_samples, self.n_neighbors = n_samples, n_neighbors


@contextlib.contextmanager
def host_inputs() -> Iterator[None]:
    """Within this block, cuML's TSNE module checks and parses its inputs on the host."""
    import cuml.manifold.t_sne as t_sne

    real_check, real_extract = t_sne.check_inputs, t_sne.extract_knn_graph

    def check_inputs(estimator: Any, X: Any, **kwargs: Any) -> tuple[Any, Any]:
        X, index = real_check(estimator, X, **(kwargs | {"mem_type": "host"}))
        # fit reads only the shape and the device pointer of X before the boundary
        return types.SimpleNamespace(shape=X.shape, data=types.SimpleNamespace(ptr=0)), index

    def extract_knn_graph(knn_info: Any, n_samples: int, n_neighbors: int,
                          **kwargs: Any) -> tuple[Any, Any]:
        indices, distances = real_extract(knn_info, n_samples, n_neighbors,
                                          **(kwargs | {"mem_type": "host"}))
        raise DeviceBoundary(indices, distances, n_samples, n_neighbors)

    t_sne.check_inputs, t_sne.extract_knn_graph = check_inputs, extract_knn_graph
    try:
        yield
    finally:
        t_sne.check_inputs, t_sne.extract_knn_graph = real_check, real_extract


def fit_until_device(model: Any, X: Any, graph: tuple[Any, Any]) -> DeviceBoundary:
    """Run ``model.fit(X, knn_graph=graph)`` (cuML's code, without the decorator that opens
    a CUDA stream) until it needs the device; returns what cuML parsed."""
    fit = inspect.unwrap(type(model).fit)
    with host_inputs():
        try:
            fit(model, X, knn_graph=graph)
        except DeviceBoundary as reached:
            return reached
    raise AssertionError("cuML's fit returned without reaching the device")
