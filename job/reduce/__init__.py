"""t-SNE backends behind one signature, picked by name.

Every backend module (``opentsne``, ``cuml``, ``sklearn``) exposes
``fit(X, cfg, knn_graph) -> Layout`` and imports its library lazily. ``X`` is the matrix the
layout should see (already L2-normalised for ``metric = "cosine"``, on the GPU as a cupy
array when the backend runs there); ``knn_graph`` is an optional precomputed
``(indices, distances)`` pair with ``3 × perplexity`` neighbours per row.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from job import gpu
from job.config import LayoutConfig
from job.errors import VocabmapError
from job.search import Search
from job.stages import Stages, timed

log = logging.getLogger(__name__)

BACKENDS = ("opentsne", "cuml", "sklearn")


class BackendError(VocabmapError, RuntimeError):
    """The chosen backend cannot run here; the message says what to install or choose."""


@dataclass
class Layout:
    """2-D coordinates, one row per input row, and how they were made."""

    coords: np.ndarray  # (N, 2) float32, on the host
    backend: str
    params: dict[str, Any] = field(default_factory=dict)  # the effective parameters


NEIGHBOURS_PER_PERPLEXITY = 3  # t-SNE's affinities take 3 x perplexity neighbours per point


def n_neighbors(cfg: LayoutConfig, n: int) -> int:
    """Neighbours per point for the affinities: 3 × perplexity, at most n − 1."""
    return int(min(n - 1, max(1, round(NEIGHBOURS_PER_PERPLEXITY * cfg.perplexity))))


def max_perplexity(n: int) -> float:
    """The largest perplexity ``n`` points allow: (n − 1) / 3."""
    return (n - 1) / NEIGHBOURS_PER_PERPLEXITY


def learning_rate(cfg: LayoutConfig, n: int, exaggeration: float = 1.0) -> float:
    """``auto``: N / exaggeration of the phase, at least 200 (Belkina et al. 2019; openTSNE's
    ``auto``): N / 12 during early exaggeration, N after it."""
    if cfg.learning_rate == "auto":
        return max(float(n) / exaggeration, 200.0)
    return float(cfg.learning_rate)


def threads(cfg: LayoutConfig) -> int:
    """CPU threads for a backend: ``n_jobs``, or every usable core for -1."""
    return usable_cores() if cfg.n_jobs == -1 else cfg.n_jobs


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, which a Slurm allocation
    (``--cpus-per-task``) or ``taskset`` narrows, else every core of the machine."""
    import os

    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def cuml_available() -> tuple[bool, str]:
    """(True, "cuML <version>") when a supported cuML imports; else (False, why not).

    A broken install or a release outside the supported range is logged as a warning.
    """
    try:
        import cuml
    except ImportError as err:
        if isinstance(err, ModuleNotFoundError) and err.name == "cuml":
            return False, ("cuML is not installed (pip install 'vocabmap[cuml-cu12]' "
                           "or [cuml-cu13])")
        log.warning("cuML is installed but does not import: %s", err)
        return False, f"cuML does not import ({err})"
    from job.reduce.cuml import unsupported

    version = getattr(cuml, "__version__", "?")
    why = unsupported(version)
    if why:
        log.warning("%s", why)
        return False, why
    return True, f"cuML {version}"


def choose(name: str) -> tuple[str, str]:
    """Resolve ``auto`` and check the named backend can run; returns (backend, reason)."""
    if name == "auto":
        gpu_ok, gpu_why = gpu.cuda_available()
        has_cuml, cuml_why = cuml_available() if gpu_ok else (False, "")
        if gpu_ok and has_cuml:
            return "cuml", f"CUDA device {gpu_why} and {cuml_why} present"
        return "opentsne", f"CPU: {gpu_why if not gpu_ok else cuml_why}"
    if name == "cuml":
        gpu_ok, gpu_why = gpu.cuda_available()
        if not gpu_ok:
            raise BackendError(f"layout.backend = 'cuml' needs a CUDA GPU: {gpu_why}; "
                               "run on a GPU node or set backend = 'auto' or 'opentsne'")
        has_cuml, cuml_why = cuml_available()
        if not has_cuml:
            raise BackendError(f"layout.backend = 'cuml': {cuml_why}")
        return "cuml", f"requested; {gpu_why}"
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of: auto, "
                           + ", ".join(BACKENDS))
    return name, "requested"


def fit(X: Any, cfg: LayoutConfig, backend: str, knn_graph: tuple[Any, Any] | None = None,
        init: np.ndarray | None = None, in_place: bool = False) -> Layout:
    """Lay out the rows of ``X`` in 2-D with the named (already chosen) backend; ``init``
    (n × 2) starts the layout from given coordinates (openTSNE only: cuML's TSNE takes no
    array initialisation); ``in_place`` (openTSNE): its PCA initialisation centres ``X``
    itself instead of a copy (job/memory.py's lower-memory choice)."""
    module = importlib.import_module(f"job.reduce.{backend}")
    if init is None and in_place and backend == "opentsne":
        layout = module.fit(X, cfg, knn_graph, in_place=True)
    elif init is None:
        layout = module.fit(X, cfg, knn_graph)
    elif backend == "opentsne":
        layout = module.fit(X, cfg, knn_graph, init=init)
    else:
        raise BackendError(f"backend {backend} cannot start from given coordinates; only "
                           "opentsne can (cuML's TSNE takes no array initialisation)")
    coords = np.asarray(layout.coords, dtype=np.float32)
    if coords.shape != (X.shape[0], 2) or not np.isfinite(coords).all():
        raise BackendError(f"backend {backend} returned a bad layout {coords.shape}")
    layout.coords = coords
    return layout


def search_and_fit(X: Any, cfg: LayoutConfig, backend: str, search: Search | None,
                   stages: Stages | None = None, init: np.ndarray | None = None,
                   in_place: bool = False) -> tuple[Layout, tuple[Any, Any] | None]:
    """The layout of ``X`` and the kNN graph it was fitted on: searched by ``search`` (None:
    the backend searches its own, as sklearn does), timed as ``stages`` "knn" and "layout"
    when given. The run's layout and compare's aligned layouts both come from here."""
    with timed(stages, "knn"):
        graph = search.graph(X, n_neighbors(cfg, X.shape[0])) if search else None
    with timed(stages, "layout"):
        layout = fit(X, cfg, backend, graph, init=init, in_place=in_place)
    return layout, graph
