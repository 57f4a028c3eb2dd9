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

    cvs = ds.Canvas(plot_width=canvas.width, plot_height=canvas.height,
                    x_range=(canvas.x0, canvas.x1), y_range=(canvas.y0, canvas.y1))
    return cvs.points(frame, "x", "y", agg=ds.max(column))


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


def colour_bar(draw: ImageDraw.ImageDraw, span: tuple[float, float], size: int, title: str,
               note: str = "", origin: tuple[int, int] = (8, 8)) -> tuple[int, int, int, int]:
    """A boxed title, a horizontal colour bar over ``span`` and its end values; returns the
    bar's pixel box (x0, y0, x1, y1)."""
    x, y = origin
    line = size + 6
    w = max(BAR_WIDTH, lab.measure(title, size)[0], lab.measure(note, size)[0]) + 12
    rows = 3 + bool(note)
    draw.rectangle((x, y, x + w, y + 8 + line * rows), fill="#ffffffdd", outline="#999999")
    lab.draw_text(draw, (x + 6, y + 4), title, size)
    bar = (x + 6, y + 4 + line, x + 6 + BAR_WIDTH, y + 4 + line + size)
    for i in range(BAR_WIDTH):
        value = span[0] + (span[1] - span[0]) * i / (BAR_WIDTH - 1)
        draw.line((bar[0] + i, bar[1], bar[0] + i, bar[3]), fill=scale_colour(value, span))
    lab.draw_text(draw, (bar[0], bar[3] + 2), f"{span[0]:.2f}", size)
    hi = f"{span[1]:.2f}"
    lab.draw_text(draw, (bar[2] - lab.measure(hi, size)[0], bar[3] + 2), hi, size)
    if note:
        lab.draw_text(draw, (x + 6, y + 4 + line * 3), note, size)
    return bar


def _scale_note(table: pd.DataFrame, column: str) -> str:
    if column != "undertrained":
        return ""
    high = int((table[column] >= 3).sum())
    return f"{high:,} tokens at >= 3 (unusual)"


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
    continuous = is_continuous(table, cfg.color_by)
    if continuous:
        frame = table[["x", "y", cfg.color_by]]
        span = colour_span(frame[cfg.color_by].to_numpy())
        agg = aggregate_max(frame, canvas, cfg.color_by)
        img = shade_scale(agg, span, spread=1)
    else:
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
    title = f"{heading(model, len(table))} by {cfg.color_by}"
    if continuous:
        colour_bar(draw, span, cfg.font_size, title, _scale_note(table, cfg.color_by))
        return img, agg
    counts = frame[cfg.color_by].value_counts().to_dict()
    _legend(draw, key, {str(k): int(v) for k, v in counts.items()}, cfg.font_size, title)
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
    img = Image.new("RGB", (cfg.zoom_width, cfg.zoom_height), BACKGROUND)
    span = None
    if is_continuous(table, cfg.color_by):
        # the scale of the whole map, so a colour means the same in every zoom
        span = colour_span(table[cfg.color_by].to_numpy())
        agg = aggregate_max(table[["x", "y", cfg.color_by]], canvas, cfg.color_by)
        img.paste(shade_scale(agg, span, spread=3), (0, band))
    else:
        frame = categorical(table, cfg.color_by)
        agg = aggregate(frame, canvas, cfg.color_by)
        # a zoom's points are few and mostly one per pixel: draw them nearly opaque
        img.paste(shade(agg, colour_key(frame, cfg.color_by), spread=3, min_alpha=220),
                  (0, band))
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
    if span is not None:  # the colour bar in the bottom-left corner
        height = 8 + (cfg.font_size + 6) * 3
        colour_bar(draw, span, cfg.font_size, cfg.color_by,
                   origin=(8, cfg.zoom_height - height - 8))
    return ZoomPicture(img, labels, points, title)
