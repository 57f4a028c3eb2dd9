// vocabmap's map.html, run once on bokeh's DocumentReady with args fig, points (the one
// point source: x, y, c), mapper (its colour mapper), labels, marks, mark_labels.
// Everything lives in window.vocabmap (S). The token data arrive as one gzip'd block
// (job/render/page_data.py) inflated here; until then hover, search and labels wait.
const S = window.vocabmap || (window.vocabmap = {stats: {}});
S.fig = fig; S.points = points; S.mapper = mapper; S.labels = labels; S.marks = marks;
S.markLabels = mark_labels;

const $ = (tag, css, parent) => {
  const el = document.createElement(tag);
  if (css) el.style.cssText = css;
  (parent || document.body).appendChild(el);
  return el;
};
const TRANSPARENT = "rgba(0,0,0,0)";

async function inflate() {
  const t0 = performance.now();
  const text = atob(document.getElementById("vocabmap-data").textContent.trim());
  const bin = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bin[i] = text.charCodeAt(i);
  const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream("gzip"));
  const buf = await new Response(stream).arrayBuffer();
  const hlen = new DataView(buf).getUint32(0, true);
  const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, hlen)));
  const kinds = {uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array,
                 int32: Int32Array, uint32: Uint32Array, float32: Float32Array};
  const arr = {};
  for (const [name, [dtype, off, len, planes]] of Object.entries(head.arrays)) {
    if (!planes) { arr[name] = new kinds[dtype](buf, 4 + hlen + off, len); continue; }
    const size = kinds[dtype].BYTES_PER_ELEMENT, src = new Uint8Array(buf, 4 + hlen + off);
    const out = new Uint8Array(len * size);  // byte planes back to little-endian values
    for (let p = 0; p < size; p++)
      for (let j = 0, at = p * len; j < len; j++) out[j * size + p] = src[at + j];
    arr[name] = new kinds[dtype](out.buffer);
  }
  S.stats.inflate_ms = performance.now() - t0;
  return [head, arr];
}

function buildGrid() {
  const n = S.n;
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
  S.grid = {G, col, row, start, members, gx0, gx1, gy0, gy1};
}

// ---- colouring: one renderer; its mapper's palette and the values column are switched ----
S.hidden = (i) => {
  const c = S.colour;
  return c.kind === "categorical" && c.off[c.values[i]] === 1;
};
S.recolour = (name) => {
  const c = S.colourings.find((x) => x.name === name) || S.colourings[0];
  S.colour = c;
  if (c.kind === "categorical") {
    c.off = c.off || new Uint8Array(256);
    mapper.setv({palette: c.colours.map((col, l) => c.off[l] ? TRANSPARENT : col),
                 low: 0, high: c.levels.length, high_color: MISSING});
  } else {
    mapper.setv({palette: c.palette, low: c.low, high: c.high, low_color: null,
                 high_color: null, nan_color: MISSING});
  }
  points.data = Object.assign({}, points.data, {c: c.values});
  S.legend(c);
  if (S.pick) S.pick.value = c.name;
  S.stats.colour = c.name;
  S.schedule();
  if (S.writeHash) S.writeHash();
};
S.legend = (c) => {
  const box = S.legendBox;
  box.querySelectorAll(".row, .bar").forEach((el) => el.remove());
  if (c.kind === "categorical") {
    c.levels.forEach((level, l) => {
      if (!c.counts[l]) return;
      const r = $("div", "cursor: pointer; white-space: nowrap; opacity: "
        + (c.off[l] ? 0.4 : 1), box);
      r.className = "row"; r.dataset.level = level;
      const sw = $("span", "display: inline-block; width: 10px; height: 10px; "
        + `margin-right: 5px; background: ${c.colours[l]};`, r);
      sw.className = "swatch";
      $("span", "", r).textContent = `${level} (${c.counts[l].toLocaleString()})`;
      r.onclick = () => { c.off[l] ^= 1; S.recolour(c.name); };
    });
  } else {
    const bar = $("div", "", box); bar.className = "bar";
    const stops = c.palette.filter((_, j) => j % 32 === 0).concat([c.palette[c.palette.length - 1]]);
    $("div", `width: 180px; height: 10px; background: linear-gradient(to right, ${stops})`, bar);
    const ends = $("div", "display: flex; justify-content: space-between", bar);
    $("span", "", ends).textContent = c.low.toPrecision(3);
    $("span", "", ends).textContent = c.high.toPrecision(3);
    if (c.missing) $("div", "", bar).textContent = `no value: ${c.missing.toLocaleString()}`;
  }
};

