"""map.html opened in real headless Chromium: no console errors, points drawn, hover and
labels answer with the right tokens, search finds tokens, a fragment or a click selects a
token and lists its neighbours, the colour switch recolours, and nothing is fetched from
outside the file."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from job import lookup, neighbours_file, runread
from job.config import RenderConfig
from job.render import page
from job.render.box import Box
from job.render.zooms import Region
from tests import chromium

pytestmark = pytest.mark.skipif(
    chromium.find_chromium() is None,
    reason="chromium is not installed; `bash scripts/system-deps.sh` (as root) installs it")

READY = "window.vocabmap && window.vocabmap.stats.updates > 0"
# page pixel of a token, from bokeh's own scales for the plot frame
WHERE = """(() => {
  const fig = Bokeh.documents[0].get_model_by_name("map"), v = Bokeh.index.find_one(fig);
  const r = v.el.getBoundingClientRect(), S = window.vocabmap, i = S.text.indexOf(%r);
  return [r.left + v.frame.x_scale.compute(S.x[i]), r.top + v.frame.y_scale.compute(S.y[i])];
})()"""


def synthetic_table(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` tokens in a few clusters; a Japanese word, and a lone token far from the rest."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-40, 40, size=(8, 2))
    xy = centres[rng.integers(0, 8, n)] + rng.normal(0, 3, size=(n, 2))
    xy[0] = (60.0, 60.0)  # "lonely", alone in a corner
    words = [f"w{i}" for i in range(n)]
    words[0], words[1] = "lonely", "東京"
    xy[1] = (60.0, -60.0)
    categories = np.array(["word", "continuation", "number"])[rng.integers(0, 3, n)]
    raw = [f"##{w}" if c == "continuation" else w for w, c in zip(words, categories, strict=True)]
    return pd.DataFrame({
        "token_id": np.arange(n), "token": raw, "display": words,
        "word_start": True, "category": pd.Categorical(categories),
        "script": pd.Categorical(["latin"] * n), "x": xy[:, 0].astype(np.float32),
        "y": xy[:, 1].astype(np.float32)})


def synthetic_neighbours(table: pd.DataFrame, k: int = 10, seed: int | None = None,
                         ) -> pd.DataFrame:
    """A neighbours.parquet table: token i's neighbours are i+1 … i+k (mod n), similarity
    falling with rank; with ``seed``, random tokens and similarities (as hard to compress
    as real ones, for the benchmark's page size)."""
    n = len(table)
    ids = table["token_id"].to_numpy()
    nbr = (np.arange(n)[:, None] + np.arange(1, k + 1)[None, :]) % n
    sim = 0.9 - 0.05 * np.arange(k)[None, :] - 0.1 * (np.arange(n)[:, None] % 3) / 3
    if seed is not None:
        rng = np.random.default_rng(seed)
        nbr = (np.arange(n)[:, None] + rng.integers(1, n, size=(n, k))) % n
        sim = -np.sort(-rng.uniform(0.2, 0.9, size=(n, k)), axis=1)
    on_map = np.zeros((n, k), bool)
    return neighbours_file.frame(ids, nbr, sim.astype(np.float32), on_map)


@pytest.fixture(scope="module")
def map_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    region = Region("corner", Box(50, 70, 50, 70), how="box")
    table = synthetic_table(5000)
    page.write(table, RenderConfig(), [region], folder / "map.html",
               synthetic_neighbours(table), "synthetic")
    return folder / "map.html"


def test_page_is_self_contained(map_html: Path) -> None:
    html = map_html.read_text(encoding="utf-8")
    assert not re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)=', html)
    assert "Bokeh" in html and map_html.stat().st_size < 5_000_000


