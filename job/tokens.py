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

Every display text is visible: ``␣`` space (when a token is only whitespace), ``↵`` newline,
``⇥`` tab, ``␍`` carriage return; every other character without a glyph of its own (other
Unicode whitespace such as U+00A0 or U+3000, zero-width and direction marks, the soft hyphen,
C0/C1 controls, line and paragraph separators, Hangul fillers) is shown as an escape,
``<U+200B>``. A token with no visible character at all is category ``whitespace``. Filler
slots that no text can produce (``[unused12]``, ``<|reserved_special_token_7|>``, tekken's
``<SPECIAL_20>``) are category ``unused``.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job.text import (
    ESCAPE,
    INVISIBLE_ONLY,
    SCRIPTS,
    script_of,
    shown,
    visible,
)

CATEGORIES = ("special", "unused", "word", "continuation", "number", "punctuation",
              "whitespace", "byte")
FAMILIES = ("wordpiece", "bytelevel", "sentencepiece", "plain")

log = logging.getLogger(__name__)

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
# Reserved, never-trained slots: [unused12], <unused3>, <|reserved_special_token_7|>, and
# tekken's fillers <SPECIAL_20> … <SPECIAL_999>. One definition for the token table and the
# automatic zooms (job/render/zooms.py).
PLACEHOLDER = re.compile(r"^(?:[\[<]\|?[a-z_]*(?:unused|reserved)[a-z_]*\d+\|?[\]>]"
                         r"|<SPECIAL_\d+>)$")
# Matched with Python's re (never handed to pandas: with pyarrow strings, pandas >= 3 passes a
# pattern to RE2, which rejects escapes such as \u).
_KANA = re.compile("[\u3041-\u309F\u30A1-\u30FA\u30FC-\u30FF]")
_JAPANESE = re.compile("[\u3041-\u309F\u30A1-\u30FA\u30FC-\u30FF\u3400-\u9FFF々〆]")
_SURROGATE = re.compile("[\udc80-\udcff]")  # undecodable bytes (surrogateescape)


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
    """A reserved, never-trained slot such as ``[unused12]``, ``<|reserved_special_token_7|>``
    or tekken's ``<SPECIAL_20>``."""
    return PLACEHOLDER.match(token) is not None


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
            return shown(token[2:]), False, False
        return shown(token), True, False
    if family == "bytelevel":
        decoded = decode_bytelevel(token)
        if decoded is None:  # stored as plain text
            return shown(token), True, False
        text, partial = decoded
        start = text.startswith(" ")
        if text.isspace():  # runs of spaces / newlines: show all of them
            return visible(text), start, False
        return shown(text[1:] if start else text), start, partial
    if family == "sentencepiece":
        match = _BYTE_FALLBACK.match(token)
        if match:
            value = int(match.group(1), 16)
            char = chr(value)
            display = visible(char) if char in " \n\t\r" else (
                char if 0x21 <= value <= 0x7E else token)
            return display, False, True
        start = token.startswith("▁")
        body = token[1:] if start else token
        return shown(body.replace("▁", " ")), start, False
    return shown(token), True, False


def _category(display: str, word_start: bool, is_byte: bool) -> str:
    if is_byte:
        return "byte"
    if INVISIBLE_ONLY.match(display):
        return "whitespace"
    display = ESCAPE.sub("", display)  # invisible characters beside visible ones
    stripped = display.replace(",", "").replace(".", "")
    if stripped and all(c.isdigit() for c in stripped):
        return "number"
    if display and all(unicodedata.category(c)[0] in "PSZ" for c in display):
        return "punctuation"
    return "word" if word_start else "continuation"


def matches(texts: pd.Series, pattern: re.Pattern[str]) -> np.ndarray:
    """Which texts contain a match of ``pattern``, by Python's re whatever the string dtype."""
    return np.fromiter((pattern.search(t) is not None for t in texts), bool, len(texts))


def is_japanese(table: pd.DataFrame) -> bool:
    """True when tokens with kana make up a real share of the vocabulary (kanji alone would
    also match Chinese vocabularies)."""
    return bool(matches(table["display"], _KANA).mean() > 0.05)


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


