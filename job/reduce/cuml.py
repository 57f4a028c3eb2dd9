"""GPU t-SNE with cuML: FFT-interpolated repulsion (as in openTSNE), every parameter pinned.

cuML's defaults rewrite what it is given (cuML ``python/cuml/cuml/manifold/t_sne.pyx``,
``_init_params``; ``cuml.manifold.TSNE`` API docs, 24.x–26.x):

- ``learning_rate_method='adaptive'`` (the default) replaces ``n_neighbors`` (a linear trend
  down to 30), the learning rate (N / 3) and the early exaggeration (24 above 10,000 points),
  so it is pinned to ``None``;
- ``init='random'`` by default, pinned to ``'pca'``;
- with ``learning_rate_method=None`` the learning rate is ``learning_rate`` during early
  exaggeration and ``2 × learning_rate`` after it (``post_learning_rate``), recorded as such;
- the iteration count (``n_iter``, renamed ``max_iter`` in later releases) includes the
  ``exaggeration_iter`` early-exaggeration iterations;
- ``square_distances=True`` squares the distances of a precomputed graph, so the graph holds
  plain euclidean distances, as openTSNE's ``PrecomputedNeighbors`` does;
- ``fit(X, knn_graph=(indices, distances))``: a tuple of two ``(n, n_neighbors)`` arrays
  (host or device; cuML flattens them to int64 / float32), the neighbours excluding the row
  itself. Passing the shared exact graph skips cuML's own kNN.

The matrix arrives as a cupy array; the layout comes back to the host.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import numpy as np

from job.config import LayoutConfig
from job.reduce import BackendError, Layout, cuda_available, learning_rate, n_neighbors

log = logging.getLogger(__name__)

PRE_MOMENTUM = 0.8  # openTSNE >= 1.0's default; measured slightly better than 0.5
POST_MOMENTUM = 0.8


def _import_tsne() -> Any:
    try:
        from cuml.manifold import TSNE
    except ImportError as err:
        raise BackendError(f"layout.backend = 'cuml' needs cuML ({err}); install "
                           "'vocabmap[cuml-cu12]' (or [cuml-cu13]) on a CUDA machine, or set "
                           "backend = 'opentsne'") from None
    return TSNE


def tsne_params(cfg: LayoutConfig, n: int, iter_name: str = "max_iter") -> dict[str, Any]:
    """The keyword arguments for ``cuml.manifold.TSNE``: nothing left to cuML's defaults."""
    k = n_neighbors(cfg, n)
    return {
        "n_components": 2,
        "perplexity": min(cfg.perplexity, (n - 1) / 3),
        "n_neighbors": k,
        "method": "fft",
        "init": "pca",
        "learning_rate_method": None,
        "learning_rate": learning_rate(cfg, n, exaggeration=cfg.early_exaggeration),
        "early_exaggeration": cfg.early_exaggeration,
        "late_exaggeration": 1.0,
        "exaggeration_iter": cfg.early_exaggeration_iter,
        iter_name: cfg.early_exaggeration_iter + cfg.n_iter,
        "pre_momentum": PRE_MOMENTUM,
        "post_momentum": POST_MOMENTUM,
        "metric": "euclidean",  # X is already L2-normalised for metric = "cosine"
        "square_distances": True,
        "perplexity_max_iter": 100,
        "min_grad_norm": 1e-7,
        "angle": 0.5,  # Barnes-Hut only; pinned for the record
        "random_state": cfg.seed,
        "verbose": False,
        "output_type": "cupy",
    }


def fit(X: Any, cfg: LayoutConfig, knn_graph: tuple[Any, Any] | None) -> Layout:
    import cupy

    ok, gpu = cuda_available()
    if not ok:
        raise BackendError(f"layout.backend = 'cuml' needs a CUDA GPU: {gpu}")
    TSNE = _import_tsne()
    X = cupy.asarray(X, dtype=cupy.float32)
    n = X.shape[0]
    iter_name = _iter_name(TSNE)
    params = tsne_params(cfg, n, iter_name)
    if knn_graph is None:
        from job.knn import knn

        knn_graph = knn(X, params["n_neighbors"])
    idx, dist = (cupy.asarray(a) for a in knn_graph)
    idx = cupy.ascontiguousarray(idx[:, :params["n_neighbors"]], dtype=cupy.int64)
    dist = cupy.ascontiguousarray(dist[:, :params["n_neighbors"]], dtype=cupy.float32)
    model = TSNE(**params)
    coords = model.fit_transform(X, knn_graph=(idx, dist.copy()))  # cuML squares in place
    coords = cupy.asnumpy(cupy.asarray(coords, dtype=cupy.float32))
    lr = params["learning_rate"]
    effective = {
        "library": "cuML", **{k: v for k, v in params.items() if k not in ("verbose",
                                                                         "output_type")},
        "n_iter_total": params[iter_name],
        "pre_learning_rate": lr, "post_learning_rate": 2 * lr,  # cuML doubles it, see above
        "momentum": [PRE_MOMENTUM, POST_MOMENTUM],
        "knn": "precomputed exact (shared graph)", "metric_space": cfg.metric,
        "iterations_run": _attr(model, "n_iter_"), "kl_divergence": _attr(model, "kl_divergence_"),
        "gpu": gpu, "version": _version(),
    }
    return Layout(np.ascontiguousarray(coords), "cuml", effective)


def _iter_name(TSNE: Any) -> str:
    """``max_iter`` (recent cuML) or ``n_iter`` (earlier), from the signature or the
    estimator's parameter names."""
    signature = inspect.signature(TSNE.__init__).parameters
    for name in ("max_iter", "n_iter"):
        if name in signature:
            return name
    names = TSNE._get_param_names() if hasattr(TSNE, "_get_param_names") else []
    return "max_iter" if "max_iter" in names else "n_iter"


def _attr(model: Any, name: str) -> Any:
    value = getattr(model, name, None)
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _version() -> str:
    import cuml

    return getattr(cuml, "__version__", "?")


def track_device_memory() -> None:
    """Start counting device memory: cupy's default pool keeps what it grew to (its size is
    the high-water mark of cupy's arrays), RMM statistics count cuML's allocations, torch
    keeps its own peak. Call before the matrix is uploaded."""
    import cupy

    cupy.get_default_memory_pool().free_all_blocks()
    try:
        import rmm.statistics

        rmm.statistics.enable_statistics()  # idempotent (rmm python/rmm/rmm/statistics.py)
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    except ImportError:
        pass


def peak_device_memory() -> dict[str, float]:
    """Peak device memory since :func:`track_device_memory`, MiB, per allocator, and their
    sum (an upper bound of the true peak: the three peaks need not coincide)."""
    import cupy

    out = {"cupy_pool_mib": cupy.get_default_memory_pool().total_bytes() / 2**20}
    try:
        import rmm.statistics

        stats = rmm.statistics.get_statistics()
        if stats is not None:
            out["rmm_peak_mib"] = stats.peak_bytes / 2**20
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            out["torch_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    except ImportError:
        pass
    out = {k: round(v, 1) for k, v in out.items()}
    out["peak_upper_bound_mib"] = round(sum(out.values()), 1)
    return out
