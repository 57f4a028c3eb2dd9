"""Token text made readable: every character visible, and the writing system of a text.

Invisible characters (whitespace other than the ASCII space, controls, format characters
such as zero-width and direction marks, separators, blank fillers) are shown as ``↵ ⇥ ␍``
or as ``<U+XXXX>`` escapes; a text of spaces alone shows them as ``␣``. A text whose only
visible characters are combining marks shows them on a dotted circle, ``◌े`` (as Unicode's
charts do); default-ignorable marks (variation selectors) there stay escapes.
"""

from __future__ import annotations

import functools
import re
import unicodedata

SCRIPTS = ("latin", "digit", "symbol", "hiragana", "katakana", "kanji", "hangul", "cyrillic",
           "greek", "arabic", "other", "mixed", "empty")
# Partial UTF-8 bytes (<0xE6>) have no script.
BYTE_MARK = re.compile(r"<0x[0-9A-F]{2}>")
ESCAPE = re.compile(r"<U\+[0-9A-F]{4,6}>")
# Characters shown by a mark of their own; other invisible characters become <U+XXXX>.
MARKS = {"\n": "↵", "\t": "⇥", "\r": "␍"}
# A display text with nothing but these marks and escapes: category "whitespace".
INVISIBLE_ONLY = re.compile(r"^(?:[␣↵⇥␍]|<U\+[0-9A-F]{4,6}>)+$")
# Letters and symbols that draw as blank space (Unicode's Default_Ignorable_Code_Point
# fillers, and the blank Braille pattern).
_BLANK = frozenset([0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0])
# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 15): drawn as
# nothing by a text renderer
_IGNORABLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
              (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
              (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
              (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
              (0xE0000, 0xE0FFF))
DOTTED_CIRCLE = "\u25cc"  # the base a lone combining mark is shown on


@functools.lru_cache(maxsize=65536)
def is_invisible(ch: str) -> bool:
    """True for a character with no glyph of its own: whitespace other than the ASCII space,
    controls (Cc), format characters (Cf: zero-width, direction marks, soft hyphen), line and
    paragraph separators, and the blank fillers."""
    if ch == " ":
        return False
    return (ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp")
            or ord(ch) in _BLANK)


@functools.lru_cache(maxsize=65536)
def is_default_ignorable(ch: str) -> bool:
    """True for a Default_Ignorable_Code_Point: variation selectors, joiners, direction
    marks, the Hangul fillers, U+034F, tags."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _IGNORABLE)


def _is_mark(ch: str) -> bool:
    """A combining mark that needs a base to sit on (default-ignorable ones excepted)."""
    return unicodedata.category(ch)[0] == "M" and not is_default_ignorable(ch)


def escape(ch: str) -> str:
    """``<U+200B>``: the code point of an invisible character."""
    return f"<U+{ord(ch):04X}>"


@functools.lru_cache(maxsize=65536)
def _mark(ch: str, bare: bool) -> str:
    """Display form of one character; ``bare``: the text has nothing visible, so spaces and
    default-ignorable marks are shown too."""
    if ch == " ":
        return "␣" if bare else " "
    if ch in MARKS:
        return MARKS[ch]
    if is_invisible(ch) or (bare and unicodedata.category(ch) in ("Mn", "Me")
                            and is_default_ignorable(ch)):
        return escape(ch)
    return ch


def _has_glyph(ch: str) -> bool:
    """A character that stands on its own: not a space, not invisible, not a combining mark
    (spacing marks such as Devanagari ``ा`` included: they too need a letter)."""
    return not (ch == " " or is_invisible(ch) or unicodedata.category(ch)[0] == "M")


def _on_circle(text: str, forms: list[str]) -> str:
    """``forms`` (the display form of each character of ``text``, a text with no letter of
    its own) joined, with a dotted circle before each run of combining marks."""
    out = []
    for i, (ch, form) in enumerate(zip(text, forms, strict=True)):
        if form == ch and _is_mark(ch) and (i == 0 or not _is_mark(text[i - 1])):
            out.append(DOTTED_CIRCLE)
        out.append(form)
    return "".join(out)


def visible(text: str) -> str:
    """``text`` with every character visible: ``␣`` ``↵`` ``⇥`` ``␍``, other invisible
    characters as ``<U+XXXX>``, combining marks on ``◌``."""
    return _on_circle(text, [_mark(ch, True) for ch in text])


def shown(body: str) -> str:
    """Display form of a token body: spaces visible when nothing else is, line breaks, tabs
    and invisible characters always; a body of combining marks shows them on ``◌``."""
    if not body:
        return "␣"
    if any(_has_glyph(ch) for ch in body):
        return "".join(_mark(ch, False) for ch in body)
    return _on_circle(body, [_mark(ch, True) for ch in body])


def script_of(text: str) -> str:
    """The writing system of a display string.

    Letters decide: one letter script gives that script (digits and punctuation around it do
    not count), several give "mixed". Without letters: "digit" if there are digits, else
    "symbol"; "empty" for an empty string.
    """
    if not text:
        return "empty"
    text = BYTE_MARK.sub("", text)  # partial UTF-8 bytes have no script
    if not text:
        return "other"
    text = ESCAPE.sub("␣", text)  # invisible characters count as symbols
    found = {_char_script(ch) for ch in text}
    letters = found - {"digit", "symbol", "skip"}
    if letters:
        return letters.pop() if len(letters) == 1 else "mixed"
    return "digit" if "digit" in found else "symbol"


@functools.lru_cache(maxsize=65536)
def _char_script(ch: str) -> str:
    cp = ord(ch)
    if ch.isdigit():
        return "digit"
    if 0x3041 <= cp <= 0x309F:
        return "hiragana"
    if (0x30A1 <= cp <= 0x30FF and cp != 0x30FB) or 0x31F0 <= cp <= 0x31FF \
            or 0xFF66 <= cp <= 0xFF9D:
        return "katakana"
    if (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF
            or 0x20000 <= cp <= 0x3FFFF or ch in "々〆"):
        return "kanji"
    if 0xAC00 <= cp <= 0xD7AF or 0x1100 <= cp <= 0x11FF or 0x3130 <= cp <= 0x318F:
        return "hangul"
    cat = unicodedata.category(ch)
    if cat[0] in "PSZC":
        return "symbol"
    if cat[0] == "M":
        return "skip"  # combining marks follow their base letter
    name = unicodedata.name(ch, "")
    for script in ("LATIN", "CYRILLIC", "GREEK", "ARABIC"):
        if name.startswith(script) or f" {script} " in name:
            return script.lower()
    return "other"
