// vocabmap's map.html, second part: the panel (search, selection and its neighbours), the
// legend with its colour switch, and the URL fragment (#token=…&color=…&view=cx,cy,width).

S.ui = () => {
  const fixed = `position: fixed; z-index: 10; font: 13px ${FONT_STACK}; `;
  const box = (id, css) => { const el = $("div", fixed + css); el.id = id; return el; };
  S.tip = box("vocabmap-tip", "display: none; pointer-events: none; padding: 2px 6px; "
    + "background: #ffffe0; border: 1px solid #888;");
  S.ring = box("vocabmap-ring", "display: none; pointer-events: none; width: 10px; "
    + "height: 10px; border: 2px solid black; border-radius: 50%;");
  S.status = box("vocabmap-status", "left: 8px; bottom: 4px; font-size: 12px; "
    + "padding: 1px 6px; background: rgba(255, 255, 255, 0.8); pointer-events: none;");
  const panel = box("vocabmap-panel", "left: 8px; top: 36px; width: 270px; "
    + "background: rgba(255, 255, 255, 0.92); border: 1px solid #bbb; padding: 6px;");
  const input = $("input", "width: 180px;", panel);
  Object.assign(input, {id: "search", type: "search", placeholder: "find a token…",
                        autocomplete: "off", spellcheck: false});
  const label = $("label", "margin-left: 6px; font-size: 11px;", panel);
  const cs = $("input", "", label);
  Object.assign(cs, {id: "search-case", type: "checkbox", title: "match case"});
  label.append(" Aa");
  S.results = $("div", "max-height: 240px; overflow-y: auto; margin-top: 4px;", panel);
  S.results.id = "search-results";
  S.panel = $("div", "max-height: 360px; overflow-y: auto; margin-top: 4px;", panel);
  S.panel.id = "neighbours";
  const run = () => S.search(input.value, cs.checked);
  input.addEventListener("input", run);
  cs.addEventListener("change", run);
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && S.found && S.found.length) S.select(S.found[0], true);
    if (ev.key === "Escape") { input.value = ""; run(); }
  });
  S.legendBox = box("vocabmap-legend", "right: 44px; top: 36px; padding: 6px; "
    + "background: rgba(255, 255, 255, 0.92); border: 1px solid #bbb;");
  const pick = $("select", "margin-bottom: 4px;", S.legendBox);
  pick.id = "color-by";
  for (const c of S.colourings) $("option", "", pick).textContent = c.name;
  pick.onchange = () => S.recolour(pick.value);
  S.pick = pick;
  S.legend(S.colour);
  window.addEventListener("hashchange", () => S.readHash(false));
};

// ---- search: exact, then prefix, then substring matches of display text or raw token ----
const LIMIT = 50;
S.search = (query, matchCase) => {
  const t0 = performance.now(), q = matchCase ? query : query.toLowerCase();
  S.results.textContent = "";
  S.found = [];
  if (!q) { S.stats.search_ms = performance.now() - t0; return; }
  if (!matchCase && !S.lower) {
    S.lower = S.text.map((t) => t.toLowerCase());
    S.rawLower = new Map([...S.raw].map(([i, r]) => [i, r.toLowerCase()]));
  }
  const texts = matchCase ? S.text : S.lower, raws = matchCase ? S.raw : S.rawLower;
  const groups = [[], [], []];  // exact, prefix, substring
  const rank = (t) => (t === q ? 0 : t.startsWith(q) ? 1 : t.includes(q) ? 2 : 3);
  let total = 0;
  for (let i = 0; i < S.n; i++) {
    const r = rank(texts[i]);
    if (r < 3) { total++; if (groups[r].length < LIMIT) groups[r].push(i); }
  }
  for (const [i, raw] of raws) {  // raw tokens that read differently (##ing, Ġworld)
    const r = Math.min(rank(raw), rank(texts[i]));
    if (r < 3 && rank(texts[i]) === 3) { total++; if (groups[r].length < LIMIT) groups[r].push(i); }
  }
  S.found = groups.flatMap((g) => g.sort((a, b) => S.id[a] - S.id[b])).slice(0, LIMIT);
  for (const i of S.found) {
    const row = $("div", "cursor: pointer; white-space: nowrap; overflow: hidden; "
      + "text-overflow: ellipsis;", S.results);
    row.className = "result"; row.dataset.row = i;
    const raw = S.raw.get(i);
    $("b", "", row).textContent = S.text[i];
    $("span", "color: #666", row).textContent = (raw !== undefined ? `  ${raw}` : "")
      + `  · ${S.category(i)} · id ${S.id[i]}`;
    row.onclick = () => S.select(i, true);
  }
  const note = $("div", "color: #666; font-size: 11px", S.results);
  note.textContent = total > S.found.length
    ? `${total.toLocaleString()} matches, first ${S.found.length} shown` : `${total} matches`;
  S.stats.search_ms = performance.now() - t0;
  S.stats.search_total = total;
};
S.category = (i) => {
  const c = S.colourings.find((x) => x.name === "category") || S.colourings[0];
  return c.kind === "categorical" ? (c.levels[c.values[i]] ?? "—") : "";
};

