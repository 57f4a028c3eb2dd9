"""datashader pictures: every point binned on an explicit canvas, then shaded, then annotated.

Binning (an ``xarray.DataArray`` of counts per category) and colouring are separate steps,
so an aggregate can be recoloured without re-binning and tests can check its counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from job.config import ConfigError, RenderConfig
from job.render import labels as lab
from job.render.box import Box
from job.render.zooms import Region

# Fixed colours for the token categories; other colourings take the glasbey palette.
CATEGORY_COLOURS = {
    "special": "#d62728", "word": "#1f77b4", "continuation": "#ff7f0e", "number": "#2ca02c",
    "punctuation": "#9467bd", "byte": "#8c564b",
}
# `verified` (job/verify.py): confirmed under-trained in reds, not confirmed in blue
VERIFIED_COLOURS = {"strong": "#b2182b", "weak": "#f4a582", "no": "#2166ac",
                    "not tested": "#d9d9d9"}
BACKGROUND = "white"
MAX_LEVELS = 64  # colours in one picture (a legend entry and a page layer each)
# Continuous columns (the under-trained score): light blue at the typical value (the median)
# through orange to dark red at the largest; a pixel shows the highest value drawn in it.
SCALE_STOPS = ("#a6bddb", "#fdae61", "#d7191c", "#67000d")
BAR_WIDTH = 220


@dataclass(frozen=True)
class Canvas:
    """A box of the map and the picture size it is drawn on."""

    box: Box
    width: int
    height: int

    def to_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = self.box
        px = (x - b.x0) / (b.x1 - b.x0) * self.width
        py = (b.y1 - y) / (b.y1 - b.y0) * self.height
        return px, py

    def datashader(self) -> Any:
        """The ``datashader.Canvas`` of the same ranges and size."""
        import datashader as ds

        b = self.box
        return ds.Canvas(plot_width=self.width, plot_height=self.height,
                         x_range=(b.x0, b.x1), y_range=(b.y0, b.y1))


def full_canvas(table: pd.DataFrame, width: int, height: int, pad: float = 0.02) -> Canvas:
    """Ranges covering every point with a small margin, square in map units."""
    x, y = table["x"].to_numpy(), table["y"].to_numpy()
    cx, cy = (x.min() + x.max()) / 2, (y.min() + y.max()) / 2
    half = max(x.max() - x.min(), y.max() - y.min(), 1e-6) * (0.5 + pad)
    aspect = width / height
    hx, hy = half * max(aspect, 1), half / min(aspect, 1)
    return Canvas(Box(cx - hx, cx + hx, cy - hy, cy + hy), width, height)


def colour_key(table: pd.DataFrame, column: str) -> dict[str, str]:
    import colorcet

    levels = list(table[column].cat.categories)
    if column == "category":
        return {c: CATEGORY_COLOURS.get(c, "#7f7f7f") for c in levels}
    if column == "verified":
        return {c: VERIFIED_COLOURS.get(c, "#7f7f7f") for c in levels}
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


def is_continuous(table: pd.DataFrame, column: str) -> bool:
    """A float column (such as ``undertrained``): drawn with a colour scale, not a legend."""
    return column in table and pd.api.types.is_float_dtype(table[column].dtype)


def colour_span(values: np.ndarray) -> tuple[float, float]:
    """The colour scale's range: the median (typical token) to the 99.9th percentile (a few
    extreme rows, such as all-zero ones, do not squeeze the scale; higher values take the
    top colour)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return 0.0, 1.0
    lo, hi = float(np.median(finite)), float(np.percentile(finite, 99.9))
    return lo, hi if hi > lo else lo + 1.0


def aggregate_max(frame: pd.DataFrame, canvas: Canvas, column: str):
    """The largest value of ``column`` per pixel (``xarray.DataArray`` (H, W), NaN where no
    point falls)."""
    import datashader as ds

    return canvas.datashader().points(frame, "x", "y", agg=ds.max(column))


def shade_scale(agg, span: tuple[float, float], spread: int) -> Image.Image:
    """Colour a per-pixel value aggregate on ``SCALE_STOPS`` over ``span`` (linear)."""
    import datashader.transfer_functions as tf

    img = tf.shade(agg, cmap=list(SCALE_STOPS), how="linear", span=list(span))
    if spread:
        img = tf.spread(img, px=spread)
    img = tf.set_background(img, BACKGROUND)
    return img.to_pil().convert("RGB")


def scale_colour(value: float, span: tuple[float, float]) -> tuple[int, int, int]:
    """The RGB colour ``shade_scale`` gives ``value`` (for colour bars and tests)."""
    t = min(max((value - span[0]) / (span[1] - span[0]), 0.0), 1.0) * (len(SCALE_STOPS) - 1)
    i = min(int(t), len(SCALE_STOPS) - 2)
    a, b = (np.array(Image.new("RGB", (1, 1), c).getpixel((0, 0))) for c in
            SCALE_STOPS[i:i + 2])
    return tuple(int(round(v)) for v in a + (b - a) * (t - i))


def bar_colours(span: tuple[float, float]) -> list[tuple[int, int, int]]:
    """A colour bar's ``BAR_WIDTH`` columns, from ``span[0]`` to ``span[1]``."""
    return [scale_colour(span[0] + (span[1] - span[0]) * i / (BAR_WIDTH - 1), span)
            for i in range(BAR_WIDTH)]


