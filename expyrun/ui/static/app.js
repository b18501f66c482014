// The runs viewer's page (expyrun ui, SPEC 11.3). Every text that came from a run (names, config
// values, tags, logs, texts) is put in the page with textContent, never as HTML; names given to
// plotly (which reads a little HTML in titles and legends) are escaped first (plotlyText).
"use strict";

const state = {
  runs: [],            // rows of /api/runs, as shown
  byPath: new Map(),   // path -> row
  selected: new Set(), // paths of selected runs
  version: null,
  sort: { key: null, descending: false },
  where: "",
  series: new Map(),   // "path\0name" -> {steps, values, count}
  names: new Map(),    // path -> [metric names]
  tab: "runs",
  runPage: null,       // path of the run whose page is shown
  busy: false,
};

const STATUS_ACTIVE = new Set(["running", "queued", "prepared"]);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

let plotlyLoaded = null;

function loadPlotly() {
  // plotly.js (4 MB, from the installed plotly package) is loaded when the first chart is drawn:
  // the table of runs does not wait for it
  if (!plotlyLoaded) {
    plotlyLoaded = new Promise((resolve, reject) => {
      const script = el("script", { src: "/static/plotly.min.js" });
      script.addEventListener("load", resolve);
      script.addEventListener("error", () => reject(new Error("plotly.min.js could not be loaded")));
      document.head.append(script);
    });
  }
  return plotlyLoaded;
}

