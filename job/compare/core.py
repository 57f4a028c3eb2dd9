"""``compare``: several run directories → calibrated agreement, what moved, pictures, report.

Reads each finished run, matches tokens across models by display text and word-start flag
(by exact token id when every run maps the same model, e.g. its input and contextual
vectors), measures every pair (``pairs.measure``: calibrated neighbour agreement in the
original spaces and on the maps, per-token agreement), optionally lays out the second and
later runs again from the first run's map (``aligned``), draws the maps side by side, and
writes ``compare.json``, ``compare.md``, ``compare.html`` and one ``tokens_<n>.parquet`` per
pair into the output folder. Failed runs are named, the others compared.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job import rundir
from job.compare import aligned, metrics, moved, pairs, pictures, report
from job.compare.runs import (
    CompareError,
    Failed,
    Run,
    by_key,
    key_by_id,
    load,
    load_vectors,
    output_dir,
    same_model,
)
from job.config import CompareConfig

log = logging.getLogger(__name__)

DEFAULT_ANCHORS = ("1990", "Japan", "king", "日本")
SHOWN = 8  # neighbours shown per token in the report


def _unique_labels(runs: list[Run]) -> list[str]:
    labels = [r.label for r in runs]
    return [r.folder.name if labels.count(r.label) > 1 else r.label for r in runs]


def onto_first(tables: list[pd.DataFrame], runs: list[Run]) -> list[float | None]:
    """Rotate (Procrustes) every table's x, y onto the first's, in place; the disparities."""
    ref = runs[0]
    disparity: list[float | None] = [0.0]
    for run, table in zip(runs[1:], tables[1:], strict=True):
        keys = pairs.shared(ref, run)
        if len(keys) < 3:
            disparity.append(None)
            continue
        moving = by_key(table, run.table["key"].to_numpy()).loc[keys, ["x", "y"]]
        fit = metrics.procrustes(pairs.xy(ref, keys), moving.to_numpy(np.float64))
        table[["x", "y"]] = fit.apply(table[["x", "y"]].to_numpy(), shrink=False)
        disparity.append(round(fit.disparity, 4))
    return disparity


def _save(img: Any, path: Path) -> None:
    rundir.atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def _anchors(runs: list[Run], given: tuple[str, ...]) -> list[str]:
    if given:
        return list(given)
    return runs[0].manifest.anchors or list(DEFAULT_ANCHORS)


def _listed(table: pd.DataFrame, n: int) -> dict[str, list[dict[str, Any]]]:
    """The most changed and most stable tokens, with their neighbours in each run."""
    changed, stable = pairs.ranked(table, n)

    def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
        return [{"token": r.display, "agreement": round(float(r.agreement), 3),
                 "a": list(r.neighbours_a[:SHOWN]), "b": list(r.neighbours_b[:SHOWN])}
                for r in frame.itertuples()]
    return {"changed": rows(changed), "stable": rows(stable)}


def _load(folders: list[Path], log_files: list[Path | None] | None,
          ) -> tuple[list[Run], list[Failed]]:
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
    return runs, failed


def _aligned_maps(runs: list[Run], labels: list[str], tables: dict[tuple[int, int], Any],
                  cfg: CompareConfig, out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Aligned layouts of runs[1:], their figures, the aligned grid and moved pictures;
    adds ``moved`` to the token tables of the pairs with the first run."""
    maps = [runs[0].table.copy()]
    facts: list[dict[str, Any]] = [{"label": labels[0], "reference": True}]
    for run, label in zip(runs[1:], labels[1:], strict=True):
        why = (run.vectors_error or "no vectors") if run.vectors is None else (
            "" if len(pairs.shared(runs[0], run)) >= 3 else
            f"shares fewer than 3 tokens with {labels[0]}")
        if why:
            facts.append({"label": label, "error": why})
            maps.append(run.table.copy())
            continue
        coords, found = aligned.layout(runs[0], run, out, k=cfg.k)
        maps.append(run.table.assign(x=coords[:, 0], y=coords[:, 1]))
        facts.append({"label": label, **found})
    disparity = onto_first(maps, runs)
    titles = [f"{label} ({len(m):,} tokens)" + (f", disparity {d:.3f}" if d else "")
              for label, m, d in zip(labels, maps, disparity, strict=True)]
    _save(pictures.grid(maps, titles, cfg.color_by), out / "aligned_grid.png")
    images = ["aligned_grid.png"]
    ref = pairs.rows(runs[0])
    for j in range(1, len(runs)):
        table = tables.get((0, j))
        facts[j]["disparity_to_first"] = disparity[j]
        if table is None or "error" in facts[j]:
            continue
        here = by_key(maps[j], runs[j].table["key"].to_numpy())
        start = ref.loc[table["key"], ["x", "y"]].to_numpy(np.float64)
        end = here.loc[table["key"], ["x", "y"]].to_numpy(np.float64)
        table["moved"] = moved.displacement(start, end)
        top = np.argsort(-table["moved"].to_numpy(), kind="stable")[:cfg.listed]
        name = f"moved_{j}.png"
        title = (f"the {len(top)} tokens that moved most from {labels[0]} to {labels[j]} "
                 "(aligned maps; open circle: first map, dot: second)")
        _save(moved.picture(maps[j][["x", "y"]].to_numpy(np.float64), start[top], end[top],
                            table["display"].iloc[top].tolist(), title), out / name)
        images.append(name)
        facts[j]["most_moved"] = [{"token": str(table["display"].iloc[i]),
                                   "moved": round(float(table["moved"].iloc[i]), 3)}
                                  for i in top]
    return facts, images