// ---- the view: points in view and labels, once per task however many events fired ----
S.schedule = () => {
  if (!S.n) return;
  if (!S.queued) { S.queued = true; queueMicrotask(() => { S.queued = false; S.update(); }); }
};
S.frame = () => { const v = Bokeh.index.find_one(fig); return v && v.frame.bbox; };
S.update = () => {
  const t0 = performance.now(), g = S.grid;
  const x0 = fig.x_range.start, x1 = fig.x_range.end, y0 = fig.y_range.start, y1 = fig.y_range.end;
  const bbox = S.frame(), W = bbox ? bbox.width : 0, H = bbox ? bbox.height : 0;
  if (!(W > 0 && H > 0 && x1 > x0 && y1 > y0)) { setTimeout(S.schedule, 50); return; }
  const all = S.colour.kind !== "categorical" || !S.colour.off.some((v) => v);
  const u0 = g.col(x0), u1 = g.col(x1), v0 = g.row(y0), v1 = g.row(y1);
  let inView = 0; const picked = [];
  for (let v = v0; v <= v1; v++) for (let u = u0; u <= u1; u++) {
    const c = v * g.G + u, a = g.start[c], b = g.start[c + 1];
    if (all && u > u0 && u < u1 && v > v0 && v < v1) {
      inView += b - a;
      if (inView <= LABEL_POINTS) for (let k = a; k < b; k++) picked.push(g.members[k]);
      continue;
    }
    for (let k = a; k < b; k++) {
      const i = g.members[k], x = S.x[i], y = S.y[i];
      if (x < x0 || x > x1 || y < y0 || y > y1 || S.hidden(i)) continue;
      if (++inView <= LABEL_POINTS) picked.push(i);
    }
  }
  const out = {x: [], y: [], text: [], dx: []};
  if (inView <= LABEL_POINTS) {
    picked.sort((a, b) => S.id[a] - S.id[b]);  // lowest id (most frequent) first
    const C = 4, cols = Math.ceil(W / C) + 1, rows = Math.ceil(H / C) + 1;
    const used = new Uint8Array(cols * rows), h = 14;
    const cells = (a, b, c, d, set) => {
      for (let v = Math.floor(b / C); v <= Math.floor(d / C); v++)
        for (let u = Math.floor(a / C); u <= Math.floor(c / C); u++) {
          if (set) used[v * cols + u] = 1; else if (used[v * cols + u]) return false;
        }
      return true;
    };
    for (const i of picked) {
      if (out.x.length >= MAX_LABELS) break;
      const px = (S.x[i] - x0) / (x1 - x0) * W, py = (y1 - S.y[i]) / (y1 - y0) * H;
      const w = S.ctx.measureText(S.text[i]).width + 4;
      for (const dx of [4, -4 - w]) {
        const a = px + dx, b = py - h / 2, c = px + dx + w, d = py + h / 2;
        if (a >= 0 && b >= 0 && c <= W && d <= H && cells(a, b, c, d, false)) {
          cells(a, b, c, d, true);
          out.x.push(S.x[i]); out.y.push(S.y[i]); out.text.push(S.text[i]); out.dx.push(dx + 2);
          break;
        }
      }
    }
  }
  if (out.x.length || labels.data.x.length) labels.data = out;
  const more = inView > LABEL_POINTS
    ? ` (labels below ${LABEL_POINTS.toLocaleString()} in view: zoom in)` : "";
  S.status.textContent = (S.notice ? `${S.notice} · ` : "")
    + `${inView.toLocaleString()} of ${S.n.toLocaleString()} tokens `
    + `in view, ${out.x.length} labelled${more}`;
  Object.assign(S.stats, {in_view: inView, labels: out.x.length,
                          view_ms: performance.now() - t0, updates: (S.stats.updates || 0) + 1});
  S.writeHash();
};