def vocab_file_tokens(folder: str | Path) -> list[str] | None:
    """The lines of the folder's WordPiece ``vocab.txt`` (line i is id i), read as
    transformers reads them; None without one. Unlike the tokenizer's token → id dict, a
    duplicated line keeps its own id and text."""
    path = Path(folder) / "vocab.txt"
    try:
        with path.open(encoding="utf-8") as handle:
            return [line.rstrip("\n") for line in handle]
    except (OSError, UnicodeDecodeError):
        return None


def _tokens_by_id(tokenizer: Any, listed: list[str] | None) -> dict[int, str]:
    """id → raw token from the tokenizer's vocabulary; ids that lost their entry to a
    duplicate string get their text from ``listed`` (the vocab file), when that file agrees
    with the tokenizer on every other id."""
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    if listed and len(listed) > len([i for i in by_id if i < len(listed)]):
        if all(listed[i] == t for i, t in by_id.items() if i < len(listed)):
            for i, token in enumerate(listed):
                by_id.setdefault(i, token)
        else:
            log.debug("vocab.txt does not match the tokenizer's vocabulary; not used")
    return by_id


def _first(ids: Any, k: int = 10) -> list[int]:
    return [int(i) for i in list(ids)[:k]]


def vocabulary_checks(table: pd.DataFrame, holes: list[int]) -> dict[str, Any]:
    """Counts and first ids of the vocabulary's oddities, logged and kept for the manifest:
    token strings held by several ids, empty token strings, ids with no token at all."""
    duplicated = table["token"].duplicated(keep=False).to_numpy() & (table["token"] != "")
    dup_ids = table.loc[duplicated, "token_id"]
    empty_ids = table.loc[table["token"] == "", "token_id"]
    examples = list(dict.fromkeys(table.loc[duplicated, "token"]))[:5]
    checks = {"duplicate_strings": {"ids": int(len(dup_ids)), "first_ids": _first(dup_ids),
                                    "examples": examples},
              "empty_strings": {"ids": int(len(empty_ids)), "first_ids": _first(empty_ids)},
              "ids_without_token": {"ids": len(holes), "first_ids": _first(holes)}}
    if len(dup_ids):
        log.warning("vocabulary: %d ids share their token string with another id (ids %s, "
                    "e.g. %s); each keeps its own row and text, though text reaches only one "
                    "id of each string", len(dup_ids), _first(dup_ids, 5), examples)
    if len(empty_ids):
        log.warning("vocabulary: %d ids have an empty token string (ids %s); shown as "
                    "<empty>, category unused", len(empty_ids), _first(empty_ids, 5))
    if holes:
        log.info("vocabulary: %d ids below the tokenizer's largest id have no token (ids %s); "
                 "shown as <unused:ID>", len(holes), _first(holes, 5))
    return checks


def build_table(tokenizer: Any, n_rows: int, listed: list[str] | None = None) -> pd.DataFrame:
    """One row per id in ``range(n_rows)``; ids missing from the vocabulary get ``<unused:i>``.

    ``listed``: the raw tokens in id order as the vocabulary file lists them
    (:func:`vocab_file_tokens`), so that duplicated strings keep their own ids.
    ``table.attrs["vocabulary_checks"]`` holds :func:`vocabulary_checks`.
    """
    vocab = tokenizer.get_vocab()
    family = detect_family(tokenizer, vocab)
    by_id = _tokens_by_id(tokenizer, listed)
    special_ids, plain_added = _special_ids(tokenizer)
    rows = []
    holes = []
    for i in range(n_rows):
        token = by_id.get(i)
        if token is None:
            holes.append(i)
            rows.append((i, f"<unused:{i}>", f"<unused:{i}>", True, "unused"))
        elif token == "":  # no text can produce it
            rows.append((i, token, "<empty>", True, "unused"))
        elif i in special_ids:
            rows.append((i, token, token, True, "unused" if is_placeholder(token) else "special"))
        elif is_placeholder(token):
            rows.append((i, token, token, True, "unused"))
        elif i in plain_added:  # added by the user: stored as the text itself
            display = shown(plain_added[i].strip() or plain_added[i])
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
        words = words & matches(table["display"], _JAPANESE)
        pos[words] = part_of_speech(table.loc[words, "display"].tolist())
        table["pos"] = pd.Categorical(pos)
    table.attrs["family"] = family
    table.attrs["vocabulary_checks"] = vocabulary_checks(table, holes)
    return table
