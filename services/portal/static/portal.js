// sciplat portal: query, table, plots, images and the all-sky view. Talks to /api/... (JSON)
// and listens on a Firefly channel for what notebooks push (show_table, show_fits_image, ...).
"use strict";
const P = window.PORTAL_PREFIX;
const $ = (id) => document.getElementById(id);
const S = { me: null, result: null, offset: 0, limit: 100, sort: null, desc: false,
            filters: [], job: null, selRow: null, image: null, imageDataset: null,
            plot: null, zoom: 1, panX: 0, panY: 0, overlay: [], aladin: null };

function msg(text, err) { const m = $("msg"); m.textContent = text || ""; m.className = err ? "err" : ""; }

async function api(path, body, method) {
  const opts = { method: method || (body === undefined ? "GET" : "POST"),
                 credentials: "same-origin", headers: {} };
  if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  const r = await fetch(P + path, opts);
  const data = await r.json().catch(() => ({ message: "HTTP " + r.status }));
  if (!r.ok) { const e = new Error(data.message || ("HTTP " + r.status)); e.data = data; throw e; }
  return data;
}

// ---- tabs -----------------------------------------------------------------------------------
document.querySelectorAll(".tab").forEach((b) => b.onclick = () => showTab(b.dataset.tab));
function showTab(name) {
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".pane").forEach((p) => p.hidden = p.id !== "pane-" + name);
  if (name === "sky") initSky();
  if (name === "workspace") loadWorkspace();
}

// ---- query ----------------------------------------------------------------------------------
function showAdqlError(message, position) {
  const box = $("adql-error");
  box.hidden = !message;
  const where = position ? `line ${position.line}, column ${position.column}` : "";
  box.textContent = message ? (where && !message.includes(where) ? `${where}: ` : "") + message : "";
  if (position) {  // select the word at the position (TAP may point at its first or last letter)
    const text = $("adql").value, lines = text.split("\n");
    let at = 0;
    for (let i = 0; i < position.line - 1 && i < lines.length; i++) at += lines[i].length + 1;
    at = Math.min(text.length, at + Math.max(0, position.column - 1));
    let start = at, end = at;
    while (start > 0 && /\w/.test(text[start - 1])) start--;
    while (end < text.length && /\w/.test(text[end])) end++;
    $("adql").focus();
    $("adql").setSelectionRange(start, Math.max(end, start + 1));
  }
}

async function runQuery() {
  showAdqlError(null);
  const t0 = performance.now();
  $("run").disabled = true;
  try {
    const maxrec = $("maxrec").value === "" ? null : parseInt($("maxrec").value, 10);
    await followJob(await api("/api/query", { query: $("adql").value, maxrec }), t0);
    loadHistory();
  } catch (e) { showAdqlError(e.message, e.data && e.data.position); $("cancel").disabled = true; }
  finally { $("run").disabled = false; }
}
// Wait for a TAP job (Cancel aborts it), then show its result in the table.
async function followJob(job, t0) {
  S.job = job.job_id; $("cancel").disabled = false;
  while (["PENDING", "QUEUED", "EXECUTING"].includes(job.phase)) {
    $("job-status").textContent = `job ${job.job_id}: ${job.phase} (${((performance.now() - t0) / 1000).toFixed(1)} s)`;
    job = await api(`/api/jobs/${job.job_id}?wait=1`);
  }
  $("cancel").disabled = true;
  if (job.phase === "ERROR") { $("job-status").textContent = `job ${job.job_id}: ERROR`; showAdqlError(job.error, job.position); return; }
  if (job.phase === "ABORTED") { $("job-status").textContent = `job ${job.job_id}: cancelled`; return; }
  $("job-status").textContent = `job ${job.job_id}: ${job.phase}, loading result...`;
  const info = await api(`/api/jobs/${job.job_id}/load`, {});
  await refreshResults(info.id);
  $("job-status").textContent = `job ${job.job_id}: ${info.rows} rows, first rows shown after ${((performance.now() - t0) / 1000).toFixed(2)} s`;
}
// The deep link <portal>/?job=<job id or job URL> (the lab's "Open in portal"): that job of the
// user, its query in the editor and its result in the table.
async function openJobLink(ref) {
  showTab("query");
  try {
    const job = await api(`/api/joblink?ref=${encodeURIComponent(ref)}`);
    if (job.query) $("adql").value = job.query;
    if (job.phase === "PENDING") return msg(`Job ${job.job_id} has not been started (phase PENDING)`, true);
    await followJob(job, performance.now());
  } catch (e) { msg(e.message, true); $("job-status").textContent = "the linked job could not be opened"; }
}
$("run").onclick = runQuery;
$("cancel").onclick = async () => { if (S.job) { const j = await api(`/api/jobs/${S.job}/abort`, {}); $("job-status").textContent = `job ${S.job}: ${j.phase}`; } };
$("cone-go").onclick = () => {
  const t = $("cone-table").value, ra = parseFloat($("cone-ra").value), dec = parseFloat($("cone-dec").value), r = parseFloat($("cone-r").value);
  if ([ra, dec, r].some(isNaN)) return msg("Cone search needs numbers for RA, Dec and radius", true);
  $("adql").value = `SELECT * FROM ${t}\nWHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', ${ra}, ${dec}, ${r})) = 1`;
};
// an object name resolved from our catalogs (object id, obs_id) -> a cone search around it
$("cone-resolve").onclick = async () => {
  const name = $("cone-name").value.trim();
  if (!name) return msg("Type an object id or an obs_id to resolve", true);
  try {
    const r = await api(`/api/resolve?name=${encodeURIComponent(name)}`);
    $("cone-ra").value = r.ra.toFixed(6); $("cone-dec").value = r.dec.toFixed(6); $("cone-go").onclick();
    msg(`${r.name} (${r.table}): RA ${r.ra.toFixed(6)}, Dec ${r.dec.toFixed(6)}`);
  } catch (e) { msg(e.message, true); }
};
$("obj-go").onclick = () => {
  const id = parseInt($("obj-id").value, 10);
  if (isNaN(id)) return msg("The object id is a number", true);
  $("adql").value = `SELECT * FROM dp1.Object WHERE objectId = ${id}`;
};

