"""Size, write time, load time and interaction latency of map.html in headless Chromium.

    .venv/bin/python bench/page_load.py 250000          # synthetic clustered points
    .venv/bin/python bench/page_load.py runs/<run-dir>  # a real layout.parquet

Prints one JSON object. load_s: load_event (HTML parsed, scripts run), ready (bokeh's
document ready and the first view pass: points in view, labels), first_frame (two animation
frames later: the points are painted). interact: frame intervals while real wheel and drag
events zoom and pan (bokeh draws a decimated subset while moving), then the full redraw.
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
from tests.test_page import READY, synthetic_table  # noqa: E402

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


def main(arg: str) -> None:
    cfg = RenderConfig()
    if arg.isdigit():
        table, regions = synthetic_table(int(arg)), []
    else:
        table = pd.read_parquet(Path(arg) / "layout.parquet")
        regions = zooms.resolve(table, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "map.html"
        t0 = time.perf_counter()
        facts = page.write(table, cfg, regions, path)
        write_s = time.perf_counter() - t0

        async def hover(s: chromium.Session) -> float:
            times = []
            for k in range(20):
                await s.mouse("mouseMoved", 300 + 20 * k, 300 + 10 * k)
                times.append(await s.evaluate("window.vocabmap.stats.hover_ms"))
            return max(t for t in times if t is not None)

        report = chromium.open_page(path, READY, {
            "first_frame": FIRST_FRAME, "stats": "JSON.stringify(window.vocabmap.stats)",
            "hover_max_ms": hover, "interact": interact}, timeout=180)
    print(json.dumps({"points": len(table), "mb": round(facts["bytes"] / 1e6, 2),
                      "write_s": round(write_s, 2), "errors": report.errors,
                      "load_s": {k: round(v, 2) for k, v in report.seconds.items()},
                      "stats": json.loads(report.values["stats"]),
                      "hover_max_ms": report.values["hover_max_ms"],
                      "interact": report.values["interact"]}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "250000")
