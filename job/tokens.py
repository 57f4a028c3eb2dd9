"""The token table: one row per vocabulary id with readable text and categories.

Columns: ``token_id``, ``token`` (as stored), ``display`` (what a person reads),
``word_start`` (the token begins a word), ``category`` (special, unused, word, continuation,
number, punctuation, whitespace, byte), ``script`` (latin, digit, symbol, hiragana, katakana,
kanji, hangul, cyrillic, greek, arabic, other, mixed, empty) and, for Japanese vocabularies,
``pos`` (part of speech of the first morpheme of tokens written in kana or kanji, MeCab with
unidic-lite; other rows carry their category, or "other script"). ``category``,
``script`` and ``pos`` are pandas categoricals, so any of them can colour a map.

Display rules per tokenizer family:

- WordPiece: ``##ing`` → "ing", a continuation; anything else starts a word.
- byte-level BPE (GPT-2, RoBERTa, LLaMA-3): each character stands for one byte (GPT-2's
  byte-to-unicode table); the bytes are decoded as UTF-8, a leading space (``Ġ``) marks a
  word start, and bytes that do not form a whole character are shown as ``<0xE6>``.
- SentencePiece: ``▁`` marks a word start; byte-fallback tokens ``<0x0A>`` are shown as the
  character when it is printable ASCII or whitespace, else kept as ``<0x..>``.

Whitespace is made visible: ``␣`` space, ``↵`` newline, ``⇥`` tab, ``␍`` carriage return.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

import numpy as np
import pandas as pd

CATEGORIES = ("special", "unused", "word", "continuation", "number", "punctuation",
              "whitespace", "byte")
SCRIPTS = ("latin", "digit", "symbol", "hiragana", "katakana", "kanji", "hangul", "cyrillic",
           "greek", "arabic", "other", "mixed", "empty")
FAMILIES = ("wordpiece", "bytelevel", "sentencepiece", "plain")

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
# Placeholder rows many vocabularies reserve: [unused12], <unused3>, <|reserved_special_token_7|>
_UNUSED = re.compile(r"^(\[unused\d+\]|<unused\d+>|<\|?reserved[_a-z]*_?\d+\|?>)$")
# Matched with Python's re (never handed to pandas: with pyarrow strings, pandas >= 3 passes a
# pattern to RE2, which rejects escapes such as \u).
_KANA = re.compile("[\u3041-\u309F\u30A1-\u30FA\u30FC-\u30FF]")
_JAPANESE = re.compile("[\u3041-\u309F\u30A1-\u30FA\u30FC-\u30FF\u3400-\u9FFF々〆]")
_SURROGATE = re.compile("[\udc80-\udcff]")  # undecodable bytes (surrogateescape)
_BYTE_MARK = re.compile(r"<0x[0-9A-F]{2}>")
# Whitespace and control characters made visible: ␣ ↵ ⇥ ␍, other controls as U+2400 pictures.
_VISIBLE = {cp: chr(0x2400 + cp) for cp in range(0x20)} | {0x7F: "␡"}
_VISIBLE |= {ord(" "): "␣", ord("\n"): "↵", ord("\t"): "⇥", ord("\r"): "␍"}
_CONTROLS = {k: v for k, v in _VISIBLE.items() if k != ord(" ")}
_WHITESPACE_MARKS = {_VISIBLE[ord(c)] for c in " \n\t\r\x0b\x0c"}


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-unicode table: printable bytes stand for themselves, the
    other bytes, in order, for U+0100, U+0101, …"""
    printable = (set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1))
                 | set(range(ord("®"), ord("ÿ") + 1)))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def is_placeholder(token: str) -> bool:
    """A reserved, never-trained slot such as ``[unused12]`` or ``<|reserved_special_token_7|>``."""
    return _UNUSED.match(token) is not None