async function loadSchema() {
  try {
    const schemas = await api("/api/schema");
    S.tables = {};
    for (const sc of schemas) for (const t of sc.tables) S.tables[t.name] = t.columns.map((c) => c.name);
    const box = $("schema"); box.innerHTML = "";
    for (const s of schemas) for (const t of s.tables) {
      const d = document.createElement("details");
      d.innerHTML = `<summary title="${esc(t.description || "")}">${esc(t.name)}</summary>`;
      d.querySelector("summary").ondblclick = () => { $("adql").value = `SELECT TOP 1000 * FROM ${t.name}`; };
      for (const c of t.columns) {
        const e = document.createElement("div"); e.className = "col";
        e.innerHTML = `${esc(c.name)} <span class="unit">${esc(c.datatype || "")} ${esc(c.unit || "")} ${esc(c.ucd || "")}</span>`;
        e.title = c.description || ""; e.onclick = () => insertAtCursor(c.name);
        d.appendChild(e);
      }
      box.appendChild(d);
    }
  } catch (e) { $("schema").textContent = e.message; }
}
function insertAtCursor(text) { const a = $("adql"); const p = a.selectionStart; a.value = a.value.slice(0, p) + text + a.value.slice(a.selectionEnd); }
async function loadHistory() {
  try {
    const items = await api("/api/history"); const box = $("history"); box.innerHTML = "";
    for (const h of items.slice(0, 30)) {
      const e = document.createElement("div");
      e.textContent = `${h.status} ${h.rows ?? ""} ${h.query.slice(0, 100)}`;
      e.onclick = () => { $("adql").value = h.query; };
      box.appendChild(e);
    }
  } catch (e) { $("history").textContent = e.message; }
}
function esc(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }

// ---- results table --------------------------------------------------------------------------
async function refreshResults(select) {
  const list = await api("/api/results");
  const sel = $("results"); sel.innerHTML = "";
  for (const r of list) { const o = document.createElement("option"); o.value = r.id; o.textContent = `${r.title} (${r.rows} rows)`; sel.appendChild(o); }
  if (select) sel.value = select;
  if (sel.value) await openResult(sel.value);
}
$("results").onchange = () => openResult($("results").value);
async function openResult(id) {
  S.result = await api(`/api/results/${id}`); S.offset = 0; S.sort = null; S.filters = []; S.selRow = null;
  S.selRows = []; S.lastPick = null; S.boxFilters = []; S.plot = null; $("plot").innerHTML = ""; $("plot-info").textContent = "";
  $("result-meta").textContent = `${S.result.rows} rows` + (S.result.job_id ? `, job ${S.result.job_id}` : "");
  $("notebook").disabled = !S.result.job_id;
  const names = S.result.columns.map((c) => c.name);
  const num = S.result.columns.filter((c) => /int|float|double/.test(c.type)).map((c) => c.name);
  if (!names.includes($("plot-x").value)) $("plot-x").value = num[1] || num[0] || "";
  if (!names.includes($("plot-y").value)) $("plot-y").value = num[2] || num[0] || "";
  if ($("plot-type").value === "lightcurve" && !names.includes("mjd")) $("plot-type").value = "scatter";
  buildHeader(); await loadPage();
}
function buildHeader() {
  const head = $("table").querySelector("thead"); head.innerHTML = "";
  const tr1 = document.createElement("tr"), tr2 = document.createElement("tr");
  for (const c of S.result.columns) {
    const th = document.createElement("th");
    th.textContent = c.name + (c.unit ? ` [${c.unit}]` : ""); th.title = (c.description || "") + " (click: sort; right-click: statistics)";
    th.onclick = () => { S.desc = S.sort === c.name ? !S.desc : false; S.sort = c.name; S.offset = 0; loadPage(); };
    th.oncontextmenu = (ev) => { ev.preventDefault(); showStats(c.name); };
    tr1.appendChild(th);
    const f = document.createElement("th"); const inp = document.createElement("input");
    inp.placeholder = "filter"; inp.dataset.col = c.name;
    inp.onchange = () => { S.filters = parseFilters(); S.offset = 0; loadPage(); if (S.plot) drawPlot(); };
    f.appendChild(inp); tr2.appendChild(f);
  }
  head.appendChild(tr1); head.appendChild(tr2);
}
function parseFilters() {
  const out = [];
  document.querySelectorAll("#table thead input").forEach((inp) => {
    const v = inp.value.trim(); if (!v) return;
    let m;
    if ((m = v.match(/^between\s+(\S+)\s+(\S+)$/i))) out.push({ column: inp.dataset.col, op: "between", value: [num(m[1]), num(m[2])] });
    else if ((m = v.match(/^(<=|>=|!=|=|<|>)\s*(.+)$/))) out.push({ column: inp.dataset.col, op: m[1], value: num(m[2]) });
    else if (/^is (not )?null$/i.test(v)) out.push({ column: inp.dataset.col, op: v.toLowerCase() });
    else out.push({ column: inp.dataset.col, op: "like", value: v.includes("%") ? v : `%${v}%` });
  });
  return out.concat(S.boxFilters || []);
}
function num(s) { const n = Number(s); return isNaN(n) ? s : n; }
async function loadPage() {
  if (!S.result) return;
  try {
    const t0 = performance.now();
    const page = await api(`/api/results/${S.result.id}/page`, { offset: S.offset, limit: S.limit, sort: S.sort, descending: S.desc, filters: S.filters });
    S.page = page;
    const body = $("table").querySelector("tbody"); body.innerHTML = "";
    page.rows.forEach((row, i) => {
      const tr = document.createElement("tr"); tr.dataset.idx = S.offset + i; tr.dataset.num = i;
      tr.innerHTML = row.map((v) => `<td>${v === null ? "" : esc(typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(8) : v)}</td>`).join("");
      tr.onclick = (ev) => pickRow(ev, tr, row, i);
      body.appendChild(tr);
    });
    $("pageinfo").textContent = ` rows ${page.total ? S.offset + 1 : 0}-${Math.min(S.offset + S.limit, page.total)} of ${page.total} (${(performance.now() - t0).toFixed(0)} ms) `;
    msg("");
  } catch (e) { msg(e.message, true); }
}
$("prev").onclick = () => { S.offset = Math.max(0, S.offset - S.limit); loadPage(); };
$("next").onclick = () => { if (S.page && S.offset + S.limit < S.page.total) { S.offset += S.limit; loadPage(); } };
async function showStats(col) {
  try {
    const s = await api(`/api/results/${S.result.id}/stats`, { column: col, filters: S.filters });
    $("stats").textContent = Object.entries(s).map(([k, v]) => `${k}=${typeof v === "number" ? +v.toPrecision(6) : v}`).join("  ");
  } catch (e) { msg(e.message, true); }
}
function rowObject(row) { const o = {}; S.result.columns.forEach((c, i) => o[c.name] = row[i]); return o; }
// click: one row; ctrl/cmd-click: add or remove a row; shift-click: a range of rows.
function pickRow(ev, tr, row, i) {
  const rows = [...$("table").querySelectorAll("tbody tr")];
  if (ev.shiftKey && S.lastPick != null) {
    const [a, b] = [Math.min(S.lastPick, i), Math.max(S.lastPick, i)];
    rows.forEach((r, k) => r.classList.toggle("sel", k >= a && k <= b));
  } else if (ev.ctrlKey || ev.metaKey) tr.classList.toggle("sel");
  else { rows.forEach((r) => r.classList.remove("sel")); tr.classList.add("sel"); }
  S.lastPick = i;
  S.selRows = rows.filter((r) => r.classList.contains("sel")).map((r) => rowObject(S.page.rows[+r.dataset.num]));
  selectRow(row, S.offset + i, i);
}
function selectRow(row, idx, num) {
  S.selRow = rowObject(row);
  if (S.ws && S.ws.readyState === 1) {  // Firefly's table.highlight event, for notebook listeners
    const tblId = (S.tblIds || {})[S.result.id] || S.result.id;
    S.ws.send(JSON.stringify({ name: "EXTENSION_ACTIVATE", tbl_id: tblId,
      data: { type: "table.highlight", row: { ...S.selRow, ROW_IDX: idx, ROW_NUM: num } } }));
  }
  $("cutout").disabled = !(S.imageDataset && skyOf(S.selRow));
  highlightSelection();
  if (S.selRow.access_url) { $("img-url").value = S.selRow.access_url; }
}
function skyOf(o) {
  for (const [a, b] of [["coord_ra", "coord_dec"], ["ra", "dec"], ["s_ra", "s_dec"]]) if (o[a] != null && o[b] != null) return [o[a], o[b]];
  return null;
}
for (const fmt of ["votable", "csv", "parquet"]) $("dl-" + fmt).onclick = () => { if (S.result) location.href = `${P}/api/results/${S.result.id}/download?format=${fmt}`; };
$("save").onclick = async () => {
  if (!S.result) return;
  const name = $("save-name").value.trim() || `result-${S.result.id}`, format = $("save-format").value;
  try {
    const r = await api(`/api/results/${S.result.id}/save`, { format, name, folder: S.wsPath ?? "portal" });
    msg(`saved to ${r.path}`); if (!$("pane-workspace").hidden) loadWorkspace();
  } catch (e) { msg(e.message, true); }
};
$("notebook").onclick = async () => {
  if (!S.result || !S.result.job_id) return;
  try { const r = await api("/api/notebook", { job_id: S.result.job_id }); msg(`notebook written to ${r.path}`); $("msg").innerHTML += ` <a id="nb-link" target="_blank" href="${r.lab_url}">open in the lab</a>`; } catch (e) { msg(e.message, true); }
};