function plotlyText(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

function q(params) {
  return new URLSearchParams(params).toString();
}

// --- the Runs tab ---------------------------------------------------------------------------------

function metricColumns() {
  const names = new Set();
  for (const row of state.runs) for (const name of Object.keys(row.metrics)) names.add(name);
  return [...names].sort().slice(0, 12);
}

function differsColumns() {
  const keys = new Set();
  for (const row of state.runs) for (const key of Object.keys(row.differs)) keys.add(key);
  return [...keys].sort().slice(0, 12);
}

function cellValue(row, key) {
  if (key.startsWith("metric.")) return row.metrics[key.slice(7)];
  if (key.startsWith("config.")) return row.config[key.slice(7)];
  if (key === "duration") return row.duration_s;
  if (key === "tags") return row.tags.join(" ");
  return row[key];
}

function compare(a, b) {
  const missingA = a === undefined || a === null || a === "-", missingB = b === undefined || b === null || b === "-";
  if (missingA || missingB) return missingA === missingB ? 0 : missingA ? 1 : -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

function orderedRows() {
  let rows = state.runs.slice();
  const { key, descending } = state.sort;
  if (key) {
    rows.sort((a, b) => {
      const va = cellValue(a, key), vb = cellValue(b, key);
      const missing = (v) => v === undefined || v === null || v === "-";
      if (missing(va) || missing(vb)) return compare(va, vb); // missing last either way
      return descending ? compare(vb, va) : compare(va, vb);
    });
  }
  // runs of a sweep or study together, under their group, in the order their first run comes
  const groups = new Map();
  const out = [];
  for (const row of rows) {
    const group = row.group ? `${row.group.kind}\0${row.group.key}` : null;
    if (group === null) { out.push({ row }); continue; }
    if (!groups.has(group)) { groups.set(group, []); out.push({ group: row.group, members: groups.get(group) }); }
    groups.get(group).push(row);
  }
  return out;
}

function renderTable() {
  const table = document.getElementById("runs");
  const metrics = metricColumns(), differs = differsColumns();
  const columns = [
    ["", null], ["run", "path"], ["status", "status"], ["started", "started"], ["duration", "duration"],
    ["result", "result"], ["tags", "tags"],
    ...differs.map((k) => [k, `config.${k}`]),
    ...metrics.map((m) => [`metric.${m}`, `metric.${m}`]),
  ];
  const head = el("tr");
  for (const [title, key] of columns) {
    const arrow = key && state.sort.key === key ? (state.sort.descending ? " ▼" : " ▲") : "";
    const th = el("th", { text: title + arrow });
    if (key) {
      th.dataset.key = key;
      th.addEventListener("click", () => {
        state.sort = { key, descending: state.sort.key === key ? !state.sort.descending : false };
        renderTable();
      });
    }
    head.append(th);
  }
  const all = el("input", { type: "checkbox", className: "select-all", title: "select every run shown" });
  all.checked = state.runs.length > 0 && state.runs.every((row) => state.selected.has(row.path));
  all.addEventListener("change", () => {
    for (const row of state.runs) if (all.checked) state.selected.add(row.path); else state.selected.delete(row.path);
    for (const box of table.querySelectorAll("tr.run input.select")) box.checked = all.checked;
    select(null, false);
  });
  head.firstChild.append(all);
  table.tHead.replaceChildren(head);
  const body = document.createDocumentFragment();
  const addRun = (row, member) => {
    const tr = el("tr", { className: `run${member ? " member" : ""}` });
    tr.dataset.path = row.path;
    const box = el("input", { type: "checkbox", className: "select" });
    box.checked = state.selected.has(row.path);
    box.addEventListener("change", () => select(row.path, box.checked));
    tr.append(el("td", {}, box));
    tr.append(el("td", {}, el("a", { href: `#run=${encodeURIComponent(row.path)}`, text: row.path, className: "run-link" })));
    tr.append(el("td", { text: row.status, className: `status status-${row.status}` }));
    for (const text of [row.started, row.duration, row.result, row.tags.join(" ")]) tr.append(el("td", { text: text ?? "" }));
    for (const key of differs) tr.append(el("td", { text: shown(row.differs[key]) }));
    for (const name of metrics) tr.append(el("td", { text: shown(row.metrics[name]) }));
    body.append(tr);
  };
  for (const item of orderedRows()) {
    if (item.row) { addRun(item.row, false); continue; }
    const label = `${item.group.kind} ${item.group.key} (${item.members.length} run${item.members.length === 1 ? "" : "s"})`;
    const tr = el("tr", { className: "group" }, el("td"), el("td", { text: label, colspan: String(columns.length - 1) }));
    tr.dataset.group = item.group.key;
    body.append(tr);
    for (const row of item.members) addRun(row, true);
  }
  table.tBodies[0].replaceChildren(body);
  document.getElementById("count").textContent = `${state.runs.length} runs`;
}

function shown(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(6).replace(/\.?0+(e|$)/, "$1");
  return String(value);
}

function select(path, on) {
  if (path !== null) { if (on) state.selected.add(path); else state.selected.delete(path); }
  document.getElementById("selection").textContent = `${state.selected.size} selected`;
  if (state.tab !== "runs") showTab(state.tab);
}

// the table is asked for as soon as this script runs, before the page has finished loading
let firstTable = getJSON("/api/runs?where=&version=");

async function refreshRuns() {
  const asked = firstTable || getJSON(`/api/runs?${q({ where: state.where, version: state.version || "" })}`);
  firstTable = null;
  const answer = await asked;
  document.getElementById("root").textContent = answer.root;
  if (answer.unchanged || answer.version === state.version) return false;
  document.getElementById("where-error").textContent = answer.error || "";
  const before = state.byPath;
  state.version = answer.version;
  state.runs = answer.runs;
  state.byPath = new Map(answer.runs.map((row) => [row.path, row]));
  fillGroupBy();
  renderTable();
  // a selected run that was running and ended: read its curves once more
  for (const path of state.selected) {
    const old = before.get(path), now = state.byPath.get(path);
    if (old && now && old.status !== now.status) forget(path);
  }
  return true;
}

function forget(path) {
  state.names.delete(path);
  for (const key of [...state.series.keys()]) if (key.startsWith(`${path}\0`)) state.series.delete(key);
}

function fillGroupBy() {
  const menu = document.getElementById("group-by");
  const keys = new Set();
  for (const row of state.runs) for (const key of Object.keys(row.config)) keys.add(key);
  const current = menu.value;
  const options = [el("option", { value: "", text: "(each run)" })];
  for (const key of [...keys].sort()) options.push(el("option", { value: key, text: key }));
  menu.replaceChildren(...options);
  menu.value = keys.has(current) ? current : "";
}

// --- curves ---------------------------------------------------------------------------------------

function isActive(path) {
  const row = state.byPath.get(path);
  return row ? STATUS_ACTIVE.has(row.status) : false;
}

async function namesOf(path) {
  if (!state.names.has(path) || isActive(path)) state.names.set(path, await getJSON(`/api/names?${q({ run: path })}`));
  return state.names.get(path);
}

async function seriesOf(path, name) {
  const key = `${path}\0${name}`;
  if (!state.series.has(key) || isActive(path)) state.series.set(key, await getJSON(`/api/series?${q({ run: path, name })}`));
  return state.series.get(key);
}

function smooth(values, weight) {
  if (!weight) return values;
  const out = [];
  let last = 0, count = 0;
  for (const v of values) {
    if (v === null) { out.push(null); continue; }
    last = last * weight + (1 - weight) * v;
    count += 1;
    out.push(last / (1 - Math.pow(weight, count))); // an exponential moving average, debiased (TensorBoard's)
  }
  return out;
}

function interpolate(steps, values, at) {
  // value of a run at step `at` (linear between its points), null outside its range
  if (!steps.length || at < steps[0] || at > steps[steps.length - 1]) return null;
  let lo = 0, hi = steps.length - 1;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (steps[mid] <= at) lo = mid; else hi = mid; }
  if (steps[lo] === at || hi === lo) return values[lo];
  if (values[lo] === null || values[hi] === null) return null;
  return values[lo] + (values[hi] - values[lo]) * (at - steps[lo]) / (steps[hi] - steps[lo]);
}

function random(seed) {
  let s = seed >>> 0;
  return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 4294967296; };
}

