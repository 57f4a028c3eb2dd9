"""Size, write time, load time and interaction latency of map.html in headless Chromium.

    .venv/bin/python bench/page_load.py 250000          # synthetic clustered points
    .venv/bin/python bench/page_load.py runs/<run-dir>  # a real layout.parquet

Prints one JSON object. load_s: load_event (HTML parsed, scripts run), ready (bokeh's
document ready, the token data inflated and the first view pass: points in view, labels),
first_frame (two animation frames later: the points are painted). interact: frame
intervals while real wheel and drag events zoom and pan (bokeh draws a decimated subset
while moving), then the full redraw. search_ms: the search box's time per query (typed
with real key input; the first query also builds the lower-case texts), and select_ms the
time to choose the first result (neighbour panel, view moved). A synthetic map gets k = 10
made-up neighbours per token, so its page is as large as a real one.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from job.config import RenderConfig  # noqa: E402
from job.render import page, zooms  # noqa: E402
from tests import chromium  # noqa: E402
from tests.test_page import (  # noqa: E402
    READY,
    synthetic_neighbours,
    synthetic_table,
    type_in,
)

QUERIES = ("w1", "w12", "the", "ing", "東", "zz", "w1234")  # synthetic and real words

FIRST_FRAME = "new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(1))))"
RECORD = """(() => { const S = window.vocabmap; S.frames = []; let last = performance.now();
  const tick = (t) => {
    S.frames.push(t - last); last = t; if (S.recording) requestAnimationFrame(tick);
  };
  S.recording = true; requestAnimationFrame(tick); return 1; })()"""
STOP = """(() => { const S = window.vocabmap; S.recording = false;
  const f = S.frames.slice(1).sort((a, b) => a - b);
  const q = (p) => Math.round(f[Math.floor(p * (f.length - 1))]);
  return {frames: f.length, median_ms: q(0.5), p90_ms: q(0.9), max_ms: q(1),
          in_view: S.stats.in_view, labels: S.stats.labels,
          view_pass_ms: Math.round(S.stats.view_ms)}; })()"""


async def interact(s: chromium.Session) -> dict:
    """Real input: 4 wheel zooms and a drag at the plot centre, frame intervals recorded."""
    x, y = 620, 380
    await s.evaluate(RECORD)
    t0 = time.perf_counter()
    for _ in range(4):
        await s.mouse("mouseWheel", x, y, deltaX=0, deltaY=-300)
        await asyncio.sleep(0.15)
    await s.mouse("mousePressed", x, y, button="left", clickCount=1)
    for k in range(1, 11):
        await s.mouse("mouseMoved", x + 15 * k, y + 8 * k, button="left")
        await asyncio.sleep(0.05)
    await s.mouse("mouseReleased", x + 150, y + 80, button="left", clickCount=1)
    await asyncio.sleep(1.0)  # level-of-detail timeout, then the full redraw
    await s.evaluate(FIRST_FRAME)
    out = await s.evaluate(STOP)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


async def search(s: chromium.Session, queries: tuple[str, ...] = QUERIES) -> dict:
    """Type each query into the search box; the page's own timing per query."""
    out = {}
    for q in queries:
        await s.evaluate("(() => { const i = document.getElementById('search'); i.value = '';"
                         " i.dispatchEvent(new Event('input')); })()")
        await type_in(s, "#search", q)
        out[q] = await s.evaluate("[Math.round(window.vocabmap.stats.search_ms * 10) / 10, "
                                  "window.vocabmap.stats.search_total]")
    await s.evaluate("(() => { const i = document.getElementById('search'); i.value = '';"
                     " i.dispatchEvent(new Event('input')); })()")
    await type_in(s, "#search", next(q for q in queries if out[q][1]))
    t0 = await s.evaluate("performance.now()")
    await s.evaluate("document.querySelector('#search-results .result').click()")
    out["select_ms"] = round(await s.evaluate("performance.now()") - t0, 1)
    return out


def main(arg: str) -> None:
    cfg = RenderConfig()
    if arg.isdigit():
        table, regions = synthetic_table(int(arg)), []
        near = synthetic_neighbours(table, seed=0)
    else:
        table = pd.read_parquet(Path(arg) / "layout.parquet")
        regions = zooms.resolve(table, cfg)
        near = pd.read_parquet(Path(arg) / "neighbours.parquet")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "map.html"
        t0 = time.perf_counter()
        facts = page.write(table, cfg, regions, path, near)
        write_s = time.perf_counter() - t0

        async def hover(s: chromium.Session) -> float:
            times = []
            for k in range(20):
                await s.mouse("mouseMoved", 300 + 20 * k, 300 + 10 * k)
                times.append(await s.evaluate("window.vocabmap.stats.hover_ms"))
            return max(t for t in times if t is not None)

        report = chromium.open_page(path, READY, {
            "first_frame": FIRST_FRAME, "stats": "JSON.stringify(window.vocabmap.stats)",
            "hover_max_ms": hover, "interact": interact, "search": search}, timeout=180)
    print(json.dumps({"points": len(table), "mb": round(facts["bytes"] / 1e6, 2),
                      "write_s": round(write_s, 2), "errors": report.errors,
                      "load_s": {k: round(v, 2) for k, v in report.seconds.items()},
                      "stats": json.loads(report.values["stats"]),
                      "hover_max_ms": report.values["hover_max_ms"],
                      "interact": report.values["interact"],
                      "search_ms": report.values["search"]}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "250000")