// ---- plots: Bokeh documents made by HoloViews on the server (datashader above 20,000 points) --
// Linked selection: rows selected in the table are circled on the plot (and selected among its
// points); a box drawn with the plot's box-select tool becomes range filters on the table.
$("plot-go").onclick = () => { S.boxFilters = []; S.filters = parseFilters(); drawPlot(); };
$("plot-clear").onclick = () => { S.boxFilters = []; S.filters = parseFilters(); S.offset = 0; loadPage().then(() => msg("selection cleared")); };
$("plot-type").onchange = () => {
  const k = $("plot-type").value, names = S.result ? S.result.columns.map((c) => c.name) : [];
  const band = (b) => names.find((n) => n === `${b}_psfMag`) || names.find((n) => n === `${b}_psfFlux`);
  if (k === "cmd" && band("g") && band("r")) { $("plot-x").value = `${band("g")} - ${band("r")}`; $("plot-y").value = band("r"); }
  $("plot-y").disabled = k === "histogram";
};
async function drawPlot(ranges) {
  if (!S.result) return;
  const kind = $("plot-type").value;
  const body = { kind, x: $("plot-x").value.trim(), y: kind === "histogram" ? null : $("plot-y").value.trim(),
                 filters: S.filters, width: 640, height: 380 };
  if (ranges) { body.x_range = ranges.x; body.y_range = ranges.y; }
  try {
    const p = await api(`/api/results/${S.result.id}/bokeh`, body);
    p.xexpr = body.x; p.yexpr = body.y; p.result = S.result.id;
    S.embedding = true;
    const div = $("plot"); div.innerHTML = "";
    if (S.plotDoc) { const k = Bokeh.documents.indexOf(S.plotDoc); if (k >= 0) Bokeh.documents.splice(k, 1); }
    await Bokeh.embed.embed_item(p.item, "plot");
    S.plotDoc = Bokeh.documents[Bokeh.documents.length - 1];
    delete p.item; S.plot = p;
    highlightSelection();
    $("plot-info").textContent = `${p.kind}: ${p.n} ${p.kind === "histogram" ? "values" : "points"}` + (p.renderer === "raster" ? " (datashader image; zoom re-renders)" : "");
  } catch (e) { msg(e.message, true); }
  finally { setTimeout(() => { S.embedding = false; }, 300); }
}
function plotValue(row, expr) {
  if (!row || !expr) return null;
  const parts = expr.split(" - ");
  if (parts.length === 2) { const a = row[parts[0].trim()], b = row[parts[1].trim()]; return a == null || b == null ? null : a - b; }
  const v = row[expr.trim()]; return v == null ? null : v;
}
function highlightSelection() {
  const p = S.plot; if (!p || !S.plotDoc || !S.result || p.result !== S.result.id) return;
  const hl = S.plotDoc.get_model_by_name("highlight"); if (!hl) return;
  const xs = [], ys = [];
  if (p.kind !== "histogram") for (const r of (S.selRows || [])) {
    const x = plotValue(r, p.xexpr), y = plotValue(r, p.yexpr);
    if (x != null && y != null) { xs.push(x); ys.push(y); }
  }
  hl.data = { x: xs, y: ys };
  const pts = S.plotDoc.get_model_by_name("points");
  if (pts) {
    const px = pts.data.x, py = pts.data.y, idx = [];
    for (let i = 0; i < px.length; i++) for (let k = 0; k < xs.length; k++) if (px[i] === xs[k] && py[i] === ys[k]) idx.push(i);
    pts.selected.indices = idx;
  }
  S.highlighted = xs.length;
}
window.portalPlotEvent = (kind, g) => {
  const p = S.plot; if (!p || S.embedding) return;
  if (kind === "box") {
    const bf = [{ column: p.xexpr, op: "between", value: [Math.min(g.x0, g.x1), Math.max(g.x0, g.x1)] }];
    if (p.kind !== "histogram" && g.y0 != null) bf.push({ column: p.yexpr, op: "between", value: [Math.min(g.y0, g.y1), Math.max(g.y0, g.y1)] });
    S.boxFilters = bf; S.filters = parseFilters(); S.offset = 0;
    // after the page loads: loadPage clears the message line when it succeeds
    loadPage().then(() => msg(`selection: ${bf.length} range filter(s) applied to the table`));
  } else if (kind === "ranges" && p.renderer === "raster") {
    clearTimeout(S.rangeTimer);
    S.rangeTimer = setTimeout(() => drawPlot({ x: [Math.min(g.x0, g.x1), Math.max(g.x0, g.x1)], y: [Math.min(g.y0, g.y1), Math.max(g.y0, g.y1)] }), 400);
  }
};
$("lightcurve").onclick = async () => {
  // an Object's forced photometry (times from dp1.Visit), else its Sources; a DiaObject's
  // DiaSources
  const row = S.selRow || {};
  const has = (t, cols) => S.tables && S.tables[t] && cols.every((c) => S.tables[t].includes(c));
  if (row.objectId == null && row.diaObjectId == null) return msg("Select a row with an objectId or a diaObjectId first", true);
  const id = row.objectId ?? row.diaObjectId;
  if (row.objectId == null) {
    if (!has("dp1.DiaSource", ["diaObjectId", "midpointMjdTai", "psfFlux", "band"])) return msg("No dp1.DiaSource table with times in this catalog", true);
    $("adql").value = `SELECT band, midpointMjdTai AS mjd, psfFlux FROM dp1.DiaSource\nWHERE diaObjectId = ${id} ORDER BY mjd`;
  } else if (has("dp1.ForcedSource", ["objectId", "visit", "psfFlux"]) && has("dp1.Visit", ["visit", "expMidptMJD"]))
    $("adql").value = `SELECT f.band, v.expMidptMJD AS mjd, f.psfFlux\nFROM dp1.ForcedSource AS f JOIN dp1.Visit AS v ON f.visit = v.visit\nWHERE f.objectId = ${id} ORDER BY mjd`;
  else if (has("dp1.Source", ["objectId", "midpointMjdTai", "psfFlux"]))
    $("adql").value = `SELECT band, midpointMjdTai AS mjd, psfFlux FROM dp1.Source\nWHERE objectId = ${id} ORDER BY mjd`;
  else return msg("No forced-photometry table with times in this catalog", true);
  $("plot-x").value = "mjd"; $("plot-y").value = "psfFlux"; $("plot-type").value = "lightcurve";
  await runQuery(); await drawPlot();
};

