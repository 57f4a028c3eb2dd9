"""The token table: display text, word starts and categories per tokenizer family, read
through the real loader from tiny models the tests build."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from tokenizers import pre_tokenizers

from job import source, tokens
from job.config import ModelConfig
from job.text import is_invisible, script_of


def table_of(folder: Path) -> tuple[pd.DataFrame, source.Embeddings]:
    emb = source.load(ModelConfig(id=str(folder)))
    return tokens.build_table(emb.tokenizer, emb.matrix.shape[0]), emb


def row(table: pd.DataFrame, token: str) -> pd.Series:
    hits = table[table["token"] == token]
    assert len(hits) == 1, f"{token!r} is not in the vocabulary once"
    return hits.iloc[0]


def bytelevel(text: str) -> str:
    """``text`` as GPT-2 stores it, by the ``tokenizers`` library's own ByteLevel mapping."""
    pieces = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    return "".join(p for p, _ in pieces.pre_tokenize_str(text))


@pytest.mark.parametrize(("raw", "display", "start", "is_byte"), [
    ("Ġworld", "world", True, False),
    ("world", "world", False, False),
    ("Ċ", "↵", False, False),
    ("ĊĊ", "↵↵", False, False),
    ("ĠĠĠ", "␣␣␣", True, False),
    ("Ġ", "␣", True, False),
    ("ĉ", "⇥", False, False),
])
def test_bytelevel_display(raw: str, display: str, start: bool, is_byte: bool) -> None:
    assert tokens.split_token(raw, "bytelevel") == (display, start, is_byte)


def test_bytelevel_multibyte_and_partial_bytes() -> None:
    assert tokens.split_token(bytelevel(" 東京"), "bytelevel") == ("東京", True, False)
    assert tokens.split_token(bytelevel("こんにちは"), "bytelevel") == ("こんにちは", False, False)
    encoded = bytelevel("東")  # three bytes E6 9D B1
    assert tokens.split_token(encoded[:2], "bytelevel") == ("<0xE6><0x9D>", False, True)
    assert tokens.split_token("Ġ" + encoded[:1], "bytelevel") == ("<0xE6>", True, True)
    assert tokens.split_token(encoded[2:] + bytelevel("に"), "bytelevel") == ("<0xB1>に", False,
                                                                              True)


@pytest.mark.parametrize(("raw", "display", "start", "is_byte"), [
    ("▁world", "world", True, False),
    ("ing", "ing", False, False),
    ("▁", "␣", True, False),
    ("<0x0A>", "↵", False, True),
    ("<0x41>", "A", False, True),
    ("<0xE3>", "<0xE3>", False, True),
    ("▁東京", "東京", True, False),
])
def test_sentencepiece_display(raw: str, display: str, start: bool, is_byte: bool) -> None:
    assert tokens.split_token(raw, "sentencepiece") == (display, start, is_byte)


def test_wordpiece_display() -> None:
    assert tokens.split_token("##ing", "wordpiece") == ("ing", False, False)
    assert tokens.split_token("hello", "wordpiece") == ("hello", True, False)
    assert tokens.split_token("##", "wordpiece") == ("##", True, False)


@pytest.mark.parametrize(("text", "script"), [
    ("東京", "kanji"), ("こんにちは", "hiragana"), ("カタカナ", "katakana"), ("한국", "hangul"),
    ("мир", "cyrillic"), ("ελλάδα", "greek"), ("world", "latin"), ("don't", "latin"),
    ("1990", "digit"), ("1,000", "digit"), ("!?", "symbol"), ("行く", "mixed"),
    ("東京タワー", "mixed"), ("2024年", "kanji"), ("ไทย", "other"), ("<0xE3>", "other"),
    ("<0x93>に", "hiragana"), ("", "empty"), ("ー", "katakana"), ("・", "symbol"),
])
def test_script_of(text: str, script: str) -> None:
    assert script_of(text) == script


@pytest.mark.parametrize(("token", "placeholder"), [
    ("[unused0]", True), ("[unused993]", True), ("<unused42>", True), ("<extra_id_7>", False),
    ("<|reserved_special_token_250|>", True), ("[UNK]", False), ("<|endoftext|>", False),
    ("unused", False),
])
def test_placeholders(token: str, placeholder: bool) -> None:
    assert tokens.is_placeholder(token) is placeholder


