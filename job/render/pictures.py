"""Everything drawn for one run: the overview, one PNG per zoom region, the page.

The run directory holds only the pictures of its last render: pictures of an earlier render
that this one did not make are removed. ``render_state`` identifies what a set of pictures
shows (the render settings and the layout), so a rerun can tell whether to redraw.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd

from job.config import RenderConfig
from job.render import labels, raster, zooms
from job.render.zooms import Region
from job.rundir import NEIGHBOURS, atomic_write

log = logging.getLogger(__name__)

# the names render_all writes; only files with these names are ever removed as stale
PICTURE_NAME = re.compile(r"^(overview\.png|map\.html|zoom_.+\.png)$")


def _save_png(img: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG", optimize=False))


def zoom_file(name: str) -> str:
    """File name of a zoom picture: letters of any script are kept, the rest become ``_``."""
    return "zoom_" + re.sub(r"[^\w.-]+", "_", name) + ".png"


def render_all(table: pd.DataFrame, cfg: RenderConfig, folder: Path, model: str = "",
               near: pd.DataFrame | None = None) -> dict[str, Any]:
    """Draw the overview, the zooms and (if enabled) the page into ``folder``, then remove
    the pictures of an earlier render that this one did not make; returns what was drawn,
    with seconds per part. ``model`` (its label) heads every title; ``near``, the run's
    neighbours table when this run made it (else the page reads ``neighbours.parquet``)."""
    seconds: dict[str, float] = {}
    listed = _page_neighbours(cfg, folder, near) if cfg.html else None
    start = time.perf_counter()
    regions, skipped = zooms.resolve(table, cfg), zooms.skipped(table, cfg)
    image, _ = raster.overview(table, regions, cfg, model)
    _save_png(image, folder / "overview.png")
    seconds["overview"] = time.perf_counter() - start
    start = time.perf_counter()
    drawn = []
    texts: list[str] = []  # every token label drawn
    for region in regions:
        picture = raster.draw_zoom(table, region, zoom_settings(region, table, cfg), model)
        texts += [lab.text for lab in picture.labels]
        name = zoom_file(region.name)
        _save_png(picture.image, folder / name)
        sample = [lab.text for lab in picture.labels[:12]]
        log.info("zoom %s (%s): %d tokens, %d labels, e.g. %s", region.name, region.how,
                 picture.points, len(picture.labels), " ".join(sample))
        drawn.append(region.as_dict() | {"file": name, "points": picture.points,
                                         "labels": len(picture.labels), "title": picture.title,
                                         "examples": sample})
        if cfg.html:
            drawn[-1]["page_view"] = page_view(region, table)
            if region.name == zooms.UNDERTRAINED:
                log.info("the most under-trained tokens in the page: %s", drawn[-1]["page_view"])
    seconds["zooms"] = time.perf_counter() - start
    files = ["overview.png"] + [d["file"] for d in drawn]
    facts: dict[str, Any] = font_facts(texts)
    if cfg.html:
        from job.render import page

        start = time.perf_counter()
        facts["page_bytes"] = page.write(table, cfg, regions, folder / "map.html",
                                         listed, model)["bytes"]
        seconds["page"] = time.perf_counter() - start
        files.append("map.html")
    if stale := remove_stale(folder, files):
        log.info("removed %d picture(s) of an earlier render: %s", len(stale), ", ".join(stale))
    seconds = {k: round(v, 2) for k, v in seconds.items()}
    log.info("rendered in %s", ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    return {"color_by": cfg.color_by, "zooms": drawn, "files": files, "seconds": seconds,
            "skipped_zooms": skipped, **facts}


def _page_neighbours(cfg: RenderConfig, folder: Path, near: pd.DataFrame | None,
                     ) -> pd.DataFrame | None:
    """The neighbours the page lists: ``near`` when given, else ``neighbours.parquet``."""
    if not cfg.neighbours:
        return None
    if near is None and (folder / NEIGHBOURS).is_file():
        return pd.read_parquet(folder / NEIGHBOURS)
    if near is None:
        log.warning("%s has no %s: the page lists no neighbours (`run` adds them)",
                    folder, NEIGHBOURS)
    return near


def font_facts(texts: list[str]) -> dict[str, Any]:
    """The manifest's account of the label fonts: ``fonts``, the files that drew ``texts``
    (in fallback order), and ``labels_without_glyph``, how many of them hold a character no
    label font has (drawn as a box); the log warns when that is not 0."""
    lost = [t for t in texts if labels.missing(t)]
    if lost:
        chars = sorted({c for t in lost for c in labels.missing(t)})
        log.warning("%d of %d labels hold characters no label font has, drawn as boxes: %s "
                    "(e.g. %s)", len(lost), len(texts),
                    " ".join(f"U+{ord(c):04X}" for c in chars[:10]), " ".join(lost[:5]))
    return {"fonts": labels.fonts_used(texts), "labels_without_glyph": len(lost)}


VERIFIED = "verified"  # the column `vocabmap verify` adds (job/verify.py)


def zoom_settings(region: Region, table: pd.DataFrame, cfg: RenderConfig) -> RenderConfig:
    """The under-trained zoom of a verified run is coloured by ``verified``; others by
    ``cfg.color_by``."""
    if region.name == zooms.UNDERTRAINED and VERIFIED in table:
        return dataclasses.replace(cfg, color_by=VERIFIED)
    return cfg


def page_view(region: Region, table: pd.DataFrame) -> str:
    """The link that opens ``map.html`` on ``region`` (coloured by the under-trained score for
    its own zoom, by ``verified`` once verified), e.g.
    ``map.html#color=undertrained&view=1.5,-3,12``."""
    cx, cy = region.box.centre
    width = max(region.box.size)
    shown = VERIFIED if VERIFIED in table else zooms.UNDERTRAINED
    colour = (f"color={shown}&" if region.name == zooms.UNDERTRAINED and shown in table
              else "")
    return f"map.html#{colour}view={cx:.6g},{cy:.6g},{width:.6g}"


