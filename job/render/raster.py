"""datashader pictures: every point binned on an explicit canvas, then shaded, then annotated.

Binning (an ``xarray.DataArray`` of counts per category) and colouring are separate steps,
so an aggregate can be recoloured without re-binning and tests can check its counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from job.config import ConfigError, RenderConfig
from job.render import labels as lab
from job.render.zooms import Region

# Fixed colours for the token categories; other colourings take the glasbey palette.
CATEGORY_COLOURS = {
    "special": "#d62728", "word": "#1f77b4", "continuation": "#ff7f0e", "number": "#2ca02c",
    "punctuation": "#9467bd", "byte": "#8c564b",
}
BACKGROUND = "white"
MAX_LEVELS = 64  # colours in one picture (a legend entry and a page layer each)


@dataclass(frozen=True)
class Canvas:
    """Map-coordinate ranges and the picture size they are drawn on."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int
    height: int

    def to_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        px = (x - self.x0) / (self.x1 - self.x0) * self.width
        py = (self.y1 - y) / (self.y1 - self.y0) * self.height
        return px, py


def full_canvas(table: pd.DataFrame, width: int, height: int, pad: float = 0.02) -> Canvas:
    """Ranges covering every point with a small margin, square in map units."""
    x, y = table["x"].to_numpy(), table["y"].to_numpy()
    cx, cy = (x.min() + x.max()) / 2, (y.min() + y.max()) / 2
    half = max(x.max() - x.min(), y.max() - y.min(), 1e-6) * (0.5 + pad)
    aspect = width / height
    return Canvas(cx - half * max(aspect, 1), cx + half * max(aspect, 1),
                  cy - half / min(aspect, 1), cy + half / min(aspect, 1), width, height)


def colour_key(table: pd.DataFrame, column: str) -> dict[str, str]:
    import colorcet

    levels = list(table[column].cat.categories)
    if column == "category":
        return {c: CATEGORY_COLOURS.get(c, "#7f7f7f") for c in levels}
    palette = colorcet.palette["glasbey_category10"]  # hex strings
    return {c: palette[i % len(palette)] for i, c in enumerate(levels)}


