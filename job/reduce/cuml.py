"""GPU t-SNE with cuML: FFT-interpolated repulsion (as in openTSNE), every parameter pinned.

Supported: cuML 26.08 to 26.10 (:data:`SUPPORTED`, the releases the contract tests pass on;
the ``cuml-cu12`` / ``cuml-cu13`` extras pin the same range). What this module relies on, read
in cuML's source of those releases (``python/cuml/cuml/manifold/t_sne.pyx``, ``utils.py``,
``cpp/src/tsne/tsne_runner.cuh``):

- ``fit(X, knn_graph=(indices, distances))`` takes two ``(n, n_neighbors)`` arrays whose
  column 0 is the row itself at distance 0 (``extract_knn_graph`` raises ``ValueError:
  Expected indices and distances to include self references`` otherwise, since cuML PR #8272).
  cuML's own kNN includes that column too, and its perplexity search runs over all
  ``n_neighbors`` columns, so 3 × perplexity neighbours are sent as ``n_neighbors = k + 1``.
- ``learning_rate_method='adaptive'`` (the default) replaces ``n_neighbors``, the learning rate
  and the early exaggeration, so it is pinned to ``None``; then the learning rate is
  ``learning_rate`` during early exaggeration and ``2 × learning_rate`` after it.
- ``init='random'`` by default, pinned to ``'pca'``; ``max_iter`` counts the
  ``exaggeration_iter`` iterations too.
- ``square_distances=True`` squares the given distances, so the graph holds plain euclidean
  distances (as openTSNE's ``PrecomputedNeighbors`` does).
- A set ``random_state`` makes the FFT path deterministic (PR #8123, 26.08: the symmetrised
  affinities are sorted before the gradient sums, measured there 1.5–2.8× slower);
  ``random_state=None`` takes the fast, run-to-run varying path. ``layout.deterministic``
  picks one.
- ``kl_divergence_`` is only computed at the end of a full run: a run stopped early by
  ``min_grad_norm`` reports 0.0, recorded as ``None``.

:func:`arguments` builds everything that goes to cuML without touching a GPU, so the contract
tests run the code the job runs against the installed cuML on any machine.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

import numpy as np

from job.config import LayoutConfig
from job.knn import array_module
from job.reduce import BackendError, Layout, learning_rate, max_perplexity, n_neighbors

log = logging.getLogger(__name__)

PRE_MOMENTUM = 0.8  # openTSNE >= 1.0's default; measured slightly better than 0.5
POST_MOMENTUM = 0.8
# cuML releases (year, month) the contract tests pass on, inclusive; the extras pin the same.
SUPPORTED = ((26, 8), (26, 10))


def supported_range() -> str:
    (y0, m0), (y1, m1) = SUPPORTED
    return f"{y0}.{m0:02d} to {y1}.{m1:02d}"


def unsupported(version: str) -> str:
    """Why the installed cuML ``version`` cannot be used ("" when it is supported)."""
    found = re.match(r"(\d+)\.(\d+)", version)
    if found and SUPPORTED[0] <= (int(found[1]), int(found[2])) <= SUPPORTED[1]:
        return ""
    return (f"cuML {version} is installed but vocabmap supports cuML {supported_range()}; "
            "install that range with pip install 'vocabmap[cuml-cu12]' (or [cuml-cu13]), or "
            "set layout.backend = 'opentsne'")


def tsne_params(cfg: LayoutConfig, n: int) -> dict[str, Any]:
    """The keyword arguments for ``cuml.manifold.TSNE``: nothing left to cuML's defaults."""
    return {
        "n_components": 2,
        "perplexity": min(cfg.perplexity, max_perplexity(n)),
        "n_neighbors": n_neighbors(cfg, n) + 1,  # the row itself is column 0
        "method": "fft",
        "init": "pca",
        "learning_rate_method": None,
        "learning_rate": learning_rate(cfg, n, exaggeration=cfg.early_exaggeration),
        "early_exaggeration": cfg.early_exaggeration,
        "late_exaggeration": 1.0,
        "exaggeration_iter": cfg.early_exaggeration_iter,
        "max_iter": cfg.early_exaggeration_iter + cfg.n_iter,
        "pre_momentum": PRE_MOMENTUM,
        "post_momentum": POST_MOMENTUM,
        "metric": "euclidean",  # X is already L2-normalised for metric = "cosine"
        "square_distances": True,
        "perplexity_max_iter": 100,
        "min_grad_norm": 1e-7,
        "angle": 0.5,  # Barnes-Hut only; pinned for the record
        "random_state": cfg.seed if cfg.deterministic else None,
        "verbose": False,
        "output_type": "cupy",
    }