def test_page_opens_draws_and_names_tokens(map_html: Path) -> None:
    async def hover(s: chromium.Session) -> object:
        x, y = await s.evaluate(WHERE % "lonely")
        await s.mouse("mouseMoved", x, y)
        await s.wait_for("window.vocabmap.stats.hover !== undefined", 10)
        return await s.evaluate("[window.vocabmap.stats.hover, "
                                "document.getElementById('vocabmap-tip').textContent]")

    async def zoom(s: chromium.Session) -> object:
        x, y = await s.evaluate(WHERE % "東京")
        for _ in range(2):  # real wheel events on the wheel-zoom tool, about 3x each
            await s.mouse("mouseWheel", x, y, deltaX=0, deltaY=-400)
        await s.wait_for("window.vocabmap.stats.updates > 2 && "
                         "window.vocabmap.stats.labels > 0", 10)
        return await s.evaluate("[window.vocabmap.stats.in_view, "
                                "Bokeh.documents[0].get_model_by_name('map').x_range.end"
                                " - Bokeh.documents[0].get_model_by_name('map').x_range.start]")

    report = chromium.open_page(map_html, READY, {
        "first": "JSON.stringify(window.vocabmap.stats)", "hover": hover, "zoom": zoom,
        "font": "[window.vocabmap.ctx.font, getComputedStyle("
                "document.getElementById('vocabmap-status')).fontFamily]",
        "labels": "Bokeh.documents[0].all_models.values().find(m => m.type === 'LabelSet' && "
                  "m.source.data.text && m.source.data.dx).source.data.text"})
    assert report.errors == []
    assert '"in_view":5000' in report.values["first"]
    hovered, tip = report.values["hover"]
    assert hovered == "lonely" and tip.startswith("lonely") and "id 0" in tip
    in_view, width = report.values["zoom"]
    assert 0 < in_view <= RenderConfig().html_label_points and width < 100
    assert "東京" in report.values["labels"]
    # Chromium took the whole font stack (an unparsable one leaves "10px sans-serif")
    canvas_font, panel_font = report.values["font"]
    assert "Noto Sans CJK JP" in canvas_font and "Noto Sans Devanagari" in panel_font
    img = np.asarray(Image.open(io.BytesIO(report.screenshot)).convert("RGB")).astype(int)
    coloured = (img.max(axis=2) - img.min(axis=2)) > 60  # points are saturated colours
    assert coloured.sum() > 200, "the canvas looks blank"


async def type_in(s: chromium.Session, selector: str, text: str) -> None:
    """Focus an input and type ``text`` as the keyboard would (input events included)."""
    await s.evaluate(f"document.querySelector({selector!r}).focus()")
    await s.call("Input.insertText", text=text)