function bootstrap(values, draws, next) {
  // mean and the 2.5% / 97.5% quantiles of the means of `draws` resamples of `values`
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return [mean, mean, mean];
  const means = new Float64Array(draws);
  for (let d = 0; d < draws; d++) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += values[(next() * n) | 0];
    means[d] = sum / n;
  }
  means.sort();
  return [mean, means[Math.floor(0.025 * (draws - 1))], means[Math.ceil(0.975 * (draws - 1))]];
}

function groupTraces(name, runs, key, weight) {
  const groups = new Map();
  for (const { path, data } of runs) {
    const row = state.byPath.get(path);
    const value = row ? row.config[key] : undefined;
    const label = `${key}=${value === undefined ? "(none)" : value}`;
    if (!groups.has(label)) groups.set(label, []);
    groups.get(label).push(data);
  }
  const traces = [];
  let index = 0;
  for (const [label, members] of groups) {
    const grid = [...new Set(members.flatMap((m) => m.steps))].sort((a, b) => a - b);
    const step = Math.max(1, Math.ceil(grid.length / 1000));
    const xs = [], mean = [], low = [], high = [];
    const next = random(12345);
    for (let i = 0; i < grid.length; i += step) {
      const at = grid[i];
      const found = members.map((m) => interpolate(m.steps, smooth(m.values, weight), at)).filter((v) => v !== null);
      if (!found.length) continue;
      const [m, l, h] = bootstrap(found, 200, next);
      xs.push(at); mean.push(m); low.push(l); high.push(h);
    }
    const colour = COLOURS[index++ % COLOURS.length];
    const shownLabel = plotlyText(`${label} (n=${members.length})`);
    traces.push({ x: xs, y: high, mode: "lines", line: { width: 0, color: colour }, showlegend: false, hoverinfo: "skip", legendgroup: shownLabel });
    traces.push({ x: xs, y: low, mode: "lines", line: { width: 0, color: colour }, fill: "tonexty", fillcolor: colour + "33", showlegend: false, hoverinfo: "skip", legendgroup: shownLabel });
    traces.push({ x: xs, y: mean, mode: "lines", name: shownLabel, line: { color: colour }, legendgroup: shownLabel,
      hovertemplate: "step %{x}<br>mean %{y:.10g}<extra>%{fullData.name}</extra>" });
  }
  return traces;
}

const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

async function drawCharts(container, paths, groupKey) {
  await loadPlotly();
  const perRun = await Promise.all(paths.map(async (path) => ({ path, names: await namesOf(path) })));
  const names = [...new Set(perRun.flatMap((r) => r.names))].sort();
  const known = new Set(names);
  for (const chart of [...container.querySelectorAll(".chart")]) if (!known.has(chart.dataset.metric)) chart.remove();
  // every curve asked at once (the server answers on several threads), each chart drawn when its curves came
  const curves = names.map((name) => Promise.all(perRun.filter((r) => r.names.includes(name))
    .map(async ({ path }) => ({ path, data: await seriesOf(path, name) }))));
  for (const [index, name] of names.entries()) {
    const runs = await curves[index];
    let chart = [...container.querySelectorAll(".chart")].find((c) => c.dataset.metric === name);
    if (!chart) chart = makeChart(container, name);
    chart.runs = runs;
    chart.groupKey = groupKey;
    plot(chart);
  }
  if (!names.length) container.replaceChildren(el("p", { text: paths.length ? "the selected runs logged no metrics" : "select runs in the Runs tab", className: "hint" }));
  else for (const p of [...container.querySelectorAll("p.hint")]) p.remove();
}