// ---- images ---------------------------------------------------------------------------------
$("sia-go").onclick = async () => {
  try {
    const body = { ra: parseFloat($("sia-ra").value), dec: parseFloat($("sia-dec").value), radius: parseFloat($("sia-r").value) };
    if ($("sia-band").value) body.band = $("sia-band").value.trim();
    if ($("sia-t0").value || $("sia-t1").value) body.time = [parseFloat($("sia-t0").value || "0"), parseFloat($("sia-t1").value || "100000")];
    const info = await api("/api/sia", body); await refreshResults(info.id); msg(`${info.rows} images found; select a row, then Open`);
  } catch (e) { msg(e.message, true); }
};
// A readable name of an image search result row: its obs_id and band (else its title).
function imageName(o) {
  if (!o) return null;
  const band = o.lsst_band || o.band;
  return o.obs_id ? [o.obs_id, band].filter(Boolean).join(" ") : (o.obs_title || null);
}
$("img-open").onclick = async () => {
  try {
    const url = $("img-url").value, row = S.selRow && S.selRow.access_url === url ? S.selRow : null;
    const info = await api("/api/images", { url, title: imageName(row) });
    S.imageDataset = row && row.obs_publisher_did || null; S.imageName = imageName(row);
    await showImage(info);
  } catch (e) { msg(e.message, true); }
};
$("cutout").onclick = async () => {
  const sky = S.selRow && skyOf(S.selRow); if (!sky || !S.imageDataset) return;
  try { await showImage(await api("/api/images/cutout", { dataset_id: S.imageDataset, ra: sky[0], dec: sky[1], radius: 0.01, of: S.imageName })); } catch (e) { msg(e.message, true); }
};
async function showImage(info) {
  S.image = info; S.zoom = Math.min(600 / info.width, 600 / info.height); S.panX = 0; S.panY = 0; S.overlay = [];
  showTab("images"); await reloadImage();
}
async function reloadImage() {
  if (!S.image) return;
  const img = new Image(); img.src = `${P}/api/images/${S.image.id}/png?stretch=${$("stretch").value}&cmap=${$("cmap").value}`;
  try { await img.decode(); } catch (e) { return msg("The image could not be rendered", true); }
  S.imgEl = img; drawImage();
  $("img-title").textContent = `${S.image.title} (${S.image.width}x${S.image.height})`;
  msg(`image ${S.image.title} (${S.image.width}x${S.image.height})`);
}
$("stretch").onchange = reloadImage; $("cmap").onchange = reloadImage;
function drawImage() {
  const c = $("img-canvas"), g = c.getContext("2d"); g.fillStyle = "#000"; g.fillRect(0, 0, c.width, c.height);
  if (!S.imgEl) return;
  g.save(); g.translate(S.panX, S.panY); g.scale(S.zoom, S.zoom);
  g.imageSmoothingEnabled = false;
  g.drawImage(S.imgEl, 0, 0, S.image.width, S.image.height);
  g.strokeStyle = "#0f0"; g.lineWidth = 1.5 / S.zoom;
  for (const [x, y] of S.overlay) { g.beginPath(); g.arc(x + 0.5, S.image.height - 0.5 - y, 6 / S.zoom, 0, 7); g.stroke(); }
  g.restore();
}
(function imageMouse() {
  const c = $("img-canvas"); let drag = null, last = 0;
  c.onwheel = (e) => { e.preventDefault(); const f = e.deltaY < 0 ? 1.25 : 0.8; const r = c.getBoundingClientRect(); const mx = e.clientX - r.left, my = e.clientY - r.top;
    S.panX = mx - (mx - S.panX) * f; S.panY = my - (my - S.panY) * f; S.zoom *= f; drawImage(); };
  c.onmousedown = (e) => { drag = [e.clientX - S.panX, e.clientY - S.panY]; };
  c.onmouseup = () => { drag = null; };
  c.onmousemove = async (e) => {
    if (drag) { S.panX = e.clientX - drag[0]; S.panY = e.clientY - drag[1]; drawImage(); return; }
    if (!S.image || !S.image.has_wcs || Date.now() - last < 80) return; last = Date.now();
    const r = c.getBoundingClientRect(); const px = (e.clientX - r.left - S.panX) / S.zoom - 0.5, py = S.image.height - (e.clientY - r.top - S.panY) / S.zoom - 0.5;
    try { const w = await api(`/api/images/${S.image.id}/world?x=${px.toFixed(2)}&y=${py.toFixed(2)}`); $("img-readout").textContent = `x=${px.toFixed(1)} y=${py.toFixed(1)}  RA=${w.ra.toFixed(6)}  Dec=${w.dec.toFixed(6)}`; } catch (err) { $("img-readout").textContent = err.message; }
  };
})();
$("overlay").onclick = async () => {
  if (!S.image || !S.result) return msg("Open an image and a table first", true);
  try { const o = await api(`/api/images/${S.image.id}/overlay`, { result: S.result.id, filters: S.filters }); S.overlay = o.points; drawImage(); msg(`${o.points.length} sources on the image (${o.outside} outside)`); } catch (e) { msg(e.message, true); }
};