def detect_family(tokenizer: Any, vocab: dict[str, int]) -> str:
    """wordpiece (``##`` continuations), bytelevel (GPT-2 ``Ġ``), sentencepiece (``▁``)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        model = type(backend.model).__name__
        parts = repr(backend.pre_tokenizer) + repr(backend.decoder) + repr(backend.normalizer)
        if model == "WordPiece":
            return "wordpiece"
        if "ByteLevel" in parts:
            return "bytelevel"
        if model == "Unigram" or "Metaspace" in parts or "▁" in parts:
            return "sentencepiece"
    tokens = list(vocab)
    share = {m: sum(t.startswith(m) for t in tokens) / max(len(tokens), 1)
             for m in ("##", "Ġ", "▁")}
    if share["Ġ"] > 0.05:
        return "bytelevel"
    if share["▁"] > 0.05:
        return "sentencepiece"
    if (share["##"] > 0.01 or hasattr(tokenizer, "wordpiece_tokenizer")
            or type(getattr(tokenizer, "subword_tokenizer", None)).__name__
            == "WordpieceTokenizer"):
        return "wordpiece"
    return "plain"


def visible(text: str) -> str:
    """Whitespace and control characters made visible (``␣`` ``↵`` ``⇥`` ``␍`` ``␋`` …)."""
    return text.translate(_VISIBLE)


def _shown(body: str) -> str:
    """Display form of a token body: spaces visible when the body is only whitespace, line
    breaks, tabs and control characters always."""
    if not body:
        return "␣"
    if body.isspace():
        return visible(body)
    return body.translate(_CONTROLS)


@functools.cache
def _byte_translation() -> dict[int, str]:
    """str.translate table: each stand-in → the latin-1 character of its byte; latin-1
    characters that are not stand-ins → U+FFFF, so that encoding to latin-1 fails on them."""
    table = {cp: "\uffff" for cp in range(256)}
    table |= {ord(c): chr(b) for c, b in _byte_decoder().items()}
    return table


def decode_bytelevel(token: str) -> tuple[str, bool] | None:
    """(text, has partial bytes) of a byte-level token; None if it is not byte-encoded.

    Bytes that do not complete a UTF-8 character are shown as ``<0xNN>``.
    """
    try:
        raw = token.translate(_byte_translation()).encode("latin-1")
    except UnicodeEncodeError:  # a character that stands for no byte: plain text
        return None
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="surrogateescape")
    return _SURROGATE.sub(lambda m: f"<0x{ord(m.group()) - 0xDC00:02X}>", text), True


def split_token(token: str, family: str) -> tuple[str, bool, bool]:
    """(display text, word_start, is_byte) for one raw token of the given family."""
    if family == "wordpiece":
        if token.startswith("##") and len(token) > 2:
            return token[2:], False, False
        return token, True, False
    if family == "bytelevel":
        decoded = decode_bytelevel(token)
        if decoded is None:  # stored as plain text
            return _shown(token), True, False
        text, partial = decoded
        start = text.startswith(" ")
        if text.isspace():  # runs of spaces / newlines: show all of them
            return visible(text), start, False
        return _shown(text[1:] if start else text), start, partial
    if family == "sentencepiece":
        match = _BYTE_FALLBACK.match(token)
        if match:
            value = int(match.group(1), 16)
            char = chr(value)
            shown = visible(char) if char in " \n\t\r" else (
                char if 0x21 <= value <= 0x7E else token)
            return shown, False, True
        start = token.startswith("▁")
        body = token[1:] if start else token
        return _shown(body.replace("▁", " ")), start, False
    return _shown(token), True, False


def script_of(text: str) -> str:
    """The writing system of a display string.

    Letters decide: one letter script gives that script (digits and punctuation around it do
    not count), several give "mixed". Without letters: "digit" if there are digits, else
    "symbol"; "empty" for an empty string.
    """
    if not text:
        return "empty"
    text = _BYTE_MARK.sub("", text)  # partial UTF-8 bytes have no script
    if not text:
        return "other"
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


def _category(display: str, word_start: bool, is_byte: bool) -> str:
    if is_byte:
        return "byte"
    if display and all(c in _WHITESPACE_MARKS for c in display):
        return "whitespace"
    stripped = display.replace(",", "").replace(".", "")
    if stripped and all(c.isdigit() for c in stripped):
        return "number"
    if display and all(unicodedata.category(c)[0] in "PSZ" for c in display):
        return "punctuation"
    return "word" if word_start else "continuation"


def _matches(texts: pd.Series, pattern: re.Pattern[str]) -> np.ndarray:
    """Which texts contain a match of ``pattern``, by Python's re whatever the string dtype."""
    return np.fromiter((pattern.search(t) is not None for t in texts), bool, len(texts))


def is_japanese(table: pd.DataFrame) -> bool:
    """True when tokens with kana make up a real share of the vocabulary (kanji alone would
    also match Chinese vocabularies)."""
    return bool(_matches(table["display"], _KANA).mean() > 0.05)


def part_of_speech(texts: list[str]) -> list[str]:
    """MeCab (fugashi + unidic-lite) part of speech of each text's first morpheme
    ("other" when MeCab finds none)."""
    import fugashi
    import unidic_lite

    tagger = fugashi.Tagger(f"-d {unidic_lite.DICDIR}")
    out = []
    for text in texts:
        words = tagger(text) if text else []
        pos = words[0].feature.pos1 if words else None
        out.append(pos if pos and pos != "*" else "other")
    return out


def _special_ids(tokenizer: Any) -> tuple[set[int], dict[int, str]]:
    """Ids of special tokens, and the added tokens that are plain text (not byte-encoded)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    plain_added: dict[int, str] = {}
    for i, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            special.add(int(i))
        else:
            plain_added[int(i)] = str(getattr(added, "content", added))
    return special, plain_added


def build_table(tokenizer: Any, n_rows: int) -> pd.DataFrame:
    """One row per id in ``range(n_rows)``; ids missing from the vocabulary get ``<unused:i>``."""
    vocab = tokenizer.get_vocab()
    family = detect_family(tokenizer, vocab)
    by_id = {i: t for t, i in vocab.items()}
    special_ids, plain_added = _special_ids(tokenizer)
    rows = []
    for i in range(n_rows):
        token = by_id.get(i)
        if token is None:
            rows.append((i, f"<unused:{i}>", f"<unused:{i}>", True, "unused"))
        elif i in special_ids:
            rows.append((i, token, token, True, "unused" if is_placeholder(token) else "special"))
        elif is_placeholder(token):
            rows.append((i, token, token, True, "unused"))
        elif i in plain_added:  # added by the user: stored as the text itself
            display = _shown(plain_added[i].strip() or plain_added[i])
            rows.append((i, token, display, True, _category(display, True, False)))
        else:
            display, start, is_byte = split_token(token, family)
            rows.append((i, token, display, start, _category(display, start, is_byte)))
    scripts = [script_of(r[2]) if r[4] not in ("special", "unused") else "symbol" for r in rows]
    table = pd.DataFrame(rows, columns=["token_id", "token", "display", "word_start", "category"])
    table["script"] = scripts
    table["category"] = pd.Categorical(table["category"], categories=CATEGORIES)
    table["script"] = pd.Categorical(table["script"], categories=SCRIPTS)
    if is_japanese(table):
        words = table["category"].isin(["word", "continuation"]).to_numpy()
        pos = table["category"].astype(str).to_numpy(dtype=object)
        pos[words] = "other script"
        words = words & _matches(table["display"], _JAPANESE)
        pos[words] = part_of_speech(table.loc[words, "display"].tolist())
        table["pos"] = pd.Categorical(pos)
    table.attrs["family"] = family
    return table
