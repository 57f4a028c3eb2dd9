"""The interactive ``map.html``: every token as one WebGL point layer (holoviews + bokeh),
offline.

One scatter renderer draws every token; its colours come from a mapper over one column
(level codes or values), so the colour switch swaps that column and the palette, and a
hidden legend level is a transparent palette entry. The token data (texts, colourings,
each token's original-space neighbours) travel as one gzip'd block (``page_data``) that
the page's JavaScript (``page.js``, ``page_ui.js``) inflates once: it builds a grid over
all points for hover, click and the labels in view, and adds the search box, the
neighbour panel, the legend and the URL fragment (``#token=…&view=cx,cy,width``). Hover
tip, panel and status are plain DOM elements, so none costs a repaint of the points; while
zooming or panning bokeh draws a decimated subset (level of detail). Everything is inlined,
so the page opens with no network.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job.config import RenderConfig
from job.render import page_data, raster
from job.render.columns import MISSING_COLOUR, Colouring, colourings, palette
from job.render.zooms import Region
from job.rundir import atomic_write

log = logging.getLogger(__name__)

POINT_SIZE = 3  # screen pixels
LOD_POINTS = 20_000  # points drawn per frame while zooming or panning
# The page's labels and panels, in the viewer's own fonts: the browser falls back character
# by character along this list, so each script finds a font where the system has one (Noto
# on Linux, then macOS's and Windows's fonts for the same scripts), emoji last
FONT_STACK = ", ".join([
    "'Noto Sans'", "'DejaVu Sans'", "'Segoe UI'", "'Helvetica Neue'", "Arial",
    "'Noto Sans CJK JP'", "'Noto Sans CJK SC'", "'Noto Sans CJK TC'", "'Noto Sans CJK KR'",
    "'Hiragino Sans'", "'PingFang SC'", "'Apple SD Gothic Neo'", "'Yu Gothic'",
    "'Microsoft YaHei'", "'Malgun Gothic'", "'Noto Sans Arabic'", "'Noto Naskh Arabic'",
    "'Noto Sans Hebrew'", "'Noto Sans Devanagari'", "'Noto Sans Bengali'",
    "'Noto Sans Gurmukhi'", "'Noto Sans Gujarati'", "'Noto Sans Oriya'", "'Noto Sans Tamil'",
    "'Noto Sans Telugu'", "'Noto Sans Kannada'", "'Noto Sans Malayalam'",
    "'Noto Sans Sinhala'", "'Noto Sans Thai'", "'Noto Sans Lao'", "'Noto Sans Khmer'",
    "'Noto Sans Myanmar'", "'Noto Serif Tibetan'", "'Noto Sans Ethiopic'",
    "'Noto Sans Armenian'", "'Noto Sans Georgian'", "'Nirmala UI'", "'Leelawadee UI'",
    "'Myanmar Text'", "'Microsoft Himalaya'", "Ebrima", "'Kohinoor Devanagari'", "Thonburi",
    "'Noto Sans Symbols'", "'Noto Sans Symbols 2'", "'Noto Color Emoji'",
    "'Apple Color Emoji'", "'Segoe UI Emoji'", "sans-serif"])
LABEL_FONT = f"12px {FONT_STACK}"

JS_FILES = ("page.js", "page_ui.js")  # next to this module; run in this order
JS_READY = "window.vocabmap = window.vocabmap || {stats: {}}; " \
    "window.vocabmap.stats.ready_ms = performance.now();"
# bokeh's events call into window.vocabmap (page.js), which ignores them until it is ready
JS_VIEW = "const S = window.vocabmap; if (S && S.schedule) S.schedule();"
JS_HOVER = "const S = window.vocabmap; if (S && S.hover) S.hover(cb_obj);"
JS_TAP = "const S = window.vocabmap; if (S && S.tap) S.tap(cb_obj);"
DATA_ID = "vocabmap-data"


def script(consts: dict[str, object]) -> str:
    """The page's JavaScript: ``consts`` as ``const`` lines, then the JS files."""
    prelude = "".join(f"const {k} = {json.dumps(v)};\n" for k, v in consts.items())
    here = Path(__file__).parent
    return prelude + "\n".join((here / name).read_text(encoding="utf-8") for name in JS_FILES)


def _points_figure(table: pd.DataFrame, first: Colouring, title: str) -> tuple[Any, Any, Any]:
    """holoviews → bokeh: one WebGL scatter of every token, its colours from a mapper over
    column ``c`` (level codes or values), so the page recolours by swapping that column and
    the palette.

    Returns the figure, the point source and the mapper."""
    import holoviews as hv
    from bokeh.models import DataRange1d, LinearColorMapper

    hv.extension("bokeh", logo=False)
    if first.kind == "categorical":
        colours, low, high = first.colours, 0.0, float(len(first.levels))
    else:
        colours, low, high = palette(), first.low, first.high
    frame = pd.DataFrame({"x": table["x"].to_numpy(np.float32),
                          "y": table["y"].to_numpy(np.float32), "c": first.values})
    element = hv.Points(frame, kdims=["x", "y"], vdims=["c"]).opts(
        color="c", cmap=colours, clim=(low, high), size=POINT_SIZE, line_alpha=0, alpha=0.75,
        responsive=True, data_aspect=1, title=title, tools=[],
        active_tools=["wheel_zoom", "pan"], xaxis=None, yaxis=None, show_grid=False)
    fig = hv.render(element, backend="bokeh")
    renderer = fig.renderers[0]
    source = renderer.data_source
    # the page's own mapper over column "c": exactly the colouring's palette, with grey for
    # codes past the levels (missing) and for NaN scores; the page swaps column and palette
    mapper = LinearColorMapper(palette=colours, low=low, high=high, nan_color=MISSING_COLOUR,
                               high_color=MISSING_COLOUR if first.kind == "categorical"
                               else None)
    source.data = {"x": frame["x"].to_numpy(), "y": frame["y"].to_numpy(), "c": first.values}
    colour = {"field": "c", "transform": mapper}
    for glyph in (renderer.glyph, renderer.selection_glyph, renderer.nonselection_glyph,
                  renderer.muted_glyph, renderer.hover_glyph):
        if glyph is not None and glyph != "auto":
            glyph.update(fill_color=colour, line_color=colour, hatch_color=colour)
    fig.output_backend = "webgl"
    fig.name = "map"
    # fill the window and keep map units square: data ranges that match the aspect
    fig.update(x_range=DataRange1d(), y_range=DataRange1d(), match_aspect=True,
               aspect_ratio=None, sizing_mode="stretch_both")
    # while a wheel or drag is under way, draw every k-th point (at most about LOD_POINTS);
    # the full set is drawn once the interaction pauses
    fig.update(lod_threshold=LOD_POINTS, lod_factor=max(10, math.ceil(len(table) / LOD_POINTS)))
    return fig, source, mapper