def _match(runs: list[Run]) -> str:
    """Key the runs' tokens: by exact id when they share one tokenizer (e.g. input vs
    contextual vectors of one model), else by display text; returns which."""
    if same_model(runs):
        key_by_id(runs)
        return "token_id"
    return "display"


def _vectors(runs: list[Run], cfg: CompareConfig) -> None:
    """Load each run's original vectors: the keys it shares with another run (every row for
    the runs an aligned layout needs)."""
    wanted: dict[int, set[str]] = {i: set() for i in range(len(runs))}
    for i, j in itertools.combinations(range(len(runs)), 2):
        keys = set(pairs.shared(runs[i], runs[j]))
        wanted[i] |= keys
        wanted[j] |= keys
    for i, run in enumerate(runs):
        load_vectors(run, wanted[i], full=cfg.aligned and i > 0)


def _measure(runs: list[Run], labels: list[str], cfg: CompareConfig,
             ) -> tuple[list[dict[str, Any]], dict[tuple[int, int], pd.DataFrame]]:
    """Every pair's record and, where enough tokens are shared, its per-token table."""
    records, tables = [], {}
    for i, j in itertools.combinations(range(len(runs)), 2):
        record, table = pairs.measure(runs[i], runs[j], cfg)
        record["a"], record["b"] = labels[i], labels[j]
        log.info("%s vs %s: %d shared; agreement original %s, map %s", labels[i], labels[j],
                 record["shared"], *(report.short(record[s]) for s in ("original", "map")))
        records.append(record)
        if table is not None:
            tables[(i, j)] = table
    return records, tables


def _write_tables(records: list[dict[str, Any]], tables: dict[tuple[int, int], pd.DataFrame],
                  labels: list[str], cfg: CompareConfig, out: Path) -> None:
    """Write each pair's per-token table and list its most changed and stable tokens."""
    for n, ((i, j), table) in enumerate(tables.items(), start=1):
        record = next(r for r in records if (r["a"], r["b"]) == (labels[i], labels[j]))
        record["table"] = f"tokens_{n}.parquet"
        rundir.write_parquet(out / record["table"], table)
        record.update(_listed(table, cfg.listed))


def _draw(runs: list[Run], labels: list[str], cfg: CompareConfig, out: Path,
          images: list[str]) -> tuple[list[float | None], list[dict[str, Any]]]:
    """The grid of the maps rotated onto the first, and one row per anchor; returns the
    disparities to the first map and the anchors' rows. Adds the files to ``images``."""
    maps = [run.table.copy() for run in runs]
    to_ref = onto_first(maps, runs)
    titles = [f"{label} ({run.family}, {len(run.table):,} tokens)"
              + (f", disparity to {labels[0]} {d:.3f}" if d else "")
              for label, run, d in zip(labels, runs, to_ref, strict=True)]
    _save(pictures.grid(maps, titles, cfg.color_by), out / "grid.png")
    images.insert(0, "grid.png")
    anchor_rows = []
    zoom_cfg = pictures.zoom_config(cfg.color_by)
    for n, anchor in enumerate(_anchors(runs, cfg.anchors), start=1):
        img, nearest = pictures.anchor_row(maps, labels, anchor, zoom_cfg)
        name = f"anchor_{n}.png"
        _save(img, out / name)
        images.append(name)
        anchor_rows.append({"anchor": anchor, "file": name,
                            "nearest": dict(zip(labels, nearest, strict=True))})
    return to_ref, anchor_rows


def _run_rows(runs: list[Run], labels: list[str], to_ref: list[float | None],
              ) -> list[dict[str, Any]]:
    """``compare.json``'s ``runs``: one row per compared run."""
    return [{"label": label, "run_dir": str(run.folder), "family": run.family,
             "model": run.manifest.model.id,
             "tokens": len(run.table), "keys": int(run.table["key"].nunique()),
             "knn_preservation": run.manifest.knn_preservation,
             "disparity_to_first": d, "vectors_error": run.vectors_error}
            for label, run, d in zip(labels, runs, to_ref, strict=True)]


def compare(folders: list[Path], out: Path | None = None, cfg: CompareConfig | None = None,
            log_files: list[Path | None] | None = None) -> dict[str, Any]:
    """Compare the finished runs among ``folders``; returns what ``compare.json`` holds."""
    cfg = cfg or CompareConfig()
    if not folders:
        raise CompareError("no run directories given; pass two or more, or --config CONFIG")
    folders = [Path(f) for f in folders]
    out = Path(out) if out else output_dir(folders)
    runs, failed = _load(folders, log_files)
    matched_by = _match(runs)
    labels = _unique_labels(runs)
    _vectors(runs, cfg)
    records, tables = _measure(runs, labels, cfg)
    out.mkdir(parents=True, exist_ok=True)
    images: list[str] = []
    aligned_facts: list[dict[str, Any]] = []
    if cfg.aligned:
        aligned_facts, images = _aligned_maps(runs, labels, tables, cfg, out)
    _write_tables(records, tables, labels, cfg, out)
    to_ref, anchor_rows = _draw(runs, labels, cfg, out, images)
    result = {
        "config": {**cfg.__dict__, "anchors": list(cfg.anchors)}, "k": cfg.k, "out": str(out),
        "matched_by": matched_by, "runs": _run_rows(runs, labels, to_ref),
        "failed": [{"run_dir": str(f.folder), "reason": f.reason} for f in failed],
        "pairs": records, "aligned": aligned_facts, "anchors": anchor_rows, "images": images,
    }
    result["files"] = report.write(result, out) + images + [r["table"] for r in records
                                                            if "table" in r]
    return result
