"""The CUDA device: is there one, put the matrix on it, and what it held at its peak.

Every stage that runs on the GPU (normalisation, kNN, the cuML layout, the quality score)
takes the cupy array :func:`to_device` made; the stages themselves are array-module generic.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def cuda_available() -> tuple[bool, str]:
    """(True, GPU name) when cupy sees a CUDA device, else (False, why not)."""
    try:
        import cupy
    except ImportError:
        return False, "cupy is not installed"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as err:
        return False, f"no CUDA device ({err})"
    if count == 0:
        return False, "no CUDA device"
    return True, gpu_name()


def gpu_name() -> str:
    """The name of CUDA device 0 (cupy gives bytes or str depending on the release)."""
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def to_device(matrix: np.ndarray) -> Any:
    """The matrix as a float32 cupy array, uploaded once; device memory is counted from here."""
    import cupy

    track_device_memory()
    return cupy.asarray(matrix, dtype=cupy.float32)


def to_host(array: Any) -> np.ndarray:
    """A numpy array of ``array``, wherever it lives."""
    if hasattr(array, "get"):  # cupy
        return array.get()
    return np.asarray(array)


def track_device_memory() -> None:
    """Start counting device memory: cupy's default pool keeps what it grew to (its size is
    the high-water mark of cupy's arrays), RMM statistics count cuML's allocations, torch
    keeps its own peak."""
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


def device_info() -> dict[str, Any]:
    """The GPU's name, memory, CUDA runtime and the peak use (MiB) since the upload."""
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    return {"kind": "cuda", "name": gpu_name(),
            "total_mib": round(props["totalGlobalMem"] / 2**20, 1),
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "peak_memory": peak_device_memory()}
