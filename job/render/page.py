"""The interactive ``map.html``: every token as a WebGL point (holoviews + bokeh), offline.

The points are drawn by holoviews (one layer per colour, so the legend can hide a layer);
bokeh adds what must stay cheap at 250k points: one browser-side pass builds a grid over
all points; hover asks that grid for the single nearest token under the cursor; after each
view change the grid counts the points in view (whole cells at once) and, once few enough
are in view, labels them without overlaps, lowest token id first. Hover tip and status
line are plain DOM elements, so neither costs a repaint of the points; while zooming or
panning bokeh draws a decimated subset (level of detail). All JavaScript and data are
inlined, so the page opens with no network.
"""

from __future__ import annotations

import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job.config import RenderConfig
from job.render import raster
from job.render.zooms import Region
from job.rundir import atomic_write

log = logging.getLogger(__name__)

POINT_SIZE = 3  # screen pixels
LOD_POINTS = 20_000  # points drawn per frame while zooming or panning
LABEL_FONT = "12px sans-serif"

# Built once per page (by the first callback that runs): all layers' points in flat
# arrays, a uniform grid over them (cells in counting-sort order) for view and hover
# queries, and two plain DOM elements (hover tip, status line). Changing those costs no
# bokeh repaint, which matters when a repaint means 250k points.
JS_INIT = """
const S = window.vocabmap || (window.vocabmap = {stats: {}});
if (!S.n) {
  const t0 = performance.now();
  let n = 0;
  for (const s of sources) n += s.data.x.length;
  S.x = new Float32Array(n); S.y = new Float32Array(n); S.id = new Int32Array(n);
  S.layer = new Uint8Array(n); S.text = new Array(n);
  let k = 0;
  sources.forEach((s, c) => {
    const d = s.data;
    for (let i = 0; i < d.x.length; i++, k++) {
      S.x[k] = d.x[i]; S.y[k] = d.y[i]; S.id[k] = d.token_id[i];
      S.text[k] = d.display[i]; S.layer[k] = c;
    }
  });
  let gx0 = Infinity, gx1 = -Infinity, gy0 = Infinity, gy1 = -Infinity;
  for (let i = 0; i < n; i++) {
    gx0 = Math.min(gx0, S.x[i]); gx1 = Math.max(gx1, S.x[i]);
    gy0 = Math.min(gy0, S.y[i]); gy1 = Math.max(gy1, S.y[i]);
  }
  const G = Math.max(8, Math.min(1024, Math.ceil(Math.sqrt(n / 4))));
  const cw = (gx1 - gx0) / G || 1, ch = (gy1 - gy0) / G || 1;
  const col = (x) => Math.min(G - 1, Math.max(0, Math.floor((x - gx0) / cw)));
  const row = (y) => Math.min(G - 1, Math.max(0, Math.floor((y - gy0) / ch)));
  const cell = new Int32Array(n), start = new Int32Array(G * G + 1);
  for (let i = 0; i < n; i++) { cell[i] = row(S.y[i]) * G + col(S.x[i]); start[cell[i] + 1]++; }
  for (let c = 0; c < G * G; c++) start[c + 1] += start[c];
  const fill = start.slice(0, G * G), members = new Int32Array(n);
  for (let i = 0; i < n; i++) members[fill[cell[i]]++] = i;
  S.grid = {G, col, row, start, members};
  S.ctx = document.createElement("canvas").getContext("2d");
  S.ctx.font = FONT;
  const box = (id, css) => {
    const el = document.createElement("div");
    el.id = id;
    el.style.cssText = "position: fixed; z-index: 10; pointer-events: none; " + css;
    document.body.appendChild(el);
    return el;
  };
  S.tip = box("vocabmap-tip", "display: none; font: 13px sans-serif; padding: 2px 6px; "
    + "background: #ffffe0; border: 1px solid #888;");
  S.ring = box("vocabmap-ring", "display: none; width: 10px; height: 10px; "
    + "border: 2px solid black; border-radius: 50%;");
  S.status = box("vocabmap-status", "left: 8px; bottom: 4px; font: 12px sans-serif; "
    + "padding: 1px 6px; background: rgba(255, 255, 255, 0.8);");
  S.n = n;
  S.stats.init_ms = performance.now() - t0;
}
const view = Bokeh.index.find_one(fig);  // null until the plot's view is built
"""