def remove_stale(folder: Path, keep: list[str]) -> list[str]:
    """Remove pictures (``overview.png``, ``zoom_*.png``, ``map.html``) not in ``keep``;
    any other file is left alone. Returns the names removed."""
    stale = sorted(p.name for p in Path(folder).iterdir()
                   if PICTURE_NAME.match(p.name) and p.name not in keep and p.is_file())
    for name in stale:
        (folder / name).unlink(missing_ok=True)
    return stale


def render_state(cfg: RenderConfig, layout: Path, near: Path | None = None,
                 ) -> dict[str, str]:
    """What decides the pictures: a hash of the render settings (and vocabmap's version and
    the label fonts present) and the SHA-256 of the layout file they are drawn from (and of
    the neighbours file the page embeds, when there is one)."""
    try:
        version = importlib.metadata.version("vocabmap")
    except importlib.metadata.PackageNotFoundError:
        version = ""
    fonts = [Path(f).name for f in labels.font_paths()]  # new label fonts redraw the labels
    blob = json.dumps({"render": dataclasses.asdict(cfg), "vocabmap": version,
                       "label_fonts": fonts}, sort_keys=True, default=str).encode()
    state = {"settings": hashlib.sha256(blob).hexdigest()[:12],
             "layout_sha256": hashlib.sha256(Path(layout).read_bytes()).hexdigest()}
    if near is not None and Path(near).is_file():
        state["neighbours_sha256"] = hashlib.sha256(Path(near).read_bytes()).hexdigest()
    return state


def up_to_date(folder: Path, stored: dict[str, Any], state: dict[str, str]) -> bool:
    """Whether ``stored`` (a manifest's ``render_state``) shows the same settings and layout
    as ``state`` and every picture it lists is still there, as written."""
    if {k: stored.get(k) for k in state} != state or not stored.get("files"):
        return False
    return all((folder / name).is_file() and (folder / name).stat().st_size == size
               for name, size in stored["files"].items())


def render_recorded(table: pd.DataFrame, cfg: RenderConfig, folder: Path,
                    state: dict[str, Any], model: str = "", near: pd.DataFrame | None = None,
                    ) -> dict[str, Any]:
    """:func:`render_all`, and what the manifest records of it: ``rendered`` and
    ``render_state`` (``state``, from :func:`render_state`, with each picture's size)."""
    drawn = render_all(table, cfg, folder, model=model, near=near)
    return {"rendered": drawn,
            "render_state": state | {"files": file_sizes(folder, drawn["files"])}}


def file_sizes(folder: Path, files: list[str]) -> dict[str, int]:
    """Each picture's size in bytes, for ``up_to_date`` to check later."""
    return {name: (folder / name).stat().st_size for name in files}
