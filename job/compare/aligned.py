"""Aligned maps: the second and later runs laid out again, starting from the first run's map.

Each run keeps its own neighbourhoods (its own kNN graph and t-SNE settings, read from its
manifest); only the start differs: a token the first run also has starts at its position on
the first map, any other token at the mean position of its nearest shared tokens (in the
run's own embedding space), as Kobak & Berens (2019) initialise a related data set from a
reference map. The start is scaled to the spread of the run's own independent map, and the
early phase uses exaggeration 4 instead of the run's 12: the usual start (PCA at std 1e-4,
exaggeration 12) lets the early phase rebuild the global arrangement and forgets the
reference (on the embedded default's input vs contextual maps the Procrustes disparity stayed
at 0.72, as for independent maps), while a start at full scale with no exaggeration keeps
positions but loses a fifth of the kNN preservation (docs/compare.md, "Aligned maps").

The layout runs with openTSNE on the CPU — cuML's TSNE takes no array initialisation — so on
a cluster it belongs to the CPU comparison step after the GPU map jobs.

Layouts are stored in the comparison folder (``aligned/<run dir>.parquet`` plus a ``.json``
with the settings key and the figures) and reused by a rerun with the same runs and settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job import quality, reduce, rundir, search
from job.compare.runs import Run, by_key
from job.config import LayoutConfig, from_dict
from job.knn import knn

log = logging.getLogger(__name__)

START_NEIGHBOURS = 5  # a token the first run lacks starts at the mean of this many
EXAGGERATION = 4.0  # early exaggeration of an aligned layout (the run's own phase length)
VERSION = 1  # bump when the aligned layout changes, so stored ones are redone


def layout_config(run: Run) -> LayoutConfig:
    """The run's own t-SNE settings (from its manifest), on openTSNE, with the aligned
    layout's gentler early exaggeration."""
    cfg = from_dict({"layout": run.manifest.layout}).layout
    return LayoutConfig(**{**asdict(cfg), "backend": "opentsne",
                           "early_exaggeration": EXAGGERATION})


def start(ref: Run, run: Run) -> tuple[np.ndarray, int]:
    """Start coordinates for every layout row of ``run`` (centred, at the spread of the run's
    own map), and how many come from shared tokens."""
    assert run.vectors is not None and run.vectors.full
    ref_rows = by_key(ref.table)
    keys = run.table["key"].to_numpy()
    first = ~pd.Series(keys).duplicated().to_numpy() & pd.notna(keys)
    known = first & pd.Series(keys).isin(ref_rows.index).to_numpy()
    init = np.zeros((len(run.table), 2))
    init[known] = ref_rows.loc[keys[known], ["x", "y"]].to_numpy(np.float64)
    others = np.flatnonzero(~known)
    if others.size:
        pool = np.flatnonzero(known)
        data = run.vectors.matrix
        m = min(START_NEIGHBOURS, pool.size)
        near, _ = knn(np.ascontiguousarray(data[pool]), m, queries=data[others])
        init[others] = init[pool[near]].mean(axis=1)
    init -= init.mean(axis=0)
    own = float(run.table[["x", "y"]].to_numpy(np.float64).std())
    return init * (own / (float(init.std()) or 1.0)), int(known.sum())


def _key(ref: Run, run: Run, cfg: LayoutConfig, k: int, sample: int) -> str:
    text = json.dumps([VERSION, ref.folder.name, run.folder.name, asdict(cfg), k, sample],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stored(folder: Path, name: str, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
    meta, coords = folder / f"{name}.json", folder / f"{name}.parquet"
    if not (meta.is_file() and coords.is_file()):
        return None
    facts = rundir.read_json(meta)
    if facts.get("key") != key:
        return None
    return pd.read_parquet(coords)[["x", "y"]].to_numpy(np.float64), facts


def layout(ref: Run, run: Run, out: Path, k: int = 10, sample: int = 2000,
           ) -> tuple[np.ndarray, dict[str, Any]]:
    """The aligned coordinates of every layout row of ``run`` and their figures (seconds,
    kNN preservation aligned and independent), reused from ``out/aligned`` when stored."""
    cfg = layout_config(run)
    folder = out / "aligned"
    name = run.folder.name
    key = _key(ref, run, cfg, k, sample)
    found = _stored(folder, name, key)
    if found is not None:
        log.info("%s: aligned layout reused from %s", run.label, folder / f"{name}.parquet")
        return found[0], {**found[1], "reused": True}
    assert run.vectors is not None and run.vectors.full
    data = run.vectors.matrix
    began = time.perf_counter()
    init, from_ref = start(ref, run)
    route = search.choose_search(cfg.knn, data.shape[0], data.shape[1], on_gpu=False)
    fitted, graph = reduce.search_and_fit(data, cfg, "opentsne", route, init=init)
    seconds = time.perf_counter() - began
    coords = fitted.coords.astype(np.float64)
    independent = run.table[["x", "y"]].to_numpy(np.float64)
    keep = {name: quality.of_layout(data, xy, graph, route, k, sample)["knn_preservation"]
            for name, xy in (("aligned", coords), ("independent", independent))}
    facts = {"key": key, "run_dir": str(run.folder), "reference": str(ref.folder),
             "tokens": int(data.shape[0]), "started_from_reference": from_ref,
             "seconds": round(seconds, 1), "knn": route.name, "k": k, "sample": sample,
             "knn_preservation_aligned": round(keep["aligned"], 4),
             "knn_preservation_independent": round(keep["independent"], 4),
             "kl_divergence": fitted.params.get("kl_divergence"), "reused": False}
    log.info("%s: aligned layout of %d tokens in %.1f s; kNN preservation %.3f aligned, %.3f "
             "independent", run.label, data.shape[0], seconds, keep["aligned"],
             keep["independent"])
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"token_id": run.table["token_id"].to_numpy(),
                          "x": coords[:, 0], "y": coords[:, 1]})
    rundir.write_parquet(folder / f"{name}.parquet", frame)
    rundir.write_json(folder / f"{name}.json", facts)
    return coords, facts