function makeChart(container, name) {
  const log = el("input", { type: "checkbox", className: "log" });
  const smoothing = el("input", { type: "range", min: "0", max: "0.99", step: "0.01", value: "0", className: "smoothing" });
  const plotDiv = el("div", { className: "plot" });
  const chart = el("div", { className: "chart" },
    el("h3", { text: name, className: "chart-title" }),
    el("label", { text: " log scale " }, log), el("label", { text: " smoothing " }, smoothing), plotDiv);
  chart.dataset.metric = name;
  log.addEventListener("change", () => plot(chart));
  smoothing.addEventListener("input", () => plot(chart));
  container.append(chart);
  return chart;
}

function plot(chart) {
  const weight = Number(chart.querySelector(".smoothing").value);
  const log = chart.querySelector(".log").checked;
  const traces = chart.groupKey
    ? groupTraces(chart.dataset.metric, chart.runs, chart.groupKey, weight)
    : chart.runs.map(({ path, data }, i) => ({
        x: data.steps, y: smooth(data.values, weight), mode: "lines", name: plotlyText(path),
        line: { color: COLOURS[i % COLOURS.length] },
        hovertemplate: "step %{x}<br>value %{y:.10g}<extra>%{fullData.name}</extra>",
      }));
  const layout = {
    title: { text: plotlyText(chart.dataset.metric) }, margin: { l: 50, r: 10, t: 30, b: 40 },
    yaxis: { type: log ? "log" : "linear" }, xaxis: { title: { text: "step" } }, legend: { orientation: "h", y: -0.25 },
    uirevision: "keep",
  };
  Plotly.react(chart.querySelector(".plot"), traces, layout, { displaylogo: false, responsive: true });
}

// --- Text and Figures tabs ------------------------------------------------------------------------

function slider(items, show) {
  // items: [[step, thing], ...] by step; a range input choosing one, the last shown first
  const label = el("span");
  const range = el("input", { type: "range", min: "0", max: String(items.length - 1), value: String(items.length - 1), className: "step-slider" });
  const update = () => { const [step, thing] = items[Number(range.value)]; label.textContent = ` step ${step}`; show(thing); };
  range.addEventListener("input", update);
  return { node: el("div", {}, range, label), update };
}

async function renderTexts() {
  const container = document.getElementById("texts");
  const cards = [];
  for (const path of state.selected) {
    const texts = await getJSON(`/api/texts?${q({ run: path })}`);
    for (const [tag, items] of Object.entries(texts)) {
      const pre = el("pre", { className: "text" });
      const { node, update } = slider(items, (text) => { pre.textContent = text; });
      cards.push(el("div", { className: "card" }, el("strong", { text: `${path} · ${tag}` }), node, pre));
      update();
    }
  }
  container.replaceChildren(...(cards.length ? cards : [el("p", { text: "the selected runs logged no text", className: "hint" })]));
}

async function renderFigures() {
  await loadPlotly();
  const container = document.getElementById("figures");
  const cards = [];
  for (const path of state.selected) {
    const figures = await getJSON(`/api/figures?${q({ run: path })}`);
    for (const [tag, items] of Object.entries(figures)) {
      const view = el("div", { className: "figure" });
      const { node, update } = slider(items, async (file) => {
        const url = `/api/file?${q({ run: path, path: file })}`;
        if (file.endsWith(".png")) { view.replaceChildren(el("img", { src: url, alt: `${tag}` })); return; }
        const figure = await getJSON(url);
        const div = el("div", { className: "plot" });
        view.replaceChildren(div);
        Plotly.newPlot(div, figure.data || [], figure.layout || {}, { displaylogo: false });
      });
      cards.push(el("div", { className: "card" }, el("strong", { text: `${path} · ${tag}` }), node, view));
      update();
    }
  }
  container.replaceChildren(...(cards.length ? cards : [el("p", { text: "the selected runs logged no figures", className: "hint" })]));
}

// --- a run's page ---------------------------------------------------------------------------------

