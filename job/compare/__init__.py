"""Several run directories → shared tokens, neighbour overlap, Procrustes-aligned maps, report.

``compare(folders, out)`` reads each finished run, matches tokens across models by display
text and word-start flag (by exact token id when every run maps the same model, e.g. its input
and contextual vectors), measures every pair (neighbour overlap in the original spaces and on
the maps, Procrustes disparity), aligns every map onto the first, draws the aligned maps side
by side and the same anchor zooms in each model, and writes ``compare.json``, ``compare.md``
and ``compare.html`` into ``out``. Failed runs are named, the others compared.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job.compare import metrics, pictures, report
from job.compare.runs import (
    CompareError,
    Failed,
    Run,
    key_by_id,
    load,
    load_vectors,
    output_dir,
    planned,
    same_model,
)
from job.rundir import atomic_write

__all__ = ["CompareError", "compare", "output_dir", "planned"]

log = logging.getLogger(__name__)

DEFAULT_ANCHORS = ("1990", "Japan", "king", "日本")


def _shared(a: Run, b: Run) -> list[str]:
    ka = set(a.table["key"].dropna())
    return sorted(ka.intersection(b.table["key"].dropna()))


def _xy(run: Run, keys: list[str]) -> np.ndarray:
    rows = run.table.dropna(subset=["key"]).drop_duplicates("key").set_index("key")
    return rows.loc[keys, ["x", "y"]].to_numpy(dtype=np.float64)


def _pair(a: Run, b: Run, k: int, sample: int) -> dict[str, Any]:
    keys = _shared(a, b)
    na, nb = a.table["key"].nunique(), b.table["key"].nunique()
    out: dict[str, Any] = {"a": a.label, "b": b.label, "shared": len(keys),
                           "share_a": len(keys) / na if na else 0.0,
                           "share_b": len(keys) / nb if nb else 0.0,
                           "knn_original": None, "knn_map": None,
                           "procrustes_disparity": None, "original_error": ""}
    if len(keys) < 3:
        out["original_error"] = "fewer than 3 shared tokens"
        return out
    xa, xb = _xy(a, keys), _xy(b, keys)
    out["knn_map"] = metrics.neighbour_overlap(xa, xb, k, sample)
    out["procrustes_disparity"] = round(metrics.procrustes(xa, xb).disparity, 4)
    if a.vectors and b.vectors:
        va = np.stack([a.vectors[t] for t in keys])
        vb = np.stack([b.vectors[t] for t in keys])
        out["knn_original"] = metrics.neighbour_overlap(va, vb, k, sample)
    else:
        out["original_error"] = a.vectors_error or b.vectors_error or "no vectors"
    shown = a.table.dropna(subset=["key"]).drop_duplicates("key").set_index("key")["display"]
    picks = keys[:: max(1, len(keys) // 12)][:12]
    out["examples"] = [("_" if t.startswith("▁") else "") + str(shown[t]) for t in picks]
    return out


def _unique_labels(runs: list[Run]) -> list[str]:
    labels = [r.label for r in runs]
    return [r.folder.name if labels.count(r.label) > 1 else r.label for r in runs]


def _aligned(runs: list[Run]) -> tuple[list[pd.DataFrame], list[float | None]]:
    """Every layout aligned onto the first run's on the tokens they share."""
    ref = runs[0]
    out, disparity = [ref.table], [0.0]
    for run in runs[1:]:
        keys = _shared(ref, run)
        table = run.table.copy()
        if len(keys) >= 3:
            fit = metrics.procrustes(_xy(ref, keys), _xy(run, keys))
            table[["x", "y"]] = fit.apply(table[["x", "y"]].to_numpy(), shrink=False)
            disparity.append(round(fit.disparity, 4))
        else:
            disparity.append(None)
        out.append(table)
    return out, disparity


