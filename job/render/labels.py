"""Text on the pictures: token labels placed without overlaps, and the boxed legend,
colour bar and region names (drawn with ``job/render/shaping.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw

from job.render.shaping import draw_text, measure


@dataclass(frozen=True)
class Label:
    """A label anchored at pixel (px, py) whose text box is (x0, y0, x1, y1)."""

    index: int  # row in the caller's arrays
    text: str
    px: float
    py: float
    box: tuple[float, float, float, float]


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place(px: np.ndarray, py: np.ndarray, texts: list[str], width: int, height: int,
          size: int, limit: int, pad: int = 2) -> list[Label]:
    """Choose labels that do not overlap each other, favouring points near the centre.

    Points are tried nearest-centre first. Each label may sit right, left, above or below
    its point; of the places inside the picture and clear of the labels already kept, the
    one covering the fewest other points wins (ties: that order). Coarse grids of buckets
    keep both tests cheap. All labels are kept when few enough; at most ``limit``.
    """
    order = np.argsort(np.hypot(px - width / 2, py - height / 2), kind="stable")
    cell = max(8, size * 4)
    grid: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}
    points: dict[tuple[int, int], list[int]] = {}
    for j, (x, y) in enumerate(zip(px, py, strict=True)):
        points.setdefault((int(x // cell), int(y // cell)), []).append(j)

    def cells(box: tuple[float, float, float, float]) -> list[tuple[int, int]]:
        return [(cx, cy) for cx in range(int(box[0] // cell), int(box[2] // cell) + 1)
                for cy in range(int(box[1] // cell), int(box[3] // cell) + 1)]

    def covered(box: tuple[float, float, float, float], own: int) -> int:
        return sum(1 for c in cells(box) for j in points.get(c, ())
                   if j != own and box[0] <= px[j] <= box[2] and box[1] <= py[j] <= box[3])

    kept: list[Label] = []
    for i in order:
        if len(kept) >= limit:
            break
        text = texts[i]
        if not text.strip():
            continue
        text_w, ascent, descent = measure(text, size)
        w, h = text_w + 2 * pad, ascent + descent + 2 * pad
        x, y = float(px[i]), float(py[i])
        best, best_cover = None, 0
        for dx, dy in ((4, -h / 2), (-4 - w, -h / 2), (-w / 2, -4 - h), (-w / 2, 4)):
            box = (x + dx, y + dy, x + dx + w, y + dy + h)
            if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
                continue
            if any(_overlaps(box, other) for c in cells(box) for other in grid.get(c, ())):
                continue
            cover = covered(box, int(i))
            if best is None or cover < best_cover:
                best, best_cover = box, cover
            if cover == 0:
                break
        if best is not None:
            for c in cells(best):
                grid.setdefault(c, []).append(best)
            kept.append(Label(int(i), text, x, y, best))
    return kept


def draw_labels(draw: ImageDraw.ImageDraw, px: np.ndarray, py: np.ndarray, texts: list[str],
                rows: np.ndarray, raster: tuple[int, int, int], size: int, limit: int,
                ) -> list[Label]:
    """Place labels on a raster of ``raster`` = (width, height, top) pixels (``top``: how
    far below the picture's top it starts) with :func:`place`, and draw them; returns them
    in picture pixels, ``index`` taken from ``rows``."""
    width, height, top = raster
    drawn = []
    for p in place(px, py, texts, width, height, size, limit):
        box = (p.box[0], p.box[1] + top, p.box[2], p.box[3] + top)
        draw_text(draw, (box[0] + 2, box[1] + 2), p.text, size, fill="#111111")
        drawn.append(Label(int(rows[p.index]), p.text, p.px, p.py + top, box))
    return drawn


def outline(draw: ImageDraw.ImageDraw, boxes: list[tuple[str, tuple[float, ...]]],
            size: int) -> None:
    """Each (name, pixel box (x0, y0, x1, y1)) outlined in black, its name above it."""
    for name, (x0, y0, x1, y1) in boxes:
        draw.rectangle((x0, y0, x1, y1), outline="#000000", width=2)
        _, ascent, descent = measure(name, size)
        draw_text(draw, (x0 + 2, y0 - ascent - descent - 4), name, size, stroke=2)


def legend(draw: ImageDraw.ImageDraw, rows: list[tuple[str, str]], size: int,
           title: str) -> None:
    """A boxed title in the top-left corner over one (text, colour) swatch per row."""
    line = size + 6
    w = max([measure(title, size)[0] + 12]
            + [measure(text, size)[0] + size + 24 for text, _ in rows])
    draw.rectangle((8, 8, 8 + w, 16 + line * (len(rows) + 1)), fill="#ffffffdd",
                   outline="#999999")
    draw_text(draw, (14, 12), title, size)
    for i, (text, colour) in enumerate(rows, start=1):
        y = 12 + i * line
        draw.rectangle((14, y + 3, 14 + size - 4, y + size - 1), fill=colour)
        draw_text(draw, (18 + size, y), text, size)


def colour_bar(draw: ImageDraw.ImageDraw, colours: list[tuple[int, int, int]],
               ends: tuple[str, str], size: int, title: str, note: str = "",
               origin: tuple[int, int] = (8, 8)) -> tuple[int, int, int, int]:
    """A boxed title over a horizontal bar of ``colours`` (a pixel column each) with
    ``ends`` written under its two ends, then ``note``; returns the bar's pixel box
    (x0, y0, x1, y1)."""
    x, y = origin
    line = size + 6
    w = max(len(colours), measure(title, size)[0], measure(note, size)[0]) + 12
    rows = 3 + bool(note)
    draw.rectangle((x, y, x + w, y + 8 + line * rows), fill="#ffffffdd", outline="#999999")
    draw_text(draw, (x + 6, y + 4), title, size)
    bar = (x + 6, y + 4 + line, x + 6 + len(colours), y + 4 + line + size)
    for i, colour in enumerate(colours):
        draw.line((bar[0] + i, bar[1], bar[0] + i, bar[3]), fill=colour)
    draw_text(draw, (bar[0], bar[3] + 2), ends[0], size)
    draw_text(draw, (bar[2] - measure(ends[1], size)[0], bar[3] + 2), ends[1], size)
    if note:
        draw_text(draw, (x + 6, y + 4 + line * 3), note, size)
    return bar


def any_overlap(labels: list[Label]) -> bool:
    """True when two label boxes intersect (used by tests and as a self-check)."""
    boxes = sorted((lab.box for lab in labels), key=lambda b: b[0])
    for a_i, a in enumerate(boxes):
        for b in boxes[a_i + 1:]:
            if b[0] >= a[2]:
                break
            if _overlaps(a, b):
                return True
    return False
