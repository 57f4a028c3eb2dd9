"""CPU t-SNE with openTSNE: FFT-accelerated gradients (Linderman et al. 2019), PCA init.

Affinities come from the shared exact kNN graph (``PrecomputedNeighbors``), so openTSNE's
own approximate search (Annoy) is skipped. The optimisation is openTSNE's two phases, with
every setting passed explicitly: early exaggeration at learning rate N / exaggeration, then
exaggeration 1 at learning rate N (``learning_rate = "auto"``; Belkina et al. 2019, Kobak &
Berens 2019), momentum 0.8 in both (openTSNE's default since 1.0).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from job.config import LayoutConfig
from job.reduce import Layout, learning_rate, max_perplexity, n_neighbors, threads

log = logging.getLogger(__name__)

PRE_MOMENTUM = 0.8  # openTSNE >= 1.0's default; measured slightly better than 0.5
POST_MOMENTUM = 0.8
MAX_STEP_NORM = 5.0  # openTSNE's default: no point moves more than this in one step
FFT_FROM = 10_000  # openTSNE's own rule: Barnes-Hut below this many points, FFT from it


def pca_in_place(X: np.ndarray, seed: int) -> np.ndarray:
    """openTSNE's PCA initialisation as its ``initialization.pca`` makes it with sklearn's
    randomized solver (what ``svd_solver="auto"`` picks above 1,000 dims), but with ``X``
    centred in place and restored afterwards instead of centred on a copy: the same start,
    without a second matrix (job/memory.py's lower-memory choice). ``X`` comes back within
    a float32 rounding of itself."""
    from openTSNE.initialization import jitter, rescale
    from sklearn.utils import check_random_state
    from sklearn.utils.extmath import randomized_svd, svd_flip

    mean = X.mean(axis=0)
    X -= mean
    try:
        U, S, Vt = randomized_svd(X, 2, n_oversamples=10, n_iter="auto",
                                  power_iteration_normalizer="auto", flip_sign=False,
                                  random_state=check_random_state(seed))
    finally:
        X += mean
    U, _ = svd_flip(U, Vt, u_based_decision=False)
    start = U[:, :2] * S[:2]
    rescale(start, inplace=True)
    jitter(start, inplace=True, random_state=seed)
    return np.ascontiguousarray(start)


def _start(X: np.ndarray, cfg: LayoutConfig, init: np.ndarray | None, in_place: bool,
           ) -> np.ndarray:
    """The starting coordinates: ``init`` as given, else PCA (of ``X`` itself, centred in
    place, with ``in_place``)."""
    from openTSNE import initialization

    if init is not None:
        return np.ascontiguousarray(init, dtype=np.float64)
    if in_place:
        return pca_in_place(X, cfg.seed)
    return initialization.pca(X, random_state=cfg.seed)  # scaled to std 1e-4


def fit(X: Any, cfg: LayoutConfig, knn_graph: tuple[Any, Any] | None,
        init: np.ndarray | None = None, in_place: bool = False) -> Layout:
    """Lay out ``X``; ``init`` (n × 2), e.g. another map's coordinates, replaces the PCA
    initialisation and is used at the scale given (the caller picks it); ``in_place``: the
    PCA initialisation centres ``X`` itself (:func:`pca_in_place`), not a copy."""
    import openTSNE
    from openTSNE import TSNEEmbedding, affinity
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    k = n_neighbors(cfg, n)
    jobs = threads(cfg)
    if knn_graph is None:
        from job.knn import knn

        knn_graph = knn(X, k)
    idx, dist = (np.asarray(a) for a in knn_graph)
    idx, dist = idx[:, :k], dist[:, :k]
    aff = affinity.PerplexityBasedNN(
        perplexity=min(cfg.perplexity, max_perplexity(n)),
        knn_index=PrecomputedNeighbors(idx, dist), n_jobs=jobs, random_state=cfg.seed,
        verbose=False)
    start = _start(X, cfg, init, in_place)
    # FFT's cost has a fixed grid part that dominates small inputs; Barnes-Hut is faster there.
    method = "fft" if n >= FFT_FROM else "bh"
    embedding = TSNEEmbedding(start, aff, negative_gradient_method=method, n_jobs=jobs,
                              random_state=cfg.seed, verbose=False)
    lr_early = learning_rate(cfg, n, exaggeration=cfg.early_exaggeration)
    lr_late = learning_rate(cfg, n)
    total = cfg.early_exaggeration_iter + cfg.n_iter
    with _progress(total) as bar:
        callback = _Tick(bar)
        if cfg.early_exaggeration_iter:
            embedding = embedding.optimize(
                cfg.early_exaggeration_iter, exaggeration=cfg.early_exaggeration,
                momentum=PRE_MOMENTUM, learning_rate=lr_early, max_step_norm=MAX_STEP_NORM,
                callbacks=callback, callbacks_every_iters=10)
        embedding = embedding.optimize(
            cfg.n_iter, exaggeration=1.0, momentum=POST_MOMENTUM, learning_rate=lr_late,
            max_step_norm=MAX_STEP_NORM, callbacks=callback, callbacks_every_iters=10)
        bar.update(total - bar.n)  # phases whose length is not a multiple of 10
    params = {
        "library": "openTSNE", "version": openTSNE.__version__,
        "negative_gradient_method": method,
        "initialization": ("given" if init is not None else "pca (std 1e-4)"
                           + (", centred in place" if in_place else "")),
        "perplexity": aff.perplexity, "n_neighbors": int(idx.shape[1]),
        "knn": "precomputed exact (shared graph)", "metric_space": cfg.metric,
        "early_exaggeration": cfg.early_exaggeration,
        "early_exaggeration_iter": cfg.early_exaggeration_iter, "n_iter": cfg.n_iter,
        "learning_rate": [lr_early, lr_late], "momentum": [PRE_MOMENTUM, POST_MOMENTUM],
        "max_step_norm": MAX_STEP_NORM, "dof": 1.0, "n_interpolation_points": 3,
        "min_num_intervals": 50, "ints_in_interval": 1, "random_state": cfg.seed,
        "n_jobs": jobs, "kl_divergence": callback.kl,
    }
    return Layout(np.asarray(embedding, dtype=np.float32), "opentsne", params)


def _progress(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="t-SNE", unit="it", mininterval=2.0)


class _Tick:
    """openTSNE callback that advances the progress bar and keeps the last KL divergence."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.kl: float | None = None

    def __call__(self, iteration: int, error: float, embedding: Any) -> bool:
        self.bar.update(10)
        self.kl = float(error)
        self.bar.set_postfix(kl=f"{error:.3f}", refresh=False)
        return False