// ---- selection: highlight, centre, list its neighbours in the original space ----
S.mapNeighbours = (i, k) => {  // the k nearest tokens on the map (2-D), by brute force
  const bd = new Float64Array(k).fill(Infinity), bi = new Int32Array(k).fill(-1);
  for (let j = 0; j < S.n; j++) {
    if (j === i) continue;
    const d = (S.x[j] - S.x[i]) ** 2 + (S.y[j] - S.y[i]) ** 2;
    if (d >= bd[k - 1]) continue;
    let p = k - 1;
    while (p > 0 && bd[p - 1] > d) { bd[p] = bd[p - 1]; bi[p] = bi[p - 1]; p--; }
    bd[p] = d; bi[p] = j;
  }
  return new Set(bi);
};
S.select = (i, centre) => {
  S.sel = i; S.notice = "";
  const k = S.k, list = [];
  const onMap = k ? S.mapNeighbours(i, k) : new Set();
  let code = 0;
  for (let r = 0; r < k; r++) {
    const j = S.nbr[i * k + r];
    code = r === 0 ? S.sim[i * k] : code - S.sim[i * k + r];
    if (j < S.n) list.push({row: j, sim: code * S.simUnit, map: onMap.has(j)});
  }
  marks.data = {x: [S.x[i], ...list.map((e) => S.x[e.row])],
                y: [S.y[i], ...list.map((e) => S.y[e.row])],
                size: [16, ...list.map(() => 9)],
                colour: ["#000000", ...list.map((e) => (e.map ? "#d62728" : "#555555"))]};
  S.markLabels.data = {x: [S.x[i]], y: [S.y[i]], text: [S.text[i]]};
  const p = S.panel;
  p.textContent = "";
  const head = $("div", "margin: 4px 0; border-top: 1px solid #ccc; padding-top: 4px", p);
  $("b", "", head).textContent = S.text[i];
  head.append(`  · ${S.category(i)} · id ${S.id[i]}`);
  const clear = $("span", "float: right; cursor: pointer; color: #888", head);
  clear.textContent = "✕"; clear.title = "clear the selection";
  clear.onclick = (ev) => { ev.stopPropagation(); S.unselect(); };
  if (k) {
    $("div", "color: #666; font-size: 11px", p).textContent =
      `${k} nearest in the model's space (cosine); ● also a neighbour on the map`;
    const ol = $("ol", "margin: 2px 0; padding-left: 22px", p);
    for (const e of list) {
      const li = $("li", "cursor: pointer", ol);
      li.className = "neighbour";
      Object.assign(li.dataset, {row: e.row, id: S.id[e.row], sim: e.sim.toFixed(4),
                                 map: e.map ? "1" : "0"});
      $("span", "", li).textContent = S.text[e.row];
      $("span", "color: #666; margin-left: 6px", li).textContent = e.sim.toFixed(3);
      $("span", "margin-left: 6px; color: #d62728", li).textContent = e.map ? "●" : "○";
      li.onclick = () => S.select(e.row, true);
    }
  }
  if (centre) S.centre(i);
  S.stats.selected = S.text[i];
  S.writeHash();
};
S.unselect = () => {
  S.sel = undefined; S.panel.textContent = "";
  marks.data = {x: [], y: [], size: [], colour: []};
  S.markLabels.data = {x: [], y: [], text: []};
  S.writeHash();
};
S.setView = (cx, cy, w) => {
  const bbox = S.frame(), h = w * (bbox ? bbox.height / bbox.width : 1);
  // as a tool does: the data ranges then stop following the data (a recolour)
  fig.x_range.have_updated_interactively = true; fig.y_range.have_updated_interactively = true;
  fig.x_range.setv({start: cx - w / 2, end: cx + w / 2});
  fig.y_range.setv({start: cy - h / 2, end: cy + h / 2});
};
S.centre = (i) => {  // keep the zoom, but close enough to see the neighbourhood
  const g = S.grid, w = Math.min(fig.x_range.end - fig.x_range.start, (g.gx1 - g.gx0) / 6);
  S.setView(S.x[i], S.y[i], w);
};