# Points in view and labels: once per task however many range events fired, before the
# next paint. Whole grid cells inside the view are counted without visiting their points.
JS_VIEW = JS_INIT + """
S.schedule = S.schedule || (() => {
  if (!S.queued) { S.queued = true; queueMicrotask(() => { S.queued = false; S.update(); }); }
});
S.update = S.update || (() => {
    const t0 = performance.now(), g = S.grid;
    const x0 = fig.x_range.start, x1 = fig.x_range.end, y0 = fig.y_range.start;
    const built = Bokeh.index.find_one(fig), y1 = fig.y_range.end, bbox = built && built.frame.bbox;
    const W = bbox ? bbox.width : 0, H = bbox ? bbox.height : 0;
    if (!(W > 0 && H > 0 && x1 > x0 && y1 > y0)) { setTimeout(S.schedule, 50); return; }
    const shown = layers.map((r) => r.visible), all = shown.every((v) => v);
    const u0 = g.col(x0), u1 = g.col(x1), v0 = g.row(y0), v1 = g.row(y1);
    let inView = 0, picked = [];
    for (let v = v0; v <= v1; v++) for (let u = u0; u <= u1; u++) {
      const c = v * g.G + u, a = g.start[c], b = g.start[c + 1];
      if (all && u > u0 && u < u1 && v > v0 && v < v1) {
        inView += b - a;
        if (inView <= LABEL_POINTS) for (let k = a; k < b; k++) picked.push(g.members[k]);
        continue;
      }
      for (let k = a; k < b; k++) {
        const i = g.members[k], x = S.x[i], y = S.y[i];
        if (x < x0 || x > x1 || y < y0 || y > y1 || !shown[S.layer[i]]) continue;
        if (++inView <= LABEL_POINTS) picked.push(i);
      }
    }
    const out = {x: [], y: [], text: [], dx: []};
    if (inView <= LABEL_POINTS) {
      picked.sort((a, b) => S.id[a] - S.id[b]);  // lowest id (most frequent) first
      const C = 4, cols = Math.ceil(W / C) + 1, rows = Math.ceil(H / C) + 1;
      const used = new Uint8Array(cols * rows), h = 14;
      const free = (a, b, c, d) => {
        if (a < 0 || b < 0 || c > W || d > H) return false;
        for (let v = Math.floor(b / C); v <= Math.floor(d / C); v++)
          for (let u = Math.floor(a / C); u <= Math.floor(c / C); u++)
            if (used[v * cols + u]) return false;
        return true;
      };
      const take = (a, b, c, d) => {
        for (let v = Math.floor(b / C); v <= Math.floor(d / C); v++)
          for (let u = Math.floor(a / C); u <= Math.floor(c / C); u++) used[v * cols + u] = 1;
      };
      for (const i of picked) {
        if (out.x.length >= MAX_LABELS) break;
        const px = (S.x[i] - x0) / (x1 - x0) * W, py = (y1 - S.y[i]) / (y1 - y0) * H;
        const w = S.ctx.measureText(S.text[i]).width + 4;
        for (const dx of [4, -4 - w]) {
          if (free(px + dx, py - h / 2, px + dx + w, py + h / 2)) {
            take(px + dx, py - h / 2, px + dx + w, py + h / 2);
            out.x.push(S.x[i]); out.y.push(S.y[i]); out.text.push(S.text[i]); out.dx.push(dx + 2);
            break;
          }
        }
      }
    }
    if (out.x.length || labels.data.x.length) labels.data = out;
    const more = inView > LABEL_POINTS
      ? ` (labels below ${LABEL_POINTS.toLocaleString()} in view: zoom in)` : "";
    S.status.textContent = `${inView.toLocaleString()} of ${S.n.toLocaleString()} tokens `
      + `in view, ${out.x.length} labelled${more}`;
    Object.assign(S.stats, {in_view: inView, labels: out.x.length,
                            view_ms: performance.now() - t0, updates: (S.stats.updates || 0) + 1});
});
S.schedule();
"""

