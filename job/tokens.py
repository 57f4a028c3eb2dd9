"""The token table: one row per vocabulary id with readable text and categories.

Columns: ``token_id``, ``token`` (as stored), ``display`` (what a person reads),
``word_start`` (the token begins a word), ``category`` (special, word, continuation, number,
punctuation, byte), ``script`` (latin, digit, symbol, hiragana, katakana, kanji, hangul,
cyrillic, other, mixed) and, for Japanese vocabularies, ``pos`` (part of speech from MeCab).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

import pandas as pd

CATEGORIES = ("special", "word", "continuation", "number", "punctuation", "byte")
SCRIPTS = ("latin", "digit", "symbol", "hiragana", "katakana", "kanji", "hangul", "cyrillic",
           "greek", "arabic", "other", "mixed", "empty")
FAMILIES = ("wordpiece", "bytelevel", "sentencepiece", "plain")

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-unicode table (printable stand-ins for the 256 bytes)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def detect_family(tokenizer: Any, vocab: dict[str, int]) -> str:
    """wordpiece (``##`` continuations), bytelevel (GPT-2 ``Ġ``), sentencepiece (``▁``)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        model = type(backend.model).__name__
        pre = repr(backend.pre_tokenizer) + repr(backend.decoder)
        if model == "WordPiece":
            return "wordpiece"
        if "ByteLevel" in pre:
            return "bytelevel"
        if model == "Unigram" or "Metaspace" in pre or "▁" in pre:
            return "sentencepiece"
    tokens = list(vocab)
    share = {m: sum(t.startswith(m) for t in tokens) / max(len(tokens), 1)
             for m in ("##", "Ġ", "▁")}
    if share["Ġ"] > 0.05:
        return "bytelevel"
    if share["▁"] > 0.05:
        return "sentencepiece"
    if share["##"] > 0.01 or hasattr(tokenizer, "wordpiece_tokenizer"):
        return "wordpiece"
    return "plain"


def _decode_bytelevel(token: str) -> tuple[str, bool]:
    table = _byte_decoder()
    if not all(c in table for c in token):
        return token, False  # an added token stored as plain text
    raw = bytes(table[c] for c in token)
    text = raw.decode("utf-8", errors="replace")
    if "\ufffd" in text:  # a partial UTF-8 sequence: show its bytes
        return "".join(f"<0x{b:02X}>" for b in raw), True
    return text, False


def split_token(token: str, family: str) -> tuple[str, bool, bool]:
    """(display text, word_start, is_byte) for one raw token of the given family."""
    if family == "wordpiece":
        if token.startswith("##") and len(token) > 2:
            return token[2:], False, False
        return token, True, False
    if family == "bytelevel":
        text, is_byte = _decode_bytelevel(token)
        start = text.startswith(" ")
        body = text.lstrip(" ") if start else text
        return _visible(body) if body else "␣", start, is_byte
    if family == "sentencepiece":
        match = _BYTE_FALLBACK.match(token)
        if match:
            value = int(match.group(1), 16)
            shown = chr(value) if 0x21 <= value <= 0x7E else token
            return _visible(shown), False, True
        start = token.startswith("▁")
        body = token.lstrip("▁") if start else token
        return _visible(body) if body else "␣", start, False
    return token, True, False


def _visible(text: str) -> str:
    """Whitespace and control characters made visible."""
    return (text.replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍")
            if any(c in text for c in "\n\t\r") else text)


def script_of(text: str) -> str:
    """The writing system of a display string ("mixed" when it combines several)."""
    found = {_char_script(ch) for ch in text}
    found.discard("skip")
    if not found:
        return "empty" if not text else "symbol"
    return found.pop() if len(found) == 1 else "mixed"


def _char_script(ch: str) -> str:
    cp = ord(ch)
    if ch.isdigit():
        return "digit"
    if 0x3040 <= cp <= 0x309F:
        return "hiragana"
    if 0x30A0 <= cp <= 0x30FF or 0x31F0 <= cp <= 0x31FF or 0xFF66 <= cp <= 0xFF9D:
        return "katakana"
    if 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF or ch in "々〆":
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


def _category(display: str, word_start: bool, is_byte: bool, special: bool) -> str:
    if special:
        return "special"
    if is_byte:
        return "byte"
    stripped = display.replace(",", "").replace(".", "")
    if stripped and all(c.isdigit() for c in stripped):
        return "number"
    if display and all(unicodedata.category(c)[0] in "PSZ" or c in "␣↵⇥␍" for c in display):
        return "punctuation"
    return "word" if word_start else "continuation"


def is_japanese(table: pd.DataFrame) -> bool:
    """True when kana or kanji tokens make up a real share of the vocabulary."""
    share = table["script"].isin(["hiragana", "katakana", "kanji"]).mean()
    return bool(share > 0.05)


def part_of_speech(texts: list[str]) -> list[str]:
    """MeCab (fugashi + unidic-lite) part of speech of each text's first morpheme."""
    import fugashi
    import unidic_lite

    tagger = fugashi.Tagger(f"-d {unidic_lite.DICDIR}")
    out = []
    for text in texts:
        words = tagger(text) if text else []
        out.append(words[0].feature.pos1 if words else "")
    return out


def build_table(tokenizer: Any, n_rows: int) -> pd.DataFrame:
    """One row per id in ``range(n_rows)``; ids missing from the vocabulary get ``<unused>``."""
    vocab = tokenizer.get_vocab()
    family = detect_family(tokenizer, vocab)
    by_id = {i: t for t, i in vocab.items()}
    special_ids = set(getattr(tokenizer, "all_special_ids", []))
    for i, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(added, "special", False):
            special_ids.add(i)
    rows = []
    for i in range(n_rows):
        token = by_id.get(i, f"<unused:{i}>")
        special = i in special_ids or i not in by_id
        if special:
            display, start, is_byte = token, True, False
        else:
            display, start, is_byte = split_token(token, family)
        rows.append((i, token, display, start, _category(display, start, is_byte, special)))
    table = pd.DataFrame(rows, columns=["token_id", "token", "display", "word_start", "category"])
    table["script"] = [script_of(d) if c != "special" else "symbol"
                       for d, c in zip(table["display"], table["category"], strict=True)]
    table["category"] = pd.Categorical(table["category"], categories=CATEGORIES)
    table["script"] = pd.Categorical(table["script"], categories=SCRIPTS)
    if is_japanese(table):
        words = table["category"].isin(["word", "continuation"])
        pos = pd.Series("", index=table.index, dtype=object)
        pos[words] = part_of_speech(table.loc[words, "display"].tolist())
        pos[~words] = table.loc[~words, "category"].astype(str)
        table["pos"] = pos.astype("category")
    table.attrs["family"] = family
    return table
