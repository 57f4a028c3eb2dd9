"""CPU t-SNE with openTSNE: FFT-accelerated gradients (Linderman et al. 2019), PCA init."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from job.config import LayoutConfig
from job.reduce import Layout, learning_rate, n_neighbors

log = logging.getLogger(__name__)


def _threads(cfg: LayoutConfig) -> int:
    import os

    return (os.cpu_count() or 1) if cfg.n_jobs == -1 else cfg.n_jobs


def fit(X: Any, cfg: LayoutConfig, knn_graph: tuple[Any, Any] | None) -> Layout:
    from openTSNE import TSNEEmbedding, affinity, initialization
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    k = n_neighbors(cfg, n)
    threads = _threads(cfg)
    if knn_graph is None:
        from job.knn import knn

        knn_graph = knn(X, k)
    idx, dist = (np.asarray(a) for a in knn_graph)
    aff = affinity.PerplexityBasedNN(
        perplexity=min(cfg.perplexity, (n - 1) / 3), knn_index=PrecomputedNeighbors(idx, dist),
        n_jobs=threads, random_state=cfg.seed, verbose=False)
    init = initialization.pca(X, random_state=cfg.seed)  # scaled to std 1e-4
    lr = learning_rate(cfg, n)
    embedding = TSNEEmbedding(init, aff, negative_gradient_method="fft", n_jobs=threads,
                              random_state=cfg.seed, verbose=False)
    total = cfg.early_exaggeration_iter + cfg.n_iter
    with _progress(total) as bar:
        callback = _Tick(bar)
        if cfg.early_exaggeration_iter:
            embedding = embedding.optimize(
                cfg.early_exaggeration_iter, exaggeration=cfg.early_exaggeration, momentum=0.5,
                learning_rate=lr, callbacks=callback, callbacks_every_iters=10)
        embedding = embedding.optimize(cfg.n_iter, exaggeration=1.0, momentum=0.8,
                                       learning_rate=lr, callbacks=callback,
                                       callbacks_every_iters=10)
    params = {
        "library": "openTSNE", "negative_gradient_method": "fft", "initialization": "pca",
        "perplexity": aff.perplexity, "n_neighbors": int(idx.shape[1]),
        "knn": "precomputed exact", "metric": cfg.metric, "learning_rate": lr,
        "early_exaggeration": cfg.early_exaggeration,
        "early_exaggeration_iter": cfg.early_exaggeration_iter, "n_iter": cfg.n_iter,
        "momentum": [0.5, 0.8], "random_state": cfg.seed, "n_jobs": threads,
    }
    return Layout(np.asarray(embedding, dtype=np.float32), "opentsne", params)


def _progress(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="t-SNE", unit="it", mininterval=2.0)


class _Tick:
    """openTSNE callback that advances the progress bar and reports the KL divergence."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __call__(self, iteration: int, error: float, embedding: Any) -> bool:
        self.bar.update(10)
        self.bar.set_postfix(kl=f"{error:.3f}", refresh=False)
        return False