// ---- the URL fragment: token (display text, then raw token), id, colouring, view ----
S.find = (t) => {
  let i = S.text.indexOf(t);
  if (i < 0) for (const [r, raw] of S.raw) if (raw === t && (i < 0 || r < i)) i = r;
  return i;
};
S.readHash = (first) => {
  const h = location.hash.replace(/^#/, "");
  if (!h || h === S.written) return;
  const p = {};
  for (const part of h.split("&")) {
    const at = part.indexOf("="), key = at < 0 ? part : part.slice(0, at);
    const raw = at < 0 ? "" : part.slice(at + 1);
    try { p[key] = decodeURIComponent(raw); } catch (err) { p[key] = raw; }
  }
  if (p.color !== undefined && p.color !== S.colour.name
      && S.colourings.some((c) => c.name === p.color)) S.recolour(p.color);
  const view = (p.view || "").split(",").map(Number);
  if (view.length === 3 && view.every(Number.isFinite) && view[2] > 0) S.setView(...view);
  let i = -1;
  if (p.id !== undefined) i = Array.prototype.indexOf.call(S.id, Number(p.id));
  if (i < 0 && p.token !== undefined) i = S.find(p.token);
  if (i >= 0) S.select(i, !(view.length === 3));
  else if (p.token !== undefined) {  // said in the status line until a token is selected
    S.notice = `no token ${JSON.stringify(p.token)} in this map`;
    S.schedule();
  }
  if (first) S.stats.hash = {token: p.token, found: i >= 0};
};
S.writeHash = () => {
  if (!S.n) return;
  clearTimeout(S.hashTimer);
  S.hashTimer = setTimeout(() => {
    const parts = [];
    if (S.sel !== undefined) {
      const i = S.sel;
      parts.push(`token=${encodeURIComponent(S.text[i])}`);
      if (S.find(S.text[i]) !== i) parts.push(`id=${S.id[i]}`);
    }
    if (S.colour !== S.colourings[0]) parts.push(`color=${encodeURIComponent(S.colour.name)}`);
    const x0 = fig.x_range.start, x1 = fig.x_range.end, y0 = fig.y_range.start, y1 = fig.y_range.end;
    const f = (v) => Number(v.toPrecision(6));
    parts.push(`view=${f((x0 + x1) / 2)},${f((y0 + y1) / 2)},${f(x1 - x0)}`);
    S.written = parts.join("&");
    try { history.replaceState(null, "", `#${S.written}`); }
    catch (err) { location.replace(`#${S.written}`); }
  }, 150);
};
