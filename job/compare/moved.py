"""The "moved" picture: on aligned maps, the tokens that moved most, as labelled arrows.

Every token of the second map is drawn in light grey as the background; each of the tokens
that moved furthest gets an arrow from its place on the first map (open circle) to its place
on the second (dot), labelled with its text at the arrow's head.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from job.render import labels as lab

ARROW = "#c0392b"


def displacement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far each token moved from ``a`` to ``b`` (both n × 2, same coordinates), in units
    of ``a``'s RMS radius (so maps of any scale read alike)."""
    radius = float(np.sqrt(((a - a.mean(axis=0)) ** 2).sum(axis=1).mean())) or 1.0
    return np.linalg.norm(b - a, axis=1) / radius


def _pixels(points: np.ndarray, lo: np.ndarray, span: float, size: int, pad: int,
            ) -> np.ndarray:
    return (points - lo) / span * (size - 2 * pad) + pad


def picture(background: np.ndarray, start: np.ndarray, end: np.ndarray, texts: list[str],
            title: str, size: int = 1100, font_size: int = 14) -> Image.Image:
    """``background``: every token of the second map; ``start``/``end``: where the listed
    tokens sit on the first and the second map; ``texts``: their labels."""
    band = font_size * 2 + 10
    img = Image.new("RGB", (size, size + band), "white")
    draw = ImageDraw.Draw(img)
    allpts = np.vstack([background, start, end])
    low, high = allpts.min(axis=0), allpts.max(axis=0)
    span = float((high - low).max()) or 1.0
    lo = (low + high) / 2 - span / 2  # the shorter side centred
    pad = 20
    px = _pixels(background, lo, span, size, pad).astype(int)
    grid = np.zeros((size, size))
    np.add.at(grid, (np.clip(px[:, 1], 0, size - 1), np.clip(px[:, 0], 0, size - 1)), 1)
    grid = np.maximum(grid, np.roll(grid, 1, axis=0))  # 2 × 2 pixels per token
    grid = np.maximum(grid, np.roll(grid, 1, axis=1))
    shade = (190 - 110 * np.log1p(grid) / max(np.log1p(grid.max()), 1e-9)).astype(np.uint8)
    shade[grid == 0] = 255
    img.paste(Image.fromarray(np.flipud(shade)).convert("RGB"), (0, band))
    s, e = (_pixels(p, lo, span, size, pad) for p in (start, end))
    s[:, 1], e[:, 1] = size - s[:, 1] + band, size - e[:, 1] + band
    for (x0, y0), (x1, y1), text in zip(s, e, texts, strict=True):
        draw.line((x0, y0, x1, y1), fill=ARROW, width=2)
        draw.ellipse((x0 - 4, y0 - 4, x0 + 4, y0 + 4), outline=ARROW, width=2)
        draw.ellipse((x1 - 4, y1 - 4, x1 + 4, y1 + 4), fill=ARROW)
        lab.draw_text(draw, (x1 + 6, y1 - font_size / 2), text, font_size, stroke=3)
    lab.draw_text(draw, (8, 6), title, font_size + 1)
    return img