def _save(img: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def _anchors(runs: list[Run], given: list[str] | None) -> list[str]:
    if given:
        return list(given)
    found = [z["anchor"] for z in runs[0].manifest.get("config", {}).get("render", {})
             .get("zooms", []) if z.get("anchor")]
    return found or list(DEFAULT_ANCHORS)


def compare(folders: list[Path], out: Path | None = None, anchors: list[str] | None = None,
            k: int = 10, sample: int = 2000, color_by: str = "category",
            log_files: list[Path | None] | None = None) -> dict[str, Any]:
    """Compare the finished runs among ``folders``; returns what ``compare.json`` holds."""
    if not folders:
        raise CompareError("no run directories given; pass two or more, or --config CONFIG")
    folders = [Path(f) for f in folders]
    out = Path(out) if out else output_dir(folders)
    loaded = [load(f, lf) for f, lf in zip(folders, log_files or [None] * len(folders),
                                           strict=True)]
    runs = [r for r in loaded if isinstance(r, Run)]
    failed = [r for r in loaded if isinstance(r, Failed)]
    for f in failed:
        log.warning("not compared: %s: %s", f.folder, f.reason)
    if len(runs) < 2:
        names = "; ".join(f"{f.folder}: {f.reason}" for f in failed) or "only one was given"
        raise CompareError(f"need at least two finished runs to compare, found {len(runs)} "
                           f"({names})")
    matched_by = "display"
    if same_model(runs):  # one tokenizer (e.g. input vs contextual vectors): exact ids
        key_by_id(runs)
        matched_by = "token_id"
    labels = _unique_labels(runs)
    wanted: dict[int, set[str]] = {i: set() for i in range(len(runs))}
    for i, j in itertools.combinations(range(len(runs)), 2):
        keys = set(_shared(runs[i], runs[j]))
        wanted[i] |= keys
        wanted[j] |= keys
    for i, run in enumerate(runs):
        load_vectors(run, wanted[i])
    pairs = []
    for i, j in itertools.combinations(range(len(runs)), 2):
        pair = _pair(runs[i], runs[j], k, sample)
        pair["a"], pair["b"] = labels[i], labels[j]
        log.info("%s vs %s: %d shared, kNN overlap original %s map %s, disparity %s",
                 labels[i], labels[j], pair["shared"],
                 (pair["knn_original"] or {}).get("overlap"),
                 (pair["knn_map"] or {}).get("overlap"), pair["procrustes_disparity"])
        pairs.append(pair)
    out.mkdir(parents=True, exist_ok=True)
    aligned, to_ref = _aligned(runs)
    titles = [f"{label} ({run.family}, {len(run.table):,} tokens)"
              + (f", disparity to {labels[0]} {d:.3f}" if d else "")
              for label, run, d in zip(labels, runs, to_ref, strict=True)]
    images = ["grid.png"]
    _save(pictures.grid(aligned, titles, color_by), out / "grid.png")
    anchor_rows = []
    cfg = pictures.zoom_config(color_by)
    for n, anchor in enumerate(_anchors(runs, anchors), start=1):
        img, nearest = pictures.anchor_row(aligned, labels, anchor, cfg)
        name = f"anchor_{n}.png"
        _save(img, out / name)
        images.append(name)
        anchor_rows.append({"anchor": anchor, "file": name,
                            "nearest": dict(zip(labels, nearest, strict=True))})
    result = {
        "k": k, "sample": sample, "color_by": color_by, "out": str(out),
        "matched_by": matched_by,
        "runs": [{"label": label, "run_dir": str(run.folder), "family": run.family,
                  "model": run.manifest.get("model", {}).get("id", ""),
                  "tokens": len(run.table), "keys": int(run.table["key"].nunique()),
                  "knn_preservation": run.manifest.get("quality", {}).get("knn_preservation"),
                  "disparity_to_first": d, "vectors_error": run.vectors_error}
                 for label, run, d in zip(labels, runs, to_ref, strict=True)],
        "failed": [{"run_dir": str(f.folder), "reason": f.reason} for f in failed],
        "pairs": pairs, "anchors": anchor_rows, "images": images,
    }
    result["files"] = report.write(result, out) + images
    return result
