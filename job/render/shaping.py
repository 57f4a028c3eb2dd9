"""Label text cut into runs, each drawn with the first font of the chain that has it
(``job/render/fonts.py``), laid out in visual order and shaped.

A cluster keeps the font of the run before it when that font has all its characters (so a
space or a digit inside Arabic or Devanagari text is shaped with it), else takes the first
font that has them all. Text is shaped by Pillow's libraqm (HarfBuzz + FriBiDi, in Pillow's
wheels): conjuncts, joining, marks. Runs are laid out right to left where the text is.
Without libraqm Pillow falls back to its basic layout (unshaped, left to right).
"""

from __future__ import annotations

import functools
import unicodedata

from PIL import ImageDraw, ImageFont

from job.render import fonts
from job.render.fonts import coverage, faces, font, owners
from job.text import is_default_ignorable

_ZWJ = "\u200d"  # zero-width joiner: the character after it joins its cluster too


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
    if current is not None and need <= coverage(current):
        return current
    known = [w for w in (owners().get(cp) for cp in need) if w is not None]
    if not known:  # nothing to draw, or no font has it (drawn as the main font's box)
        return 0 if current is None else current
    for i in range(min(known), len(faces())):
        if need <= coverage(i):
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
    return {"direction": direction} if fonts.LAYOUT == ImageFont.Layout.RAQM else {}


def _plain(text: str) -> str:
    """The text Pillow draws: without libraqm, default-ignorable characters are removed
    (FreeType alone would draw them as boxes)."""
    if fonts.LAYOUT == ImageFont.Layout.RAQM:
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
