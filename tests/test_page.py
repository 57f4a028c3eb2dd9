"""map.html opened in real headless Chromium: no console errors, points drawn, hover and
labels answer with the right tokens, and nothing is fetched from outside the file."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from job.config import RenderConfig
from job.render import page
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
    return pd.DataFrame({
        "token_id": np.arange(n), "token": words, "display": words,
        "word_start": True, "category": pd.Categorical(categories),
        "script": pd.Categorical(["latin"] * n), "x": xy[:, 0].astype(np.float32),
        "y": xy[:, 1].astype(np.float32)})


@pytest.fixture(scope="module")
def map_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    region = Region("corner", 50, 70, 50, 70, how="box")
    page.write(synthetic_table(5000), RenderConfig(), [region], folder / "map.html")
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
        "labels": "Bokeh.documents[0].all_models.values().find(m => m.type === 'LabelSet' && "
                  "m.source.data.text && m.source.data.dx).source.data.text"})
    assert report.errors == []
    assert '"in_view":5000' in report.values["first"]
    hovered, tip = report.values["hover"]
    assert hovered == "lonely" and tip.startswith("lonely") and "id 0" in tip
    in_view, width = report.values["zoom"]
    assert 0 < in_view <= RenderConfig().html_label_points and width < 100
    assert "東京" in report.values["labels"]
    img = np.asarray(Image.open(io.BytesIO(report.screenshot)).convert("RGB")).astype(int)
    coloured = (img.max(axis=2) - img.min(axis=2)) > 60  # points are saturated colours
    assert coloured.sum() > 200, "the canvas looks blank"