// ---- hover and click: the nearest shown token within 8 pixels, from the grid ----
S.nearest = (qx, qy) => {
  const g = S.grid, bbox = S.frame();
  const x0 = fig.x_range.start, x1 = fig.x_range.end, y0 = fig.y_range.start, y1 = fig.y_range.end;
  const rx = 8 * (x1 - x0) / bbox.width, ry = 8 * (y1 - y0) / bbox.height;
  let best = -1, bestD = 1;
  if (!(rx > 0 && ry > 0)) return best;
  const u0 = g.col(qx - rx), u1 = g.col(qx + rx), v0 = g.row(qy - ry), v1 = g.row(qy + ry);
  for (let v = v0; v <= v1; v++) for (let u = u0; u <= u1; u++) {
    const c = v * g.G + u;
    for (let k = g.start[c]; k < g.start[c + 1]; k++) {
      const i = g.members[k];
      if (S.hidden(i)) continue;
      const d = ((S.x[i] - qx) / rx) ** 2 + ((S.y[i] - qy) / ry) ** 2;
      if (d < bestD) { bestD = d; best = i; }
    }
  }
  return best;
};
S.describe = (i) => {
  const c = S.colour, v = c.values[i];
  const what = c.kind === "categorical" ? (c.levels[v] ?? "—")
    : (Number.isNaN(v) ? "no value" : `${c.name} ${v.toPrecision(3)}`);
  return `${S.text[i]}  ·  ${what}  ·  id ${S.id[i]}`;
};
S.hover = (ev) => {
  if (!S.n) return;
  const t0 = performance.now();
  const best = ev.event_name === "mousemove" ? S.nearest(ev.x, ev.y) : -1;
  if (best < 0) {
    S.tip.style.display = "none"; S.ring.style.display = "none";
  } else {
    const view = Bokeh.index.find_one(fig), r = view.el.getBoundingClientRect();
    const sx = r.left + view.frame.x_scale.compute(S.x[best]);
    const sy = r.top + view.frame.y_scale.compute(S.y[best]);
    S.tip.textContent = S.describe(best);
    Object.assign(S.tip.style, {display: "block", left: `${sx + 10}px`, top: `${sy + 8}px`});
    Object.assign(S.ring.style, {display: "block", left: `${sx - 7}px`, top: `${sy - 7}px`});
  }
  S.stats.hover = best < 0 ? null : S.text[best];
  S.stats.hover_ms = performance.now() - t0;
};
S.tap = (ev) => {
  if (!S.n) return;
  const i = S.nearest(ev.x, ev.y);
  if (i >= 0) S.select(i, false);
};

(async () => {
  const t0 = performance.now();
  const [head, arr] = await inflate();
  S.x = points.data.x; S.y = points.data.y; S.text = head.display; S.n = head.n;
  S.id = arr.token_id || Int32Array.from({length: S.n}, (_, i) => i);
  S.raw = new Map(head.raw_rows.map((r, j) => [r, head.raw[j]]));
  S.k = head.k; S.nbr = arr.neighbours; S.sim = arr.similarity; S.simUnit = head.sim_unit;
  S.model = head.model;
  S.colourings = head.colourings.map((c) => Object.assign(c, {values: arr[`colour:${c.name}`]}));
  S.colour = S.colourings[0];
  S.colour.off = new Uint8Array(256);
  buildGrid();
  S.ctx = document.createElement("canvas").getContext("2d");
  S.ctx.font = FONT;
  S.ui();
  S.stats.init_ms = performance.now() - t0;
  S.readHash(true);
  S.schedule();
})().catch((err) => { console.error("vocabmap: the token data could not be read:", err); });