def with_self(indices: Any, distances: Any) -> tuple[Any, Any]:
    """The graph as cuML takes it: each row itself in column 0 at distance 0, then its
    neighbours (which exclude it); C-ordered int64 indices and float32 distances, on the
    arrays' own device."""
    xp = array_module(indices)
    n = indices.shape[0]
    idx = xp.empty((n, indices.shape[1] + 1), dtype=xp.int64)
    idx[:, 0] = xp.arange(n, dtype=xp.int64)
    idx[:, 1:] = indices
    dist = xp.zeros(idx.shape, dtype=xp.float32)
    dist[:, 1:] = distances
    return idx, dist


def arguments(X: Any, cfg: LayoutConfig, knn_graph: tuple[Any, Any] | None,
              ) -> tuple[dict[str, Any], tuple[Any, Any]]:
    """The estimator's parameters and the ``knn_graph`` for ``fit``, from a matrix on either
    device (numpy or cupy); the graph is computed when none is given."""
    n = X.shape[0]
    params = tsne_params(cfg, n)
    k = params["n_neighbors"] - 1
    if knn_graph is None:
        from job.knn import knn

        knn_graph = knn(X, k)
    idx, dist = knn_graph
    return params, with_self(idx[:, :k], dist[:, :k])


def fit(X: Any, cfg: LayoutConfig, knn_graph: tuple[Any, Any] | None) -> Layout:
    from job import gpu

    ok, device = gpu.cuda_available()
    if not ok:
        raise BackendError(f"layout.backend = 'cuml' needs a CUDA GPU: {device}")
    import cuml
    from cuml.manifold import TSNE

    params, graph = arguments(X, cfg, knn_graph)
    model = TSNE(**params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coords = fit_on_device(model, X, graph)
    notes = [str(w.message) for w in caught]
    for note in notes:
        log.warning("cuML: %s", note)
    return Layout(gpu.to_host(coords).astype(np.float32), "cuml",
                  effective_params(params, model, cuml.__version__, notes, gpu.gpu_name(),
                                   cfg.metric))


def fit_on_device(model: Any, X: Any, graph: tuple[Any, Any]) -> Any:
    """The one step that needs a CUDA device: cuML's own fit."""
    return model.fit_transform(X, knn_graph=graph)


def effective_params(params: dict[str, Any], model: Any, version: str, notes: list[str],
                     device: str, metric: str) -> dict[str, Any]:
    """What the manifest records: the parameters sent, what cuML made of them, its version."""
    lr = params["learning_rate"]
    kl = _attr(model, "kl_divergence_")
    return {
        "library": "cuML", "version": version,
        **{k: v for k, v in params.items() if k not in ("verbose", "output_type")},
        "knn_self_column_sent": True,
        "knn": "precomputed exact (shared graph), row itself in column 0",
        "metric_space": metric,
        "deterministic": params["random_state"] is not None,
        "pre_learning_rate": lr, "post_learning_rate": 2 * lr,  # cuML doubles it, see above
        "momentum": [PRE_MOMENTUM, POST_MOMENTUM],
        "changed_by_cuml": ["post_learning_rate = 2 × learning_rate after early exaggeration",
                            *notes],
        "iterations_run": _attr(model, "n_iter_"),
        "kl_divergence": kl if kl else None,  # 0.0: not computed (stopped early)
        "gpu": device,
    }


def _attr(model: Any, name: str) -> float | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = getattr(model, name, None)
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