// ---- workspace (WebDAV as the user) ---------------------------------------------------------
S.wsPath = null;
function wsMsg(text, err) { const m = $("ws-msg"); m.textContent = text || ""; m.className = err ? "error" : ""; }
async function loadWorkspace(path) {
  try {
    const w = await api(`/api/workspace?path=${encodeURIComponent(path ?? S.wsPath ?? "")}`);
    S.wsPath = w.path; $("ws-path").textContent = "~/" + w.path;
    const body = $("ws-list").querySelector("tbody"); body.innerHTML = "";
    for (const e of w.entries) {
      const tr = document.createElement("tr");
      tr.innerHTML = `<td>${esc(e.name)}${e.folder ? "/" : ""}</td><td>${e.folder ? "" : e.size ?? ""}</td><td>${esc((e.modified || "").slice(0, 19))}</td><td></td>`;
      const b = document.createElement("button"); b.className = "ws-open"; b.dataset.path = e.path;
      b.textContent = e.folder ? "Open folder" : "Open";
      b.onclick = () => e.folder ? loadWorkspace(e.path) : openWorkspaceFile(e.path);
      tr.lastChild.appendChild(b); body.appendChild(tr);
    }
    return w;
  } catch (e) { wsMsg(e.message, true); }
}
$("ws-up").onclick = () => loadWorkspace((S.wsPath || "").split("/").slice(0, -1).join("/"));
$("ws-refresh").onclick = () => loadWorkspace();
$("ws-upload").onclick = async () => {
  const f = $("ws-file").files[0]; if (!f) return wsMsg("Choose a file first", true);
  const form = new FormData(); form.append("folder", S.wsPath || ""); form.append("file", f);
  wsMsg(`uploading ${f.name}...`);
  try {
    const r = await fetch(`${P}/api/workspace/upload`, { method: "POST", body: form, credentials: "same-origin" });
    const data = await r.json().catch(() => ({ message: "HTTP " + r.status }));
    if (!r.ok) throw new Error((data.error === "QuotaExceeded" ? "Upload refused: " : "") + data.message);
    await loadWorkspace(); wsMsg(`uploaded ~/${data.path} (${data.size} bytes)`);
  } catch (e) { wsMsg(e.message, true); }
};
async function openWorkspaceFile(path) {
  wsMsg(`opening ~/${path}...`);
  try {
    const r = await api("/api/workspace/open", { path });
    if (r.kind === "image") await showImage(r.image);
    else { await refreshResults(r.result.id); msg(`table ${r.result.title} from your workspace (${r.result.rows} rows)`); }
    wsMsg(`opened ~/${path}`);
  } catch (e) { wsMsg(e.message, true); }
}

