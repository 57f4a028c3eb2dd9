"""Everything drawn for one run: the overview, one PNG per zoom region, the page."""

from __future__ import annotations

import logging
import re
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
    """Draw the overview, the zooms and (if enabled) the page into ``folder``."""
    regions = zooms.resolve(table, cfg)
    image, _ = raster.overview(table, regions, cfg)
    _save_png(image, folder / "overview.png")
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
    files = ["overview.png"] + [d["file"] for d in drawn]
    if cfg.html:
        from job.render import page

        page.write(table, cfg, regions, folder / "map.html")
        files.append("map.html")
    return {"color_by": cfg.color_by, "zooms": drawn, "files": files}