# Hover: the nearest shown token within 8 pixels of the cursor, looked up in the grid.
JS_HOVER = JS_INIT + """
const t0 = performance.now(), g = S.grid, qx = cb_obj.x, qy = cb_obj.y;
const x0 = fig.x_range.start, x1 = fig.x_range.end, y0 = fig.y_range.start, y1 = fig.y_range.end;
const rx = 8 * (x1 - x0) / view.frame.bbox.width, ry = 8 * (y1 - y0) / view.frame.bbox.height;
let best = -1, bestD = 1;
if (cb_obj.event_name === "mousemove" && rx > 0 && ry > 0) {
  const u0 = g.col(qx - rx), u1 = g.col(qx + rx), v0 = g.row(qy - ry), v1 = g.row(qy + ry);
  for (let v = v0; v <= v1; v++) for (let u = u0; u <= u1; u++) {
    const c = v * g.G + u;
    for (let k = g.start[c]; k < g.start[c + 1]; k++) {
      const i = g.members[k];
      if (!layers[S.layer[i]].visible) continue;
      const d = ((S.x[i] - qx) / rx) ** 2 + ((S.y[i] - qy) / ry) ** 2;
      if (d < bestD) { bestD = d; best = i; }
    }
  }
}
if (best < 0) {
  S.tip.style.display = "none"; S.ring.style.display = "none";
} else {
  const r = view.el.getBoundingClientRect();
  const sx = r.left + view.frame.x_scale.compute(S.x[best]);
  const sy = r.top + view.frame.y_scale.compute(S.y[best]);
  S.tip.textContent = `${S.text[best]}  ·  ${names[S.layer[best]]}  ·  id ${S.id[best]}`;
  Object.assign(S.tip.style, {display: "block", left: `${sx + 10}px`, top: `${sy + 8}px`});
  Object.assign(S.ring.style, {display: "block", left: `${sx - 7}px`, top: `${sy - 7}px`});
}
S.stats.hover = best < 0 ? null : S.text[best];
S.stats.hover_ms = performance.now() - t0;
"""

JS_READY = "window.vocabmap = window.vocabmap || {stats: {}}; " \
    "window.vocabmap.stats.ready_ms = performance.now();"


def _layers(table: pd.DataFrame, cfg: RenderConfig) -> list[tuple[str, str, pd.DataFrame]]:
    """(level, colour, rows) per non-empty level of the colouring column (``category`` when
    that column is continuous, such as ``undertrained``: the page has no colour scale yet)."""
    column = "category" if raster.is_continuous(table, cfg.color_by) else cfg.color_by
    frame = raster.categorical(table, column)
    key = raster.colour_key(frame, column)
    levels = frame[column]
    return [(str(level), key[level], table[(levels == level).to_numpy()])
            for level in key if (levels == level).any()]


def _points_figure(layers: list[tuple[str, str, pd.DataFrame]], title: str,
                   ) -> tuple[Any, list[Any]]:
    """holoviews → bokeh: one WebGL scatter layer per level, legend that hides layers.

    Returns the figure and its layer renderers, in the order of ``layers``."""
    import holoviews as hv
    from bokeh.models import DataRange1d

    hv.extension("bokeh", logo=False)
    elements = [hv.Points(rows[["x", "y"]], kdims=["x", "y"], label=name)
                .opts(color=colour, size=POINT_SIZE, line_alpha=0, alpha=0.75)
                for name, colour, rows in layers]
    overlay = hv.Overlay(elements).opts(hv.opts.Overlay(
        responsive=True, data_aspect=1, title=title, legend_position="top_right",
        tools=[], active_tools=["wheel_zoom", "pan"], xaxis=None, yaxis=None,
    ))
    fig = hv.render(overlay, backend="bokeh")
    renderers = list(fig.renderers)
    fig.output_backend = "webgl"
    fig.name = "map"
    # fill the window and keep map units square: data ranges that match the aspect
    fig.update(x_range=DataRange1d(), y_range=DataRange1d(), match_aspect=True,
               aspect_ratio=None, sizing_mode="stretch_both")
    # while a wheel or drag is under way, draw every k-th point of a big layer (at most
    # about LOD_POINTS in all); the full set is drawn once the interaction pauses
    total = sum(len(rows) for _, _, rows in layers)
    fig.update(lod_threshold=LOD_POINTS, lod_factor=max(10, math.ceil(total / LOD_POINTS)))
    fig.legend.click_policy = "hide"
    return fig, renderers


def _attach_tokens(renderers: list[Any], layers: list[tuple[str, str, pd.DataFrame]]) -> None:
    """Give each layer's data source the tokens' ids and texts (compact dtypes)."""
    if len(renderers) != len(layers):
        raise RuntimeError(f"expected {len(layers)} point layers, holoviews drew "
                           f"{len(renderers)}")
    for renderer, (_, _, rows) in zip(renderers, layers, strict=True):
        data = dict(renderer.data_source.data)
        if len(data["x"]) != len(rows):
            raise RuntimeError("holoviews changed the number of points in a layer")
        data["x"] = rows["x"].to_numpy(np.float32)
        data["y"] = rows["y"].to_numpy(np.float32)
        data["token_id"] = rows["token_id"].to_numpy(np.int32)
        data["display"] = rows["display"].astype(str).tolist()
        renderer.data_source.data = data