async function renderRun(path) {
  const page = await getJSON(`/api/run?${q({ run: path })}`);
  const record = page.record;
  document.getElementById("run-title").textContent = page.path;
  document.getElementById("run-status").textContent = `status: ${record.status} · started ${record.started_at || "-"} · duration ${record.duration_s ?? "-"} s`;
  document.getElementById("run-tags").textContent = page.tags.length ? `tags: ${page.tags.join(" ")}` : "";
  document.getElementById("run-note").textContent = page.note ? `note: ${page.note}` : "";
  const log = document.getElementById("run-log");
  const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.textContent = page.log;
  if (atEnd) log.scrollTop = log.scrollHeight;
  const sections = [];
  const parts = { ...record, requirements: page.requirements };
  for (const key of ["exception", "config", "result", "git", "requirements", "trial"]) {
    if (parts[key] === undefined || parts[key] === null) continue;
    sections.push(el("h4", { text: key }), el("pre", { text: typeof parts[key] === "string" ? parts[key] : JSON.stringify(parts[key], null, 2) }));
  }
  sections.push(el("h4", { text: "run.json" }), el("pre", { text: JSON.stringify(record, null, 2) }));
  document.getElementById("run-record").replaceChildren(...sections);
  renderTrials(page);
  state.names.set(path, page.metrics);
  const charts = document.getElementById("run-charts");
  if (state.runPage !== path) charts.replaceChildren();
  state.runPage = path;
  const row = state.byPath.get(path);
  if (row) row.status = record.status;
  await drawCharts(charts, [path], "");
  return record.status;
}

function renderTrials(page) {
  const box = document.getElementById("run-trials");
  if (!page.trials) { box.replaceChildren(); return; }
  const params = [...new Set(page.trials.flatMap((t) => Object.keys(t.params)))].sort();
  const head = el("tr", {}, ...["trial", "state", "values", ...params].map((t) => el("th", { text: t })));
  const rows = page.trials.map((t) => {
    const link = t.path ? el("a", { href: `#run=${encodeURIComponent(t.path)}`, text: String(t.number) }) : String(t.number);
    return el("tr", { className: "trial" }, el("td", {}, link), el("td", { text: String(t.state) }),
      el("td", { text: typeof t.values === "object" ? JSON.stringify(t.values) : shown(t.values) }),
      ...params.map((p) => el("td", { text: shown(typeof t.params[p] === "object" ? JSON.stringify(t.params[p]) : t.params[p]) })));
  });
  const parts = [el("h3", { text: `trials (${page.trials.length})` }), el("table", { className: "trials" }, el("thead", {}, head), el("tbody", {}, ...rows))];
  if (page.dashboard) parts.push(el("p", { className: "hint", text: `optuna-dashboard of this study: expyrun dashboard ${state.rootText || ""}/${page.path}` }));
  box.replaceChildren(...parts);
}

// --- tabs and the live loop -----------------------------------------------------------------------

async function showTab(tab) {
  state.tab = tab;
  for (const section of document.querySelectorAll("section.tab")) section.hidden = section.id !== `tab-${tab}`;
  for (const link of document.querySelectorAll("header nav a")) link.classList.toggle("active", link.dataset.tab === tab);
  if (tab === "scalars") await drawCharts(document.getElementById("charts"), [...state.selected], document.getElementById("group-by").value);
  if (tab === "text") await renderTexts();
  if (tab === "figures") await renderFigures();
}

async function route() {
  const hash = decodeURIComponent(location.hash.slice(1));
  if (hash.startsWith("run=")) { await showTab("run"); await renderRun(hash.slice(4)); return; }
  await showTab(["scalars", "text", "figures"].includes(hash) ? hash : "runs");
}

async function tick() {
  if (state.busy) return;
  state.busy = true;
  try {
    await refreshRuns();
    if (state.tab === "scalars" && [...state.selected].some(isActive)) await showTab("scalars");
    if (state.tab === "run" && state.runPage && isActive(state.runPage)) await renderRun(state.runPage);
  } catch (error) {
    document.getElementById("where-error").textContent = String(error.message || error);
  } finally {
    state.busy = false;
  }
}

async function start() {
  document.getElementById("query").addEventListener("submit", (event) => {
    event.preventDefault();
    state.where = document.getElementById("where").value.split(";").map((s) => s.trim()).filter(Boolean).join("\n");
    state.version = null;
    tick();
  });
  document.getElementById("group-by").addEventListener("change", () => showTab("scalars"));
  window.addEventListener("hashchange", route);
  await refreshRuns();
  // once the table is shown, plotly.js (1-2 s to evaluate) is loaded while the user picks runs
  setTimeout(() => loadPlotly().catch(() => {}), 0);
  state.rootText = document.getElementById("root").textContent;
  await route();
  setInterval(tick, 1000);
}

window.addEventListener("DOMContentLoaded", start);