// ---- all-sky view (Aladin Lite) -------------------------------------------------------------
async function initSky() {
  if (S.aladin || S.aladinFailed) return;
  const surveys = (S.me && S.me.hips_surveys) || [];
  const sel = $("hips-survey"); sel.innerHTML = surveys.map((s) => `<option>${esc(s)}</option>`).join("");
  try {
    const A = (await import(`${P}/aladin/aladin.js`)).default; await A.init;
    const base = location.origin + P + "/hips/" + (surveys[0] || "");
    S.aladin = A.aladin("#aladin", { fov: 60, projection: "AIT", showCooGrid: true, survey: base, cooFrame: "ICRS" });
    if (surveys[0]) S.aladin.setImageSurvey(S.aladin.createImageSurvey(surveys[0], surveys[0], base, "equatorial", 8, { imgFormat: "png" }));
    S.A = A; $("sky-msg").textContent = "";
  } catch (e) { S.aladinFailed = true; $("sky-msg").textContent = "All-sky view unavailable: " + (e.message || e); }
}
$("hips-survey").onchange = () => { if (S.aladin) { const s = $("hips-survey").value; S.aladin.setImageSurvey(S.aladin.createImageSurvey(s, s, location.origin + P + "/hips/" + s, "equatorial", 8, { imgFormat: "png" })); } };
$("sky-overlay").onclick = async () => {
  if (!S.aladin || !S.result) return;
  try {
    const o = await api(`/api/results/${S.result.id}/sky`, { filters: S.filters });
    const cat = S.A.catalog({ name: S.result.title, sourceSize: 8, color: "#00ff66" }); S.aladin.addCatalog(cat);
    cat.addSources(o.points.map(([ra, dec]) => S.A.source(ra, dec)));
    if (o.points.length) {
      const ras = o.points.map((q) => q[0]), decs = o.points.map((q) => q[1]);
      const span = Math.max(Math.max(...ras) - Math.min(...ras), Math.max(...decs) - Math.min(...decs));
      S.aladin.gotoRaDec((Math.max(...ras) + Math.min(...ras)) / 2, (Math.max(...decs) + Math.min(...decs)) / 2);
      S.aladin.setFoV(Math.min(180, Math.max(0.05, span * 2.5)));
    }
    $("sky-msg").textContent = `${o.points.length} sources overlaid`;
  } catch (e) { $("sky-msg").textContent = e.message; }
};
$("sky-query").onclick = () => {
  if (!S.aladin) return;
  const [ra, dec] = S.aladin.getRaDec(); const fov = S.aladin.getFov()[0];
  $("cone-ra").value = ra.toFixed(5); $("cone-dec").value = dec.toFixed(5); $("cone-r").value = Math.min(fov / 2, 10).toFixed(4);
  $("cone-go").onclick(); showTab("query");
};

