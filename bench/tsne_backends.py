"""t-SNE backends side by side on one matrix: seconds and kNN preservation.

    .venv/bin/python bench/tsne_backends.py [--skip sklearn-full ...] [--out FILE]

Rows (each timed from the raw matrix in memory to 2-D coordinates on the host):

- ``post``: the blog post's method, scikit-learn's TSNE with its defaults (Barnes-Hut,
  PCA init, 1,000 iterations, euclidean) on the first 3,000 tokens;
- ``sklearn-full``: the same on the whole vocabulary (slow; ``--skip sklearn-full``);
- ``opentsne``: ``openTSNE.TSNE(random_state=42).fit(X)``, all its defaults (Annoy kNN,
  euclidean, one thread);
- ``opentsne-threads``: the same with ``n_jobs=-1`` (every core), for a fair thread count;
- ``vocabmap-cpu``: vocabmap's CPU path with the default config (cosine: L2-normalised
  rows, exact kNN, openTSNE with vocabmap's settings); ``vocabmap-cpu-euclidean``: the same
  with ``metric = "euclidean"`` (raw rows), the space openTSNE's defaults use;
- ``vocabmap-gpu``: vocabmap's GPU path (cupy upload, normalisation, kNN, cuML), run twice
  (``cold``: first CUDA use and imports included; ``warm``), skipped without a CUDA device
  and cuML.

kNN preservation (k = 10, 2,000 sampled tokens, seed 0) is reported against euclidean
neighbours of the raw rows and against cosine neighbours, for every row, so a map is never
scored only in the space it was built for. The table goes to standard output; the figures,
the machine and the load go to ``bench/results/tsne_backends.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from job import gpu, reduce  # noqa: E402
from job.config import LayoutConfig, ModelConfig, QualityConfig  # noqa: E402
from job.knn import l2_normalise  # noqa: E402
from job.quality import knn_preservation  # noqa: E402

ROWS = ("post", "sklearn-full", "opentsne", "opentsne-threads", "vocabmap-cpu",
        "vocabmap-cpu-euclidean", "vocabmap-gpu")
POST_TOKENS = 3000
# scikit-learn's defaults: 250 exploration + 750 = max_iter 1000, perplexity 30, euclidean.
SKLEARN_DEFAULTS = LayoutConfig(backend="sklearn", metric="euclidean", n_iter=750, n_jobs=-1)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ok, device = gpu.cuda_available()
    return {"host": platform.node(), "cpu": cpu or platform.processor(),
            "cores": os.cpu_count(), "gpu": device if ok else f"none ({device})",
            "load_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0], "date_utc": time.strftime("%Y-%m-%d %H:%M",
                                                                         time.gmtime())}


def scores(raw: np.ndarray, coords: np.ndarray, q: QualityConfig) -> dict[str, float]:
    """Preservation against euclidean neighbours of the raw rows and cosine neighbours."""
    e = knn_preservation(raw, coords, q.k, q.sample, q.seed)
    c = knn_preservation(l2_normalise(raw), coords, q.k, q.sample, q.seed)
    return {"knn_euclidean": round(e["knn_preservation"], 4),
            "knn_cosine": round(c["knn_preservation"], 4), "k": e["k"], "sample": e["sample"]}


def run_sklearn(raw: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    layout = reduce.fit(raw, SKLEARN_DEFAULTS, "sklearn")
    return layout.coords, layout.params


def run_opentsne_defaults(raw: np.ndarray, n_jobs: int = 1) -> tuple[np.ndarray, dict]:
    import openTSNE

    model = openTSNE.TSNE(random_state=42, n_jobs=n_jobs)
    coords = np.asarray(model.fit(raw), dtype=np.float32)
    params = {"library": "openTSNE", "version": openTSNE.__version__, "defaults": True,
              **{k: v for k, v in vars(model).items() if isinstance(v, int | float | str)}}
    return coords, params


def run_vocabmap(raw: np.ndarray, cfg: LayoutConfig, backend: str,
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """The pipeline's layout path: (upload,) normalise, exact kNN, t-SNE; stage seconds."""
    from job.knn import knn

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if backend == "cuml":
        import cupy

        from job.gpu import peak_device_memory, track_device_memory

        track_device_memory()
        X = cupy.asarray(raw)
        cupy.cuda.runtime.deviceSynchronize()
        seconds["upload"] = time.perf_counter() - start
    else:
        X = raw
    mark = time.perf_counter()
    if cfg.metric == "cosine":
        X = l2_normalise(X)
    graph = knn(X, reduce.n_neighbors(cfg, X.shape[0]))
    _sync(backend)
    seconds["normalise+knn"] = time.perf_counter() - mark
    mark = time.perf_counter()
    layout = reduce.fit(X, cfg, backend, graph)
    seconds["tsne"] = time.perf_counter() - mark
    params = {"stages_s": {k: round(v, 2) for k, v in seconds.items()}, **layout.params}
    if backend == "cuml":
        params["peak_device_memory"] = peak_device_memory()
    return layout.coords, params