async def click(s: chromium.Session, selector: str, index: int = 0) -> None:
    """A real mouse click at the centre of the ``index``-th element matching ``selector``."""
    x, y = await s.evaluate(f"""(() => {{
      const r = document.querySelectorAll({selector!r})[{index}].getBoundingClientRect();
      return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
    await s.mouse("mousePressed", x, y, button="left", clickCount=1)
    await s.mouse("mouseReleased", x, y, button="left", clickCount=1)


RESULTS = "[...document.querySelectorAll('#search-results .result')].map(r => r.innerText)"
CENTRE = """(() => { const f = Bokeh.documents[0].get_model_by_name("map");
  return [(f.x_range.start + f.x_range.end) / 2, (f.y_range.start + f.y_range.end) / 2,
          f.x_range.end - f.x_range.start]; })()"""


def test_search_finds_tokens_and_selects(map_html: Path) -> None:
    async def search(s: chromium.Session) -> object:
        await type_in(s, "#search", "東")
        await s.wait_for("window.vocabmap.stats.search_total !== undefined", 10)
        found = await s.evaluate(RESULTS)
        await s.evaluate("(() => { const i = document.getElementById('search'); i.value = '';"
                         " i.dispatchEvent(new Event('input')); })()")
        await type_in(s, "#search", "LONE")  # case-insensitive by default
        upper = await s.evaluate(RESULTS)
        await click(s, "#search-case")  # match case: nothing is "LONE"
        exact = await s.evaluate(RESULTS)
        await click(s, "#search-case")
        await s.evaluate("(() => { const i = document.getElementById('search'); i.value = '';"
                         " i.dispatchEvent(new Event('input')); })()")
        await type_in(s, "#search", "##w12")  # a raw token that reads differently
        raw = await s.evaluate(RESULTS)
        await s.evaluate("(() => { const i = document.getElementById('search'); i.value = '';"
                         " i.dispatchEvent(new Event('input')); })()")
        await type_in(s, "#search", "nel")  # a substring
        await click(s, "#search-results .result")
        await s.wait_for("location.hash.includes('token=lonely')", 5)
        return [found, upper, exact, raw, await s.evaluate(CENTRE),
                await s.evaluate("window.vocabmap.stats.search_ms")]

    report = chromium.open_page(map_html, READY, {"search": search})
    assert report.errors == []
    found, upper, exact, raw, (cx, cy, width), ms = report.values["search"]
    assert found and found[0].startswith("東京") and "id 1" in found[0]
    assert any(c in found[0] for c in ("word", "continuation", "number"))  # the category
    assert upper and upper[0].startswith("lonely")
    assert exact == []
    table = synthetic_table(5000)
    w12 = table[table["token"].str.startswith("##w12")]["display"].tolist()
    assert raw and {r.split()[0] for r in raw} <= set(w12)
    assert abs(cx - 60) < 1 and abs(cy - 60) < 1 and width < 60  # centred on "lonely"
    # the page times its own search; how fast it is, is bench/page_load.py's to measure
    assert isinstance(ms, int | float) and ms >= 0


def test_fragment_selects_and_neighbour_click_moves(map_html: Path) -> None:
    table = synthetic_table(5000)
    near = synthetic_neighbours(table)

    async def panel(s: chromium.Session) -> object:
        await s.wait_for("document.querySelectorAll('#neighbours li').length > 0", 5)
        return await s.evaluate("[...document.querySelectorAll('#neighbours li')]"
                                ".map(l => [Number(l.dataset.id), Number(l.dataset.sim)])")

    async def follow(s: chromium.Session) -> object:
        await click(s, "#neighbours li", 2)
        await s.wait_for("location.hash.includes('token=w4')", 5)
        return [await s.evaluate("decodeURIComponent(location.hash)"),
                await s.evaluate("window.vocabmap.stats.selected")]

    report = chromium.open_page(map_html, READY, {"panel": panel, "follow": follow},
                                fragment="#token=%E6%9D%B1%E4%BA%AC")  # 東京
    assert report.errors == []
    want = near[near["token_id"] == 1]
    got = report.values["panel"]
    assert [g[0] for g in got] == want["neighbour_id"].tolist()
    assert np.allclose([g[1] for g in got], want["similarity"], atol=1e-3)
    fragment, selected = report.values["follow"]
    assert selected == "w4" and fragment.startswith("#token=w4&view=")


def test_fragment_with_an_unknown_token_says_so(map_html: Path) -> None:
    report = chromium.open_page(map_html, READY, {"status": "document.getElementById("
                                                  "'vocabmap-status').textContent"},
                                fragment="#token=nowhere%20near")
    assert report.errors == []
    assert report.values["status"].startswith('no token "nowhere near" in this map · ')


def test_fragment_view_reopens_the_view(map_html: Path) -> None:
    report = chromium.open_page(map_html, READY, {"centre": CENTRE},
                                fragment="#view=10,-5,20&token=lonely")
    assert report.errors == []
    cx, cy, width = report.values["centre"]
    assert (round(cx, 3), round(cy, 3), round(width, 3)) == (10, -5, 20)


def colour_share(png: bytes, colour: str) -> float:
    """Share of the screenshot's pixels close to ``colour`` (hex)."""
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    want = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return float((np.abs(img - want).max(axis=2) < 40).mean())


def test_colour_switch_recolours(tmp_path: Path) -> None:
    table = synthetic_table(5000)
    table["script"] = pd.Categorical(np.where(table["x"] > 0, "latin", "kanji"))
    table["pos"] = pd.Categorical(np.where(table["y"] > 0, "名詞", "動詞"))  # Japanese only
    table["undertrained"] = np.linspace(0, 1, len(table), dtype=np.float32)
    table.loc[3, "undertrained"] = np.nan
    path = tmp_path / "map.html"
    page.write(table, RenderConfig(), [], path)

    async def shot(s: chromium.Session) -> bytes:
        await s.evaluate("new Promise((r) => requestAnimationFrame(() => "
                         "requestAnimationFrame(() => r(1))))")
        import base64
        return base64.b64decode((await s.call("Page.captureScreenshot", format="png"))["data"])

    async def switch(s: chromium.Session) -> object:
        word = await shot(s)
        await click(s, "#vocabmap-legend .row[data-level='word']")  # hide "word"
        hidden = await shot(s)
        await s.evaluate("(() => { const s = document.getElementById('color-by');"
                         " s.value = 'script'; s.dispatchEvent(new Event('change')); })()")
        script = await shot(s)
        legend = await s.evaluate("document.getElementById('vocabmap-legend').innerText")
        mapper = await s.evaluate("window.vocabmap.mapper.palette")
        await s.evaluate("(() => { const s = document.getElementById('color-by');"
                         " s.value = 'undertrained'; s.dispatchEvent(new Event('change')); })()")
        continuous = await s.evaluate("[window.vocabmap.mapper.palette.length, "
                                      "document.getElementById('vocabmap-legend').innerText]")
        return [word, hidden, script, legend, mapper, continuous,
                await s.evaluate("[...document.querySelectorAll('#color-by option')]"
                                 ".map(o => o.value)")]

    report = chromium.open_page(path, READY, {"switch": switch})
    assert report.errors == []
    word, hidden, script, legend, mapper, (levels, bar), options = report.values["switch"]
    assert options == ["category", "script", "pos", "undertrained"]
    blue = "#1f77b4"  # "word" in the category colours; "latin" is blue too in glasbey
    assert colour_share(word, blue) > 0.001
    assert colour_share(hidden, blue) < colour_share(word, blue) / 10
    n_latin = int((table["x"] > 0).sum())
    assert f"latin ({n_latin:,})" in legend and f"kanji ({len(table) - n_latin:,})" in legend
    assert len(mapper) == 2 and colour_share(script, mapper[0]) > 0.001
    assert levels == 256 and "no value: 1" in bar


def test_fragment_colours_the_page_and_follows_the_switch(tmp_path: Path) -> None:
    """``#color=undertrained`` opens the page on the score's colour scale (the link the
    under-trained zoom records), and a colour switch writes the fragment."""
    table = synthetic_table(3000)
    table["undertrained"] = np.linspace(0, 9, len(table), dtype=np.float32)
    path = tmp_path / "map.html"
    page.write(table, RenderConfig(), [], path)

    async def opened(s: chromium.Session) -> object:
        first = await s.evaluate("[window.vocabmap.stats.colour, "
                                 "document.getElementById('color-by').value, "
                                 "window.vocabmap.mapper.palette.length]")
        await s.evaluate("(() => { const s = document.getElementById('color-by');"
                         " s.value = 'category'; s.dispatchEvent(new Event('change')); })()")
        await s.evaluate("new Promise((r) => setTimeout(() => r(1), 400))")
        return [first, await s.evaluate("location.hash")]

    report = chromium.open_page(path, READY, {"opened": opened},
                                fragment="#color=undertrained&view=0,0,20")
    assert report.errors == []
    (colour, chosen, levels), fragment = report.values["opened"]
    assert (colour, chosen, levels) == ("undertrained", "undertrained", 256)
    assert fragment.startswith("#view=") and "color=" not in fragment  # category: the default


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded default mapped as `make run` does (about 40 s)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = tmp_path_factory.mktemp("runs")
    proc = subprocess.run([sys.executable, "-m", "job", "run", str(root / "configs/default.toml"),
                           "--out", str(out)], capture_output=True, text=True, timeout=1200,
                          cwd=root, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("token", ["東", "##ing"])
def test_default_map_lists_true_neighbours(default_run: Path, token: str) -> None:
    """map.html#token=… opens with the token selected and lists its nearest neighbours in
    the model's own space: those of neighbours.parquet, and those a brute-force cosine
    search over the embedding matrix finds; clicking one moves the selection and the URL."""
    from urllib.parse import quote

    from job import config as config_mod
    from job import source
    from job.knn import l2_normalise

    layout = runread.layout(default_run)
    row = lookup.find_token(layout, token)
    tid = int(layout["token_id"].iloc[row])
    stored = runread.neighbours(default_run)
    stored = stored[stored["token_id"] == tid]
    cfg = config_mod.load(Path(__file__).resolve().parent.parent / "configs/default.toml")
    X = l2_normalise(source.load(cfg.models[0]).matrix[layout["token_id"].to_numpy()])
    cos = X @ X[row]
    cos[row] = -np.inf
    brute = np.argsort(-cos, kind="stable")[:10]

    async def panel(s: chromium.Session) -> object:
        await s.wait_for("document.querySelectorAll('#neighbours li').length === 10", 10)
        return await s.evaluate("[...document.querySelectorAll('#neighbours li')].map(l => "
                                "[Number(l.dataset.id), Number(l.dataset.sim), l.dataset.map])")

    async def follow(s: chromium.Session) -> object:
        await click(s, "#neighbours li", 0)
        await s.wait_for(f"window.vocabmap.stats.selected !== window.vocabmap.text[{row}]", 5)
        await asyncio.sleep(0.4)  # the fragment follows after 150 ms
        return [await s.evaluate("window.vocabmap.stats.selected"),
                await s.evaluate("location.hash")]

    report = chromium.open_page(default_run / "map.html", READY,
                                {"panel": panel, "follow": follow},
                                fragment="#token=" + quote(token, safe=""))
    assert report.errors == []
    got = report.values["panel"]
    assert [g[0] for g in got] == stored["neighbour_id"].tolist()
    assert [g[0] for g in got] == layout["token_id"].to_numpy()[brute].tolist()
    assert np.allclose([g[1] for g in got], cos[brute], atol=1.5e-3)
    assert [g[2] == "1" for g in got] == stored["map_neighbour"].tolist()
    first = layout.loc[layout["token_id"] == got[0][0], "display"].iloc[0]
    selected, fragment = report.values["follow"]
    assert selected == first
    assert fragment.startswith("#token=" + quote(first, safe="")) and "&view=" in fragment