def bar_ends(span: tuple[float, float]) -> tuple[str, str]:
    """The values written under a colour bar's two ends."""
    return f"{span[0]:.2f}", f"{span[1]:.2f}"


def _scale_note(table: pd.DataFrame, column: str) -> str:
    if column != "undertrained":
        return ""
    high = int((table[column] >= 3).sum())
    return f"{high:,} tokens at >= 3 (unusual)"


def aggregate(frame: pd.DataFrame, canvas: Canvas, column: str):
    """Counts per pixel and category (``xarray.DataArray`` of shape (H, W, categories))."""
    import datashader as ds

    return canvas.datashader().points(frame, "x", "y", agg=ds.count_cat(column))


def shade(agg, key: dict[str, str], spread: int, min_alpha: int = 90) -> Image.Image:
    import datashader.transfer_functions as tf

    img = tf.shade(agg, color_key=key, how="eq_hist", min_alpha=min_alpha)
    if spread:
        img = tf.spread(img, px=spread)
    img = tf.set_background(img, BACKGROUND)
    return img.to_pil().convert("RGB")


def heading(model: str, n: int) -> str:
    """The model's name and its token count, as every picture's title starts."""
    return f"{model}: {n:,} tokens" if model else f"{n:,} tokens"


def overview(table: pd.DataFrame, regions: list[Region], cfg: RenderConfig, model: str = "",
             ) -> tuple[Image.Image, object]:
    """Every point coloured by ``cfg.color_by``, with a legend and the zoom regions outlined;
    the legend's title names ``model`` and the token count."""
    canvas = full_canvas(table, cfg.width, cfg.height)
    continuous = is_continuous(table, cfg.color_by)
    if continuous:
        frame = table[["x", "y", cfg.color_by]]
        span = colour_span(frame[cfg.color_by].to_numpy())
        agg = aggregate_max(frame, canvas, cfg.color_by)
        img = shade_scale(agg, span, spread=1)
        note = _scale_note(table, cfg.color_by)
    else:
        frame = categorical(table, cfg.color_by)
        agg = aggregate(frame, canvas, cfg.color_by)
        key = colour_key(frame, cfg.color_by)
        img = shade(agg, key, spread=1)
        counts = frame[cfg.color_by].value_counts()
        rows = [(f"{c} ({counts[c]:,})", colour) for c, colour in key.items() if counts.get(c)]
    boxes = []
    for region in regions:
        b = region.box
        (px0, px1), (py1, py0) = canvas.to_pixels(np.array([b.x0, b.x1]), np.array([b.y0, b.y1]))
        boxes.append((region.name, (px0, py0, px1, py1)))
    title = f"{heading(model, len(table))} by {cfg.color_by}"
    draw = ImageDraw.Draw(img, "RGBA")
    lab.outline(draw, boxes, cfg.font_size)
    if continuous:
        lab.colour_bar(draw, bar_colours(span), bar_ends(span), cfg.font_size, title, note)
    else:
        lab.legend(draw, rows, cfg.font_size, title)
    return img, agg


def zoom_canvas(region: Region, width: int, height: int) -> Canvas:
    """The region centred on a ``width`` x ``height`` canvas, square in map units: the
    shorter side's range is widened, so every point of the region is on the canvas."""
    (span_x, span_y), (cx, cy) = region.box.size, region.box.centre
    scale = min(width / span_x, height / span_y)
    hx, hy = width / scale / 2, height / scale / 2
    return Canvas(Box(cx - hx, cx + hx, cy - hy, cy + hy), width, height)


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
    img = Image.new("RGB", (cfg.zoom_width, cfg.zoom_height), BACKGROUND)
    bar = None
    if is_continuous(table, cfg.color_by):
        # the scale of the whole map, so a colour means the same in every zoom
        span = colour_span(table[cfg.color_by].to_numpy())
        agg = aggregate_max(table[["x", "y", cfg.color_by]], canvas, cfg.color_by)
        img.paste(shade_scale(agg, span, spread=3), (0, band))
        bar = bar_colours(span), bar_ends(span)
    else:
        frame = categorical(table, cfg.color_by)
        agg = aggregate(frame, canvas, cfg.color_by)
        # a zoom's points are few and mostly one per pixel: draw them nearly opaque
        img.paste(shade(agg, colour_key(frame, cfg.color_by), spread=3, min_alpha=220),
                  (0, band))
    shown = canvas.box.contains(table["x"].to_numpy(), table["y"].to_numpy())
    sub = table[shown]
    px, py = canvas.to_pixels(sub["x"].to_numpy(), sub["y"].to_numpy())
    points = int(shown.sum())
    draw = ImageDraw.Draw(img, "RGBA")
    labels = lab.draw_labels(draw, px, py, sub["display"].astype(str).tolist(),
                             sub.index.to_numpy(), (canvas.width, canvas.height, band),
                             cfg.font_size, cfg.max_labels)
    title = (f"{heading(model, len(table))} · {region.name}: {points:,} shown, "
             f"{len(labels)} labelled")
    draw.line((0, band - 1, cfg.zoom_width, band - 1), fill="#cccccc")
    lab.draw_text(draw, (8, 5), title, cfg.font_size + 2)
    if bar is not None:  # the colour bar in the bottom-left corner
        height = 8 + (cfg.font_size + 6) * 3
        lab.colour_bar(draw, *bar, cfg.font_size, cfg.color_by,
                       origin=(8, cfg.zoom_height - height - 8))
    return ZoomPicture(img, labels, points, title)