def test_wordpiece_bert(bert_dir: Path) -> None:
    table, _ = table_of(bert_dir)
    assert table.attrs["family"] == "wordpiece"
    ing = row(table, "##ing")
    assert (ing["display"], ing["word_start"], ing["category"]) == ("ing", False, "continuation")
    assert row(table, "[CLS]")["category"] == "special"
    assert row(table, "1990")[["category", "script"]].tolist() == ["number", "digit"]
    assert row(table, "!")["category"] == "punctuation"
    assert row(table, "king")[["category", "script", "word_start"]].tolist() == ["word", "latin",
                                                                                   True]
    assert "pos" not in table  # not a Japanese vocabulary


def test_gpt2_bytelevel(gpt2_dir: Path) -> None:
    table, emb = table_of(gpt2_dir)
    assert table.attrs["family"] == "bytelevel"
    assert len(table) == len(emb.tokenizer) == emb.matrix.shape[0]
    world = row(table, "Ġworld")
    assert (world["display"], world["word_start"], world["category"], world["script"]) == (
        "world", True, "word", "latin")
    assert row(table, "Ċ")[["display", "category"]].tolist() == ["↵", "whitespace"]
    japanese = table[table["token"].str.contains(bytelevel("東京"), regex=False)]
    assert len(japanese) and japanese["display"].str.contains("東京").all()
    assert not table["display"].str.contains("Ġ|\ufffd").any()  # every byte decoded
    partial = table[table["category"] == "byte"]
    assert len(partial) and partial["display"].str.contains("<0x", regex=False).all()


def test_added_tokens_keep_their_ids(gpt2_dir: Path) -> None:
    table, emb = table_of(gpt2_dir)
    ids = emb.tokenizer.get_vocab()
    tool, plain, cafe = (table.iloc[ids[t]] for t in ("<|tool|>", "vocabmap", "café"))
    assert (tool["token"], tool["category"]) == ("<|tool|>", "special")
    assert (plain["token"], plain["display"], plain["category"]) == ("vocabmap", "vocabmap",
                                                                     "word")
    assert cafe["display"] == "café"  # stored as text, not as GPT-2 bytes
    assert row(table, "<|endoftext|>")["category"] == "special"


def test_llama_sentencepiece_byte_fallback(llama_dir: Path) -> None:
    table, emb = table_of(llama_dir)
    assert table.attrs["family"] == "sentencepiece"
    world = row(table, "▁world")
    assert (world["display"], world["word_start"], world["category"]) == ("world", True, "word")
    newline = row(table, "<0x0A>")
    assert (newline["display"], newline["category"]) == ("↵", "byte")
    assert newline["token_id"] in emb.tokenizer("hello\nworld")["input_ids"]  # real fallback
    assert row(table, "<0xE3>")["display"] == "<0xE3>"
    assert (table.loc[table["token"].isin(["<s>", "</s>", "<unk>"]), "category"]
            == "special").all()
    assert not table["display"].str.contains("▁").any()


def test_japanese_bert_scripts_and_pos(japanese_dir: Path) -> None:
    table, _ = table_of(japanese_dir)
    assert table.attrs["family"] == "wordpiece"
    tokyo = row(table, "東京")
    assert (tokyo["script"], tokyo["pos"], tokyo["category"]) == ("kanji", "名詞", "word")
    assert row(table, "行く")[["script", "pos"]].tolist() == ["mixed", "動詞"]
    assert row(table, "は")[["script", "pos"]].tolist() == ["hiragana", "助詞"]
    assert row(table, "カタカナ")["script"] == "katakana"
    cont = row(table, "##語")
    assert (cont["display"], cont["word_start"], cont["category"]) == ("語", False,
                                                                       "continuation")
    assert row(table, "[unused0]")[["category", "pos"]].tolist() == ["unused", "unused"]
    assert row(table, "the")["pos"] == "other script"


