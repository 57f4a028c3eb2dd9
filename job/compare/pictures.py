"""Comparison pictures: aligned maps side by side, and the same anchor zoom in every model.

Every panel goes through the same datashader steps as a single run (``job.render.raster``),
with one colour key for all panels so a colour means the same thing in each.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from job.compare.runs import CompareError
from job.config import RenderConfig
from job.render import labels as lab
from job.render import raster, zooms

GAP = 12
HEADER = 34


def _with_levels(table: pd.DataFrame, column: str, levels: list[str]) -> pd.DataFrame:
    """``table`` with ``column`` as a categorical over ``levels`` (the same for every panel)."""
    frame = table.copy()
    frame[column] = pd.Categorical(frame[column].astype(str), categories=levels)
    return frame


def shared_levels(tables: list[pd.DataFrame], column: str) -> list[str]:
    levels: list[str] = []
    for table in tables:
        col = table[column]
        found = list(col.cat.categories) if isinstance(col.dtype, pd.CategoricalDtype) \
            else sorted(col.astype(str).unique())
        levels += [str(v) for v in found if str(v) not in levels]
    return levels


def _titled(img: Image.Image, title: str, size: int) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + HEADER), "white")
    out.paste(img, (0, HEADER))
    ImageDraw.Draw(out).text((6, 6), title, fill="black", font=lab.font(size))
    return out


def _tile(panels: list[Image.Image], columns: int, title: str, size: int) -> Image.Image:
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    w = max(p.width for p in panels)
    h = max(p.height for p in panels)
    sheet = Image.new("RGB", (columns * (w + GAP) + GAP, rows * (h + GAP) + GAP + HEADER),
                      "#dddddd")
    ImageDraw.Draw(sheet).text((GAP, 8), title, fill="black", font=lab.font(size + 2))
    for i, panel in enumerate(panels):
        r, c = divmod(i, columns)
        sheet.paste(panel, (GAP + c * (w + GAP), HEADER + GAP + r * (h + GAP)))
    return sheet


def scale_span(tables: list[pd.DataFrame], column: str) -> tuple[float, float]:
    """One colour scale for every panel: the median of all values to the largest."""
    return raster.colour_span(np.concatenate([t[column].to_numpy(dtype=float)
                                              for t in tables]))


def is_continuous(tables: list[pd.DataFrame], column: str) -> bool:
    """Whether ``column`` is a float column (a colour scale) in these runs. A run that lacks
    it while others have it (a run directory of an earlier version) is an error naming the
    fix."""
    have = [column in t for t in tables]
    if any(have) and not all(have) and any(raster.is_continuous(t, column) for t in tables):
        raise CompareError(f"--color-by {column}: {have.count(False)} of the runs have no "
                           f"{column!r} column (made by an earlier version); run "
                           "`python -m job run` on their configs again to add it")
    return all(raster.is_continuous(t, column) for t in tables)


def _grid_scale(tables: list[pd.DataFrame], titles: list[str], column: str, panel: int,
                columns: int, font_size: int) -> Image.Image:
    """The grid for a continuous column: one colour scale for every panel, a colour bar in
    the header."""
    frames = [t[["x", "y", column]] for t in tables]
    span = scale_span(tables, column)
    canvas = raster.full_canvas(pd.concat([f[["x", "y"]] for f in frames]), panel, panel)
    panels = [_titled(raster.shade_scale(raster.aggregate_max(f, canvas, column), span, 1),
                      title, font_size) for f, title in zip(frames, titles, strict=True)]
    title = f"maps aligned onto {titles[0].split(' (')[0]}, coloured by {column}:"
    sheet = _tile(panels, columns, title, font_size)
    draw = ImageDraw.Draw(sheet)
    fnt = lab.font(font_size)
    ends = f"{span[0]:.2f} … {span[1]:.2f}"
    x = int(draw.textlength(title, font=lab.font(font_size + 2))) + 2 * GAP
    need = x + raster.BAR_WIDTH + 6 + int(draw.textlength(ends, font=fnt)) + GAP
    if need > sheet.width:  # widen the sheet so the colour bar fits beside the title
        wider = Image.new("RGB", (need, sheet.height), "#dddddd")
        wider.paste(sheet, (0, 0))
        sheet, draw = wider, ImageDraw.Draw(wider)
    bar = (x, 9, x + raster.BAR_WIDTH, 9 + font_size)
    for i, colour in enumerate(raster.bar_colours(span)):
        draw.line((bar[0] + i, bar[1], bar[0] + i, bar[3]), fill=colour)
    draw.text((bar[2] + 6, 8), ends, fill="black", font=fnt)
    return sheet


def grid(tables: list[pd.DataFrame], titles: list[str], color_by: str = "category",
         panel: int = 700, columns: int = 3, font_size: int = 15) -> Image.Image:
    """Every map (already aligned onto the first) on one canvas range, side by side."""
    if is_continuous(tables, color_by):
        return _grid_scale(tables, titles, color_by, panel, columns, font_size)
    levels = shared_levels(tables, color_by)
    frames = [raster.categorical(_with_levels(t, color_by, levels), color_by) for t in tables]
    canvas = raster.full_canvas(pd.concat([f[["x", "y"]] for f in frames]), panel, panel)
    key = raster.colour_key(frames[0], color_by)
    panels = []
    for frame, title in zip(frames, titles, strict=True):
        img = raster.shade(raster.aggregate(frame, canvas, color_by), key, spread=1)
        panels.append(_titled(img, title, font_size))
    title = f"maps aligned onto {titles[0].split(' (')[0]}, coloured by {color_by}:"
    sheet = _tile(panels, columns, title, font_size)
    present = {str(v) for f in frames for v in f[color_by].dropna().unique()}
    _legend(sheet, title, {c: key[c] for c in key if c in present}, font_size)
    return sheet


def _legend(sheet: Image.Image, title: str, key: dict[str, str], size: int) -> None:
    """Colour swatches in the header, after the title."""
    draw = ImageDraw.Draw(sheet)
    fnt = lab.font(size)
    x = int(draw.textlength(title, font=lab.font(size + 2))) + 2 * GAP
    for name, colour in key.items():
        draw.rectangle((x, 11, x + size - 3, 8 + size), fill=colour)
        draw.text((x + size + 2, 8), name, fill="black", font=fnt)
        x += size + 14 + int(draw.textlength(name, font=fnt))


def _missing(size: int, text: str, font_size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), "#f4f4f4")
    ImageDraw.Draw(img).text((10, size // 2), text, fill="#666666", font=lab.font(font_size))
    return img


def find_anchor(table: pd.DataFrame, text: str) -> int | None:
    """Row of ``text``, else of its lower-case or capitalised form (an uncased vocabulary
    has "japan" where a cased one has "Japan"); None when the model has none of them."""
    for form in dict.fromkeys((text, text.lower(), text.capitalize())):
        try:
            return zooms.find_anchor(table, form)
        except zooms.ZoomError:
            continue
    return None


def anchor_row(tables: list[pd.DataFrame], titles: list[str], anchor: str,
               cfg: RenderConfig, neighbours: int = 60) -> tuple[Image.Image, list[list[str]]]:
    """One zoom around ``anchor`` per model, side by side; also each model's nearest labels.

    Returns the picture and, per model, the display texts of the anchor's nearest tokens on
    that map (empty where the model has no such token).
    """
    continuous = is_continuous(tables, cfg.color_by)
    levels = [] if continuous else shared_levels(tables, cfg.color_by)
    panels, nearest = [], []
    for table, title in zip(tables, titles, strict=True):
        frame = table if continuous else _with_levels(table, cfg.color_by, levels)
        row = find_anchor(frame, anchor)
        if row is None:
            panels.append(_titled(_missing(cfg.zoom_width, f"{anchor!r}: not a token here",
                                           cfg.font_size), title, cfg.font_size))
            nearest.append([])
            continue
        x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
        pos = frame.index.get_loc(row)
        box = zooms.window(x, y, float(x[pos]), float(y[pos]), neighbours)
        region = zooms.Region(anchor, box, how=f"anchor:{anchor}")
        img, _ = raster.zoom(frame, region, cfg)
        panels.append(_titled(img, title, cfg.font_size))
        order = np.argsort((x - x[pos]) ** 2 + (y - y[pos]) ** 2)
        nearest.append([str(frame["display"].iloc[i]) for i in order[1:11]])
    sheet = _tile(panels, len(panels), f"the same anchor in every model: {anchor!r}",
                  cfg.font_size)
    return sheet, nearest


def zoom_config(color_by: str, size: int = 520) -> RenderConfig:
    """Render settings for the side-by-side zoom panels."""
    return replace(RenderConfig(), color_by=color_by, zoom_width=size, zoom_height=size,
                   max_labels=70, font_size=13)