// ---- Firefly channel: what notebooks push ---------------------------------------------------
function connectChannel(channel) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}${P}/sticky/firefly/events?channelID=${encodeURIComponent(channel)}&viewer=1`);
  ws.onmessage = async (ev) => {
    const m = JSON.parse(ev.data);
    if (m.name === "EVT_CONN_EST") { window.portalConnected = true; return; }
    try {
      if (m.kind === "table") { S.tblIds = S.tblIds || {}; S.tblIds[m.result.id] = m.tbl_id; await refreshResults(m.result.id); showTab("query"); msg(`table ${m.result.title} from a notebook`); }
      else if (m.kind === "image") { await showImage(m.image); }
      else if (m.kind === "plot") { await applyPushedPlot(m.plot); }
      else if (m.kind === "hips") { showTab("sky"); }
      ws.send(JSON.stringify({ name: "PORTAL_SHOWN", data: { kind: m.kind } }));
    } catch (e) { msg(e.message, true); }
  };
  ws.onclose = () => setTimeout(() => connectChannel(channel), 3000);
  S.ws = ws;
}
async function applyPushedPlot(p) {
  await refreshResults(p.result);
  $("plot-type").value = p.type; $("plot-x").value = p.x || ""; $("plot-y").value = p.y || "";
  await drawPlot();
}

(async function init() {
  try {
    S.me = await api("/api/me");
    $("who").textContent = S.me.user;
    const channel = new URLSearchParams(location.search).get("__wsch") || S.me.channel;
    connectChannel(channel);
    await Promise.all([loadSchema(), loadHistory(), refreshResults()]);
    const link = new URLSearchParams(location.search).get("job");
    if (link) await openJobLink(link);
  } catch (e) { msg(e.message, true); }
})();
