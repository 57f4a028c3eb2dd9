"""The blog post's method, kept as a baseline: ``sklearn.manifold.TSNE`` (Barnes-Hut).

scikit-learn finds its own neighbours (exact, ``min(n − 1, 3 × perplexity + 1)`` of them) and
runs a fixed 250 early-exaggeration iterations inside ``max_iter`` (scikit-learn
``sklearn/manifold/_t_sne.py``); its ``learning_rate='auto'`` is ``max(N / early_exaggeration
/ 4, 50)``, the factor 4 being its gradient's convention. A shared kNN graph is not used:
the baseline is what the post ran. Slow beyond a few thousand points (Barnes-Hut, one tree
per iteration).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import numpy as np

from job.config import LayoutConfig
from job.reduce import Layout, max_perplexity, threads

log = logging.getLogger(__name__)

EXPLORATION_ITER = 250  # scikit-learn's fixed early-exaggeration phase


def fit(X: Any, cfg: LayoutConfig, knn_graph: tuple[Any, Any] | None) -> Layout:
    import sklearn
    from sklearn.manifold import TSNE

    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    if cfg.early_exaggeration_iter != EXPLORATION_ITER:
        log.info("sklearn runs a fixed %d early-exaggeration iterations (asked for %d)",
                 EXPLORATION_ITER, cfg.early_exaggeration_iter)
    # ``n_iter`` became ``max_iter`` in scikit-learn 1.5.
    iters = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
    model = TSNE(
        n_components=2, perplexity=min(cfg.perplexity, max_perplexity(n)),
        early_exaggeration=cfg.early_exaggeration,
        learning_rate="auto" if cfg.learning_rate == "auto" else float(cfg.learning_rate),
        **{iters: EXPLORATION_ITER + cfg.n_iter}, init="pca", method="barnes_hut", angle=0.5,
        metric="euclidean", random_state=cfg.seed, n_jobs=threads(cfg))
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads(cfg)):  # its gradient's OpenMP threads too
        coords = model.fit_transform(X)
    params = {"library": "scikit-learn", "version": sklearn.__version__,
              **{k: v for k, v in model.get_params().items() if k != "verbose"},
              "learning_rate_effective": float(model.learning_rate_),
              "early_exaggeration_iter": EXPLORATION_ITER, "iterations_run": int(model.n_iter_),
              "knn": "sklearn's own (exact)", "metric_space": cfg.metric,
              "kl_divergence": float(model.kl_divergence_)}
    return Layout(np.asarray(coords, dtype=np.float32), "sklearn", params)
