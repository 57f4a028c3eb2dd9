"""Token labels: the shipped CJK-capable font, and placement without overlaps.

The font is IPAexGothic from the ``matplotlib-fontja`` wheel, so Japanese, Chinese and
Latin labels render as glyphs on a machine with no CJK fonts installed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import ImageFont


def font_path() -> str:
    """Path to the shipped IPAexGothic TrueType file."""
    import matplotlib_fontja

    return str(matplotlib_fontja.get_font_ttf_path())


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_path(), size)


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

    Points are tried nearest-centre first; each label is tried right, left, above and below
    its point, and kept in the first place that stays inside the picture and clear of the
    labels already kept. A coarse grid of buckets keeps the overlap test cheap.
    """
    fnt = font(size)
    order = np.argsort(np.hypot(px - width / 2, py - height / 2), kind="stable")
    cell = max(8, size * 4)
    grid: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}
    kept: list[Label] = []
    for i in order:
        if len(kept) >= limit:
            break
        text = texts[i]
        if not text.strip():
            continue
        x0, y0, x1, y1 = fnt.getbbox(text)
        w, h = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
        x, y = float(px[i]), float(py[i])
        for dx, dy in ((4, -h / 2), (-4 - w, -h / 2), (-w / 2, -4 - h), (-w / 2, 4)):
            box = (x + dx, y + dy, x + dx + w, y + dy + h)
            if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
                continue
            cells = [(cx, cy) for cx in range(int(box[0] // cell), int(box[2] // cell) + 1)
                     for cy in range(int(box[1] // cell), int(box[3] // cell) + 1)]
            if any(_overlaps(box, other) for c in cells for other in grid.get(c, ())):
                continue
            for c in cells:
                grid.setdefault(c, []).append(box)
            kept.append(Label(int(i), text, x, y, box))
            break
    return kept


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