def test_colour_columns_are_categoricals(japanese_dir: Path, tmp_path: Path) -> None:
    table, _ = table_of(japanese_dir)
    for column in ("category", "script", "pos"):
        assert isinstance(table[column].dtype, pd.CategoricalDtype), column
    assert list(table["category"].cat.categories) == list(tokens.CATEGORIES)
    table.to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert all(isinstance(back[c].dtype, pd.CategoricalDtype) for c in ("category", "pos"))


def test_padding_ids_missing_from_vocabulary_are_unused(bert_dir: Path) -> None:
    emb = source.load(ModelConfig(id=str(bert_dir)))
    table = tokens.build_table(emb.tokenizer, emb.matrix.shape[0] + 2)
    assert table["category"].iloc[-2:].tolist() == ["unused", "unused"]


# --- invisible characters and filler slots (issue 11) --------------------------------------

INVISIBLE = [  # text → display, category (as a byte-level token without a leading space)
    ("\u00a0", "<U+00A0>", "whitespace"),  # no-break space
    ("\u2002", "<U+2002>", "whitespace"),  # en space
    ("\u2009", "<U+2009>", "whitespace"),  # thin space
    ("\u3000", "<U+3000>", "whitespace"),  # ideographic space
    ("\u3000\u3000", "<U+3000><U+3000>", "whitespace"),
    ("\u200b", "<U+200B>", "whitespace"),  # zero-width space
    ("\u200e", "<U+200E>", "whitespace"),  # left-to-right mark
    ("\u200f", "<U+200F>", "whitespace"),  # right-to-left mark
    ("\u2060", "<U+2060>", "whitespace"),  # word joiner
    ("\ufeff", "<U+FEFF>", "whitespace"),  # byte order mark
    ("\u00ad", "<U+00AD>", "whitespace"),  # soft hyphen
    ("\u2028", "<U+2028>", "whitespace"),  # line separator
    ("\x00", "<U+0000>", "whitespace"),  # C0 control
    ("\x1b", "<U+001B>", "whitespace"),
    ("\x85", "<U+0085>", "whitespace"),  # C1 control (next line)
    ("\x9f", "<U+009F>", "whitespace"),
    ("\u3164", "<U+3164>", "whitespace"),  # Hangul filler: a letter that draws nothing
    ("\ufe0f", "<U+FE0F>", "whitespace"),  # a variation selector alone: default-ignorable
    ("\u034f", "<U+034F>", "whitespace"),  # combining grapheme joiner: default-ignorable
    ("\n", "↵", "whitespace"),
    ("\t", "⇥", "whitespace"),
    ("co\u00adop", "co<U+00AD>op", "continuation"),  # inside a word: the word stays a word
    ("a\u200bb", "a<U+200B>b", "continuation"),
    ("\x1b[", "<U+001B>[", "punctuation"),
    ("e\u0301", "e\u0301", "continuation"),  # a combining mark on a letter draws
]


@pytest.mark.parametrize(("text", "display", "category"), INVISIBLE)
def test_invisible_characters_are_shown_as_escapes(text: str, display: str,
                                                   category: str) -> None:
    shown, start, is_byte = tokens.split_token(bytelevel(text), "bytelevel")
    assert (shown, start, is_byte) == (display, False, False)
    assert tokens._category(shown, start, is_byte) == category
    assert tokens.split_token(text, "wordpiece")[0] == display
    assert tokens.split_token(text, "sentencepiece")[0] == display


# Tokens of combining marks alone (issue 21): shown on a dotted circle, as Unicode's charts
# show them; real tokens of tekken / GPT-2 / Mistral's vocabularies
LONE_MARKS = [
    ("\u0947", "◌\u0947"),  # Devanagari vowel sign E
    ("\u094d", "◌\u094d"),  # Devanagari virama
    ("\u093e", "◌\u093e"),  # Devanagari vowel sign AA (a spacing mark, Mc)
    ("\u0947\u0902", "◌\u0947\u0902"),  # two marks share one circle
    ("\u064e", "◌\u064e"),  # Arabic fatha
    ("\u0e35\u0e48", "◌\u0e35\u0e48"),  # Thai vowel and tone mark
    ("\u0301", "◌\u0301"),  # combining acute
    ("\u094d\u0937", "\u094d\u0937"),  # a word piece with a letter: as it is (the
    # shaper draws its own dotted circle under a mark that starts a Devanagari run)
    ("e\u0301", "e\u0301"),  # on a letter: as it is
    ("\u0915\u094d\u0937", "\u0915\u094d\u0937"),  # a conjunct: as it is
    ("\u2764\ufe0f", "\u2764\ufe0f"),  # a variation selector after its base: as it is
]