def _regions(fig: Any, regions: list[Region]) -> None:
    from bokeh.models import ColumnDataSource, LabelSet

    if not regions:
        return
    boxes = [r.box for r in regions]
    src = ColumnDataSource({"left": [b.x0 for b in boxes], "right": [b.x1 for b in boxes],
                            "bottom": [b.y0 for b in boxes], "top": [b.y1 for b in boxes],
                            "name": [r.name for r in regions]})
    fig.quad(left="left", right="right", bottom="bottom", top="top", source=src,
             fill_alpha=0, line_color="black", line_width=1.5, line_dash="dashed")
    fig.add_layout(LabelSet(x="left", y="top", text="name", source=src, y_offset=3,
                            text_font_size="12px", text_color="black", text_font=FONT_STACK))


def build(table: pd.DataFrame, cfg: RenderConfig, regions: list[Region], title: str,
          colourings: list[Colouring]) -> Any:
    """The bokeh Document of the page (the token data go in separately, see ``write``)."""
    from bokeh.document import Document
    from bokeh.events import DocumentReady, MouseLeave, MouseMove, Tap
    from bokeh.models import ColumnDataSource, CustomJS, LabelSet

    fig, points, mapper = _points_figure(table, colourings[0], title)
    _regions(fig, regions)
    labels = ColumnDataSource({"x": [], "y": [], "text": [], "dx": []})
    fig.add_layout(LabelSet(x="x", y="y", text="text", x_offset="dx", source=labels,
                            text_font_size="12px", text_baseline="middle", text_font=FONT_STACK,
                            background_fill_color="white", background_fill_alpha=0.7))
    # the selected token (a ring and its label) and its neighbours (smaller rings)
    marks = ColumnDataSource({"x": [], "y": [], "size": [], "colour": []})
    fig.scatter("x", "y", source=marks, size="size", fill_alpha=0, line_color="colour",
                line_width=2)
    mark_labels = ColumnDataSource({"x": [], "y": [], "text": []})
    fig.add_layout(LabelSet(x="x", y="y", text="text", source=mark_labels, x_offset=10,
                            text_font_size="14px", text_font_style="bold", text_font=FONT_STACK,
                            text_baseline="middle", background_fill_color="#ffffe0"))
    consts = {"FONT": LABEL_FONT, "FONT_STACK": FONT_STACK, "LABEL_POINTS": cfg.html_label_points,
              "MAX_LABELS": cfg.html_max_labels, "MISSING": MISSING_COLOUR}
    on_view = CustomJS(code=JS_VIEW)
    for rng in (fig.x_range, fig.y_range):
        rng.js_on_change("start", on_view)
        rng.js_on_change("end", on_view)
    on_hover = CustomJS(code=JS_HOVER)
    fig.js_on_event(MouseMove, on_hover)
    fig.js_on_event(MouseLeave, on_hover)
    fig.js_on_event(Tap, CustomJS(code=JS_TAP))
    start = CustomJS(args={"fig": fig, "points": points, "mapper": mapper, "labels": labels,
                           "marks": marks, "mark_labels": mark_labels}, code=script(consts))
    doc = Document()
    doc.add_root(fig)
    doc.js_on_event(DocumentReady, CustomJS(code=JS_READY))
    doc.js_on_event(DocumentReady, start)
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
          near: pd.DataFrame | None = None, model: str = "") -> dict[str, Any]:
    """Write ``map.html`` with every resource and the token data inlined (``near``: the run's
    ``neighbours.parquet`` table, its first ``cfg.neighbours`` per token go in); returns
    its size and seconds taken."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    start = time.perf_counter()
    title = f"{raster.heading(model or path.parent.name, len(table))}"
    table = table.reset_index(drop=True)
    choices = colourings(table, cfg.color_by)
    data = page_data.encode(table, choices, near, cfg.neighbours, {"model": model})
    html = _offline(file_html(build(table, cfg, regions, title, choices), INLINE, title=title))
    tag = f'<script type="application/octet-stream" id="{DATA_ID}">{data}</script>'
    end = html.rfind("</body>")  # the data are parsed before DOMContentLoaded all the same
    if end < 0:
        raise RuntimeError("map.html: bokeh's page template has no </body>")
    html = html[:end] + tag + "\n" + html[end:]
    atomic_write(path, lambda tmp: tmp.write_text(html, encoding="utf-8"))
    facts = {"bytes": path.stat().st_size, "seconds": round(time.perf_counter() - start, 2)}
    log.info("map.html: %d tokens, %.1f MB, %.1f s", len(table), facts["bytes"] / 1e6,
             facts["seconds"])
    return facts