def _sync(backend: str) -> None:
    if backend == "cuml":
        import cupy

        cupy.cuda.runtime.deviceSynchronize()


def timed(fn: Any, *args: Any) -> tuple[float, np.ndarray, dict[str, Any]]:
    start = time.perf_counter()
    coords, params = fn(*args)
    return time.perf_counter() - start, coords, params


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| backend | tokens | seconds | kNN pres. (euclidean) | kNN pres. (cosine) | note |\n"
            "| --- | ---: | ---: | ---: | ---: | --- |")
    lines = [head]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['name']} | | | | | skipped: {r['skipped']} |")
            continue
        stages = r.get("params", {}).get("stages_s")
        note = r["note"] + (" — " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items())
                            if stages else "")
        lines.append(f"| {r['name']} | {r['tokens']:,} | {r['seconds']:.1f} | "
                     f"{r['knn_euclidean']:.3f} | {r['knn_cosine']:.3f} | {note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip", nargs="*", default=[], choices=ROWS, help="rows to leave out")
    parser.add_argument("--model", default=ModelConfig().id, help="model id (default: embedded)")
    parser.add_argument("--out", default="bench/results/tsne_backends.json")
    args = parser.parse_args(argv)

    from job import source

    emb = source.load(ModelConfig(id=args.model))
    raw = np.ascontiguousarray(emb.matrix, dtype=np.float32)
    n = raw.shape[0]
    q = QualityConfig()
    cfg = LayoutConfig()
    info = machine()
    print(f"# {emb.label}: {n:,} tokens x {raw.shape[1]} dims; {info['cpu']}, "
          f"{info['cores']} cores, load {info['load_1_5_15']}; GPU: {info['gpu']}",
          file=sys.stderr)
    plan = [
        ("post", "sklearn, first 3,000 tokens (the post)", run_sklearn, (raw[:POST_TOKENS],)),
        ("sklearn-full", "sklearn defaults, whole vocabulary", run_sklearn, (raw,)),
        ("opentsne", "openTSNE defaults (Annoy, euclidean, 1 thread)", run_opentsne_defaults,
         (raw,)),
        ("opentsne-threads", "openTSNE defaults, n_jobs=-1", run_opentsne_defaults, (raw, -1)),
        ("vocabmap-cpu", "vocabmap CPU (cosine, exact kNN, openTSNE)", run_vocabmap,
         (raw, dataclasses.replace(cfg, backend="opentsne"), "opentsne")),
        ("vocabmap-cpu-euclidean", "vocabmap CPU, metric = euclidean", run_vocabmap,
         (raw, dataclasses.replace(cfg, backend="opentsne", metric="euclidean"), "opentsne")),
    ]
    rows: list[dict[str, Any]] = []
    for name, note, fn, fargs in plan:
        if name in args.skip:
            rows.append({"name": name, "skipped": "--skip"})
            continue
        print(f"# running {name} ...", file=sys.stderr, flush=True)
        seconds, coords, params = timed(fn, *fargs)
        sub = fargs[0]
        rows.append({"name": name, "note": note, "tokens": int(sub.shape[0]),
                     "seconds": round(seconds, 2), **scores(sub, coords, q), "params": params})
        print(f"#   {seconds:.1f} s", file=sys.stderr, flush=True)
    rows.extend(gpu_rows(raw, cfg, q, "vocabmap-gpu" in args.skip))
    info["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(table(rows))
    print(f"\n{emb.label}, {n:,} x {raw.shape[1]}; {info['cpu']} ({info['cores']} cores), "
          f"load {info['load_1_5_15']} before, {info['load_after']} after; "
          f"GPU: {info['gpu']}; {info['date_utc']} UTC")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from job.rundir import atomic_write

    doc = {"model": emb.label, "shape": list(raw.shape), "machine": info, "rows": rows}
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(doc, indent=2, default=str)))
    print(f"# wrote {out}", file=sys.stderr)
    return 0


def gpu_rows(raw: np.ndarray, cfg: LayoutConfig, q: QualityConfig, skip: bool,
             ) -> list[dict[str, Any]]:
    """vocabmap's GPU path, cold then warm, or one row saying why it was skipped."""
    if skip:
        return [{"name": "vocabmap-gpu", "skipped": "--skip"}]
    ok, why = gpu.cuda_available()
    has_cuml, cuml_why = reduce.cuml_available() if ok else (False, why)
    if not (ok and has_cuml):
        return [{"name": "vocabmap-gpu", "skipped": why if not ok else cuml_why}]
    rows = []
    gpu_cfg = dataclasses.replace(cfg, backend="cuml")
    for run in ("cold", "warm"):
        print(f"# running vocabmap-gpu ({run}) ...", file=sys.stderr, flush=True)
        seconds, coords, params = timed(run_vocabmap, raw, gpu_cfg, "cuml")
        rows.append({"name": f"vocabmap-gpu ({run})", "note": f"cuML on {why}",
                     "tokens": int(raw.shape[0]), "seconds": round(seconds, 2),
                     **scores(raw, coords, q), "params": params})
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
