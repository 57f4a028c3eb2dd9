"""Token labels: the shipped CJK-capable font with a glyph fallback, and placement without
overlaps.

The main font is IPAexGothic from the ``matplotlib-fontja`` wheel, so Japanese, Chinese and
Latin labels render as glyphs on a machine with no CJK fonts installed. Characters it lacks
(arrows, some symbols, Cyrillic, Greek extras, Arabic, Hebrew, …) are drawn with DejaVu
Sans, which matplotlib itself ships; a character in neither font shows IPAexGothic's
missing-glyph box.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ImageDraw, ImageFont

FALLBACK_FONTS = ("DejaVuSans.ttf",)  # in matplotlib's mpl-data/fonts/ttf, tried in order


def font_path() -> str:
    """Path to the shipped IPAexGothic TrueType file."""
    import matplotlib_fontja

    return str(matplotlib_fontja.get_font_ttf_path())


@functools.cache
def font_paths() -> tuple[str, ...]:
    """The main font, then the fallbacks that exist on this machine."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return (font_path(), *(str(folder / f) for f in FALLBACK_FONTS if (folder / f).is_file()))


@functools.cache
def _coverage(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as face:
        return frozenset(face.getBestCmap())


@functools.cache
def font(size: int, which: int = 0) -> ImageFont.FreeTypeFont:
    """The main font (``which`` = 0) or a fallback at ``size`` pixels."""
    return ImageFont.truetype(font_paths()[which], size)


def face_of(ch: str) -> int | None:
    """Index of the first font that has a glyph for ``ch``; None when none has."""
    for i, path in enumerate(font_paths()):
        if ord(ch) in _coverage(path):
            return i
    return None


def runs(text: str) -> list[tuple[str, int]]:
    """``text`` split into runs drawn with one font each (missing glyphs: the main font)."""
    out: list[tuple[str, int]] = []
    for ch in text:
        which = face_of(ch)
        if which is None:
            which = out[-1][1] if out and ch in "\u200d\ufe0f" else 0
        if out and out[-1][1] == which:
            out[-1] = (out[-1][0] + ch, which)
        else:
            out.append((ch, which))
    return out


def measure(text: str, size: int) -> tuple[float, int, int]:
    """(width, ascent, descent) of ``text`` in pixels, over all the fonts it needs."""
    parts = runs(text) or [("", 0)]
    width = sum(font(size, w).getlength(t) for t, w in parts)
    metrics = [font(size, w).getmetrics() for _, w in parts]
    return width, max(m[0] for m in metrics), max(m[1] for m in metrics)


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int,
              fill: str = "black", stroke: int = 0, stroke_fill: str = "white") -> None:
    """Draw ``text`` with its top-left corner at ``xy``, each run in the font that has it."""
    _, ascent, _ = measure(text, size)
    x, baseline = xy[0], xy[1] + ascent
    for part, which in runs(text):
        fnt = font(size, which)
        draw.text((x, baseline), part, fill=fill, font=fnt, anchor="ls", stroke_width=stroke,
                  stroke_fill=stroke_fill)
        x += fnt.getlength(part)


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