@pytest.mark.parametrize(("text", "display"), LONE_MARKS)
def test_lone_combining_marks_sit_on_a_dotted_circle(text: str, display: str) -> None:
    assert tokens.split_token(bytelevel(text), "bytelevel")[0] == display
    assert tokens.split_token(text, "wordpiece")[0] == display
    assert tokens.split_token("▁" + text, "sentencepiece") == (display, True, False)
    assert tokens.split_token(bytelevel(" \u0301"), "bytelevel")[0] == "◌\u0301"
    assert tokens.split_token(bytelevel(" \u0301\u00a0"), "bytelevel")[0] == "◌\u0301<U+00A0>"


def test_space_marks_and_word_starts() -> None:
    assert tokens.split_token(bytelevel(" \u00a0"), "bytelevel") == ("␣<U+00A0>", True, False)
    assert tokens.split_token("▁\u3000", "sentencepiece") == ("<U+3000>", True, False)
    assert tokens.split_token(bytelevel(" a\u00a0b"), "bytelevel") == ("a<U+00A0>b", True,
                                                                         False)
    assert script_of("<U+00A0>") == "symbol"
    assert script_of("a<U+200B>b") == "latin"


@pytest.mark.parametrize(("token", "placeholder"), [
    ("<SPECIAL_20>", True), ("<SPECIAL_999>", True), ("<SPECIAL>", False), ("[INST]", False),
    ("<|reserved_5|>", True), ("[reserved_3]", True),
])
def test_filler_specials_are_placeholders(token: str, placeholder: bool) -> None:
    assert tokens.is_placeholder(token) is placeholder


def _bpe_with(folder: Path, texts: list[str]) -> Path:
    """A byte-level BPE tokenizer whose vocabulary holds each of ``texts`` as one token (the
    byte alphabet plus the merges that build them), tekken-style filler specials, saved with
    save_pretrained."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    merges = []
    for text in texts:
        encoded = bytelevel(text)
        for k in range(2, len(encoded) + 1):
            if encoded[:k] not in vocab:
                merges.append((encoded[:k - 1], encoded[k - 1]))
                vocab[encoded[:k]] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"additional_special_tokens": ["[INST]", "<SPECIAL_20>",
                                                           "<SPECIAL_999>"]})
    fast.save_pretrained(folder)
    return folder


def test_real_tokenizer_files_show_every_token_visibly(tmp_path: Path) -> None:
    texts = [text for text, _, _ in INVISIBLE] + [" \u00a0", "hello"]
    tokenizer = source.load_tokenizer(_bpe_with(tmp_path / "bpe", texts))
    table = tokens.build_table(tokenizer, source.tokenizer_rows(tokenizer))
    assert table.attrs["family"] == "bytelevel"
    ids = tokenizer.get_vocab()
    for text, display, category in INVISIBLE:
        row = table.iloc[ids[bytelevel(text)]]
        assert (row["display"], row["category"]) == (display, category), repr(text)
    fillers = table.iloc[[ids["<SPECIAL_20>"], ids["<SPECIAL_999>"], ids["[INST]"]]]
    assert fillers["category"].tolist() == ["unused", "unused", "special"]
    # every display text of the whole vocabulary (all 256 bytes included) can be seen
    assert (table["display"] != "").all()
    raw = table["display"].map(lambda d: [c for c in d if is_invisible(c)])
    assert raw.map(len).sum() == 0, table.loc[raw.map(len) > 0, "token"].tolist()
    assert not table.loc[table["display"].str.fullmatch(r"(<U\+[0-9A-F]+>)+"),
                         "category"].isin(["word", "continuation"]).any()
