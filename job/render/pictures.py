"""Everything drawn for one run: the overview, one PNG per zoom region, the page."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd

from job.config import RenderConfig
from job.render import raster, zooms
from job.rundir import atomic_write

log = logging.getLogger(__name__)


def _save_png(img: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG", optimize=False))


def zoom_file(name: str) -> str:
    """File name of a zoom picture: letters of any script are kept, the rest become ``_``."""
    return "zoom_" + re.sub(r"[^\w.-]+", "_", name) + ".png"


def render_all(table: pd.DataFrame, cfg: RenderConfig, folder: Path) -> dict[str, Any]:
    """Draw the overview, the zooms and (if enabled) the page into ``folder``; returns what
    was drawn, with seconds per part."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    regions = zooms.resolve(table, cfg)
    image, _ = raster.overview(table, regions, cfg)
    _save_png(image, folder / "overview.png")
    seconds["overview"] = time.perf_counter() - start
    start = time.perf_counter()
    drawn = []
    for region in regions:
        img, labels = raster.zoom(table, region, cfg)
        name = zoom_file(region.name)
        _save_png(img, folder / name)
        inside = int(region.contains(table["x"].to_numpy(), table["y"].to_numpy()).sum())
        sample = [lab.text for lab in labels[:12]]
        log.info("zoom %s (%s): %d tokens, %d labels, e.g. %s", region.name, region.how,
                 inside, len(labels), " ".join(sample))
        drawn.append(region.as_dict() | {"file": name, "points": inside,
                                         "labels": len(labels), "examples": sample})
    seconds["zooms"] = time.perf_counter() - start
    files = ["overview.png"] + [d["file"] for d in drawn]
    facts: dict[str, Any] = {}
    if cfg.html:
        from job.render import page

        start = time.perf_counter()
        facts["page_bytes"] = page.write(table, cfg, regions, folder / "map.html")["bytes"]
        seconds["page"] = time.perf_counter() - start
        files.append("map.html")
    seconds = {k: round(v, 2) for k, v in seconds.items()}
    log.info("rendered in %s", ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    return {"color_by": cfg.color_by, "zooms": drawn, "files": files, "seconds": seconds,
            "skipped_zooms": zooms.skipped(table, cfg), **facts}