def _regions(fig: Any, regions: list[Region]) -> None:
    from bokeh.models import ColumnDataSource, LabelSet

    if not regions:
        return
    src = ColumnDataSource({"left": [r.x0 for r in regions], "right": [r.x1 for r in regions],
                            "bottom": [r.y0 for r in regions], "top": [r.y1 for r in regions],
                            "name": [r.name for r in regions]})
    fig.quad(left="left", right="right", bottom="bottom", top="top", source=src,
             fill_alpha=0, line_color="black", line_width=1.5, line_dash="dashed")
    fig.add_layout(LabelSet(x="left", y="top", text="name", source=src, y_offset=3,
                            text_font_size="12px", text_color="black"))


def build(table: pd.DataFrame, cfg: RenderConfig, regions: list[Region], title: str) -> Any:
    """The bokeh Document of the page."""
    from bokeh.document import Document
    from bokeh.events import DocumentReady, MouseLeave, MouseMove
    from bokeh.models import ColumnDataSource, CustomJS, LabelSet

    layers = _layers(table, cfg)
    fig, renderers = _points_figure(layers, title)
    _attach_tokens(renderers, layers)
    sources = [r.data_source for r in renderers]
    _regions(fig, regions)
    labels = ColumnDataSource({"x": [], "y": [], "text": [], "dx": []})
    fig.add_layout(LabelSet(x="x", y="y", text="text", x_offset="dx", source=labels,
                            text_font_size="12px", text_baseline="middle",
                            background_fill_color="white", background_fill_alpha=0.7))
    consts = {"FONT": LABEL_FONT, "LABEL_POINTS": cfg.html_label_points,
              "MAX_LABELS": cfg.html_max_labels}
    prelude = "".join(f"const {k} = {v!r};\n" for k, v in consts.items())
    common = {"sources": sources, "layers": renderers, "fig": fig}
    on_view = CustomJS(args=common | {"labels": labels}, code=prelude + JS_VIEW)
    for rng in (fig.x_range, fig.y_range):
        rng.js_on_change("start", on_view)
        rng.js_on_change("end", on_view)
    for renderer in renderers:
        renderer.js_on_change("visible", on_view)
    on_hover = CustomJS(args=common | {"names": [name for name, _, _ in layers]},
                        code=prelude + JS_HOVER)
    fig.js_on_event(MouseMove, on_hover)
    fig.js_on_event(MouseLeave, on_hover)
    doc = Document()
    doc.add_root(fig)
    doc.js_on_event(DocumentReady, CustomJS(code=JS_READY))
    doc.js_on_event(DocumentReady, on_view)
    return doc


def _offline(html: str) -> str:
    """The page without references to files it does not contain.

    bokeh's inline mode inlines its own JS and CSS, but also lists the external files that
    any imported model class declares; holoviews' bokeh backend imports panel, whose module
    shim ends up as a ``<script src>`` although this page uses no panel model. Offline that
    fetch fails, so such tags are dropped, and anything else external is an error.
    """
    html = re.sub(r'<script[^>]*\bsrc="static/extensions/[^"]*"[^>]*></script>\s*',
                  "", html)
    external = re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]*)"', html)
    if external:
        raise RuntimeError(f"map.html would load external files: {external}")
    return html


def write(table: pd.DataFrame, cfg: RenderConfig, regions: list[Region], path: Path,
          ) -> dict[str, Any]:
    """Write ``map.html`` with every resource inlined; returns its size and seconds taken."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    start = time.perf_counter()
    shown = "category" if raster.is_continuous(table, cfg.color_by) else cfg.color_by
    title = f"{path.parent.name}: {len(table):,} tokens by {shown}"
    html = _offline(file_html(build(table, cfg, regions, title), INLINE, title=title))
    atomic_write(path, lambda tmp: tmp.write_text(html, encoding="utf-8"))
    facts = {"bytes": path.stat().st_size, "seconds": round(time.perf_counter() - start, 2)}
    log.info("map.html: %d tokens, %.1f MB, %.1f s", len(table), facts["bytes"] / 1e6,
             facts["seconds"])
    return facts