def categorical(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """``x``, ``y`` and ``column`` as a pandas categorical, as datashader wants it."""
    if column not in table:
        choices = [c for c in table.columns if c not in ("x", "y", "token_id")]
        raise ConfigError(f"render.color_by = {column!r} is not a column of the token table; "
                          f"choose one of: {', '.join(choices)}")
    frame = table[["x", "y", column]].copy()
    if not isinstance(frame[column].dtype, pd.CategoricalDtype):
        frame[column] = frame[column].astype(str).astype("category")
    levels = len(frame[column].cat.categories)
    if levels > MAX_LEVELS:
        raise ConfigError(f"render.color_by = {column!r} has {levels:,} distinct values; "
                          f"colour by a column with at most {MAX_LEVELS} (category, script, pos)")
    return frame


def aggregate(frame: pd.DataFrame, canvas: Canvas, column: str):
    """Counts per pixel and category (``xarray.DataArray`` of shape (H, W, categories))."""
    import datashader as ds

    cvs = ds.Canvas(plot_width=canvas.width, plot_height=canvas.height,
                    x_range=(canvas.x0, canvas.x1), y_range=(canvas.y0, canvas.y1))
    return cvs.points(frame, "x", "y", agg=ds.count_cat(column))


def shade(agg, key: dict[str, str], spread: int, min_alpha: int = 90) -> Image.Image:
    import datashader.transfer_functions as tf

    img = tf.shade(agg, color_key=key, how="eq_hist", min_alpha=min_alpha)
    if spread:
        img = tf.spread(img, px=spread)
    img = tf.set_background(img, BACKGROUND)
    return img.to_pil().convert("RGB")


def _legend(draw: ImageDraw.ImageDraw, key: dict[str, str], counts: dict[str, int],
            size: int, title: str) -> None:
    rows = [(c, key[c]) for c in key if counts.get(c, 0)]
    line = size + 6
    w = max([lab.measure(title, size)[0] + 12]
            + [lab.measure(f"{c} ({counts[c]:,})", size)[0] + size + 24 for c, _ in rows])
    draw.rectangle((8, 8, 8 + w, 16 + line * (len(rows) + 1)), fill="#ffffffdd",
                   outline="#999999")
    lab.draw_text(draw, (14, 12), title, size)
    for i, (c, colour) in enumerate(rows, start=1):
        y = 12 + i * line
        draw.rectangle((14, y + 3, 14 + size - 4, y + size - 1), fill=colour)
        lab.draw_text(draw, (18 + size, y), f"{c} ({counts[c]:,})", size)


def heading(model: str, n: int) -> str:
    """The model's name and its token count, as every picture's title starts."""
    return f"{model}: {n:,} tokens" if model else f"{n:,} tokens"


def overview(table: pd.DataFrame, regions: list[Region], cfg: RenderConfig, model: str = "",
             ) -> tuple[Image.Image, object]:
    """Every point coloured by ``cfg.color_by``, with a legend and the zoom regions outlined;
    the legend's title names ``model`` and the token count."""
    canvas = full_canvas(table, cfg.width, cfg.height)
    frame = categorical(table, cfg.color_by)
    agg = aggregate(frame, canvas, cfg.color_by)
    key = colour_key(frame, cfg.color_by)
    img = shade(agg, key, spread=1)
    draw = ImageDraw.Draw(img, "RGBA")
    for region in regions:
        (px0, px1), (py1, py0) = canvas.to_pixels(np.array([region.x0, region.x1]),
                                                  np.array([region.y0, region.y1]))
        draw.rectangle((px0, py0, px1, py1), outline="#000000", width=2)
        _, ascent, descent = lab.measure(region.name, cfg.font_size)
        lab.draw_text(draw, (px0 + 2, py0 - ascent - descent - 4), region.name,
                      cfg.font_size, stroke=2)
    counts = frame[cfg.color_by].value_counts().to_dict()
    _legend(draw, key, {str(k): int(v) for k, v in counts.items()}, cfg.font_size,
            f"{heading(model, len(table))} by {cfg.color_by}")
    return img, agg


def zoom_canvas(region: Region, width: int, height: int) -> Canvas:
    """The region centred on a ``width`` x ``height`` canvas, square in map units: the
    shorter side's range is widened, so every point of the region is on the canvas."""
    scale = min(width / (region.x1 - region.x0), height / (region.y1 - region.y0))
    cx, cy = (region.x0 + region.x1) / 2, (region.y0 + region.y1) / 2
    hx, hy = width / scale / 2, height / scale / 2
    return Canvas(cx - hx, cx + hx, cy - hy, cy + hy, width, height)


def title_band(font_size: int) -> int:
    """Height of the strip above a zoom's raster that holds its title."""
    return font_size + 14


@dataclass
class ZoomPicture:
    """A drawn zoom: the image, its labels, and the one count its title, the log and the
    manifest all give (the tokens drawn in the picture)."""

    image: Image.Image
    labels: list[lab.Label]
    points: int
    title: str


def zoom(table: pd.DataFrame, region: Region, cfg: RenderConfig, model: str = "",
         ) -> tuple[Image.Image, list[lab.Label]]:
    """One region: every point in it drawn, and non-overlapping token labels (see
    ``draw_zoom``)."""
    picture = draw_zoom(table, region, cfg, model)
    return picture.image, picture.labels


def draw_zoom(table: pd.DataFrame, region: Region, cfg: RenderConfig, model: str = "",
              ) -> ZoomPicture:
    """One region: every point in it drawn, and non-overlapping token labels.

    The picture is ``zoom_width`` x ``zoom_height``: a title strip on top, the raster below
    it. Returned labels are in picture pixels (``index`` is the table row). The raster can
    show a little more than the region (it is widened to the picture's shape); ``points``
    counts every token the picture shows. The title starts with ``model`` and the map's
    token count.
    """
    band = title_band(cfg.font_size)
    canvas = zoom_canvas(region, cfg.zoom_width, cfg.zoom_height - band)
    frame = categorical(table, cfg.color_by)
    agg = aggregate(frame, canvas, cfg.color_by)
    img = Image.new("RGB", (cfg.zoom_width, cfg.zoom_height), BACKGROUND)
    # a zoom's points are few and mostly one per pixel: draw them nearly opaque
    img.paste(shade(agg, colour_key(frame, cfg.color_by), spread=3, min_alpha=220), (0, band))
    x, y = table["x"].to_numpy(), table["y"].to_numpy()
    shown = (x >= canvas.x0) & (x <= canvas.x1) & (y >= canvas.y0) & (y <= canvas.y1)
    sub = table[shown]
    px, py = canvas.to_pixels(sub["x"].to_numpy(), sub["y"].to_numpy())
    placed = lab.place(px, py, sub["display"].astype(str).tolist(), canvas.width,
                       canvas.height, cfg.font_size, cfg.max_labels)
    draw = ImageDraw.Draw(img, "RGBA")
    labels = []
    for p in placed:
        box = (p.box[0], p.box[1] + band, p.box[2], p.box[3] + band)
        lab.draw_text(draw, (box[0] + 2, box[1] + 2), p.text, cfg.font_size, fill="#111111")
        labels.append(lab.Label(int(sub.index[p.index]), p.text, p.px, p.py + band, box))
    points = int(shown.sum())
    title = (f"{heading(model, len(table))} · {region.name}: {points:,} shown, "
             f"{len(labels)} labelled")
    draw.line((0, band - 1, cfg.zoom_width, band - 1), fill="#cccccc")
    lab.draw_text(draw, (8, 5), title, cfg.font_size + 2)
    return ZoomPicture(img, labels, points, title)
