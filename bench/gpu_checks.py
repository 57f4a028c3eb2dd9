"""GPU-side checks without cuML: upload, normalisation, exact kNN, quality score, memory.

    python bench/gpu_checks.py [--sizes 32000x768 256000x4096] [--k 90] [--no-torch]

Needs only numpy, cupy and (optionally, for the fast top-k) torch with CUDA. For each size it
makes a random embedding-like matrix (a low-rank signal plus noise, on the host, float32) and
times, on the first CUDA device:

- ``upload``: host → device copy of the whole matrix (pageable memory, as the pipeline does);
- ``normalise``: L2-normalising every row (``metric = "cosine"``);
- ``knn``: exact k nearest neighbours of every row (``job.knn.knn``, symmetric tiles);
- ``quality (graph)``: kNN preservation at k = 10 on 2,000 rows with the graph given (the
  pipeline's case) against random 2-D coordinates; ``quality (search)``: the same searching
  the high-dimensional neighbours itself;

with the device-memory high-water mark of each step (cupy's pool, which keeps what it grew
to, plus torch's peak). Before the sizes, the GPU kNN is checked against the CPU one on a
small matrix. Where cuML is installed too, the whole job then runs on the embedded default
with ``backend = "cuml"`` (``--no-job`` skips it) and its stage seconds and device-memory
peaks are printed from the run's manifest. Where there is no CUDA device it says so and
exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from job import gpu  # noqa: E402
from job.knn import knn, l2_normalise  # noqa: E402
from job.quality import knn_preservation  # noqa: E402


def cuda() -> tuple[Any, str]:
    """(cupy, GPU name), or (None, why not)."""
    ok, why = gpu.cuda_available()
    if not ok:
        return None, why
    import cupy

    return cupy, why


def torch_cuda() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def make_matrix(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Random rows with structure: 64-dim latent signal mapped to d dims, plus noise."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), dtype=np.float32)
    mix = rng.standard_normal((64, d), dtype=np.float32) / 8
    for s in range(0, n, 65536):
        z = rng.standard_normal((min(65536, n - s), 64), dtype=np.float32)
        out[s:s + len(z)] = z @ mix + 0.5 * rng.standard_normal((len(z), d), dtype=np.float32)
    return out


class Meter:
    """Times a step on the device and records the memory high-water mark it reached."""

    def __init__(self, cupy: Any, torch: Any) -> None:
        self.cupy, self.torch = cupy, torch
        self.rows: list[tuple[str, str, float, float]] = []

    def run(self, size: str, step: str, fn: Any, *args: Any) -> Any:
        cupy, torch = self.cupy, self.torch
        cupy.cuda.runtime.deviceSynchronize()
        if torch is not None:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = fn(*args)
        cupy.cuda.runtime.deviceSynchronize()
        seconds = time.perf_counter() - start
        peak = cupy.get_default_memory_pool().total_bytes()
        if torch is not None:
            peak += torch.cuda.max_memory_allocated()
        self.rows.append((size, step, seconds, peak / 2**20))
        print(f"  {size:>14s}  {step:<18s} {seconds:8.3f} s  {peak / 2**20:10.0f} MiB",
              flush=True)
        return out


def check_small(cupy: Any, use_torch: bool) -> bool:
    """GPU kNN equals the CPU kNN (indices) on a 4,000 × 768 matrix."""
    x = l2_normalise(make_matrix(4000, 768, seed=1))
    cpu_idx, _ = knn(x, 30)
    gpu_idx, _ = knn(cupy.asarray(x), 30, use_torch=use_torch)
    same = float((cupy.asnumpy(gpu_idx) == cpu_idx).mean())
    print(f"check: GPU kNN vs CPU kNN on 4,000 x 768, k=30: {same:.5f} of entries equal "
          "(ties and float32 rounding may swap near-equal neighbours)")
    return same > 0.999


def measure(size: str, n: int, d: int, k: int, meter: Meter, use_torch: bool) -> None:
    cupy = meter.cupy
    pool = cupy.get_default_memory_pool()
    print(f"{size}: making the host matrix ...", flush=True)
    host = make_matrix(n, d)
    pool.free_all_blocks()
    X = meter.run(size, "upload", cupy.asarray, host)
    X = meter.run(size, "normalise", l2_normalise, X)
    idx, _ = meter.run(size, f"knn (k={k})", knn, X, k, None, None, None, use_torch)
    coords = cupy.random.default_rng(0).standard_normal((n, 2), dtype=cupy.float32)
    meter.run(size, "quality (graph)", knn_preservation, X, coords, 10, 2000, 0, idx)
    meter.run(size, "quality (search)", knn_preservation, X, coords, 10, 2000, 0)
    del X, idx, coords, host
    pool.free_all_blocks()


def whole_job(out: Path) -> None:
    """The job on the embedded default with the cuML backend; prints its manifest figures."""
    import dataclasses
    import json

    from job import config as config_mod
    from job import pipeline
    from job.reduce import cuml_available

    ok, why = cuml_available()
    if not ok:
        print(f"whole job: skipped ({why})")
        return
    cfg = config_mod.with_overrides(config_mod.load(Path(__file__).parents[1] / "configs"
                                                    / "default.toml"), out=str(out))
    cfg = dataclasses.replace(cfg, layout=dataclasses.replace(cfg.layout, backend="cuml"))
    start = time.perf_counter()
    folder = pipeline.run_model(cfg.models[0], cfg)
    took = time.perf_counter() - start
    manifest = json.loads((folder / "manifest.json").read_text())
    params = manifest["backend"]["effective_params"]
    print(f"whole job (embedded default, cuML {params['version']}, deterministic="
          f"{params['deterministic']}): {took:.1f} s; stages "
          f"{manifest['seconds']}; kNN preservation {manifest['quality']['knn_preservation']}; "
          f"device memory {manifest['device'].get('peak_memory')}")


def table(meter: Meter, name: str) -> str:
    lines = [f"GPU: {name}", "| size | step | seconds | peak device MiB |",
             "| --- | --- | ---: | ---: |"]
    lines += [f"| {s} | {step} | {sec:.3f} | {mib:,.0f} |" for s, step, sec, mib in meter.rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="*", default=["32000x768", "256000x4096"],
                        help="ROWSxDIMS, e.g. 32000x768")
    parser.add_argument("--k", type=int, default=90, help="neighbours (3 x perplexity 30)")
    parser.add_argument("--no-torch", action="store_true",
                        help="select with cupy.argpartition instead of torch.topk")
    parser.add_argument("--no-job", action="store_true",
                        help="skip the whole job on the embedded default (needs cuML)")
    parser.add_argument("--out", default="runs/gpu-checks", help="run directory root")
    args = parser.parse_args(argv)
    cupy, name = cuda()
    if cupy is None:
        print(f"gpu_checks: nothing measured: {name}")
        return 0
    torch = torch_cuda()
    use_torch = not args.no_torch and torch is not None
    print(f"GPU: {name}; cupy {cupy.__version__}; top-k by "
          f"{'torch ' + torch.__version__ if use_torch else 'cupy.argpartition'}")
    ok = check_small(cupy, use_torch)
    meter = Meter(cupy, torch)
    for size in args.sizes:
        n, d = (int(v) for v in size.lower().split("x"))
        measure(size, n, d, args.k, meter, use_torch)
    print()
    print(table(meter, name))
    if not args.no_job:
        whole_job(Path(args.out))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
