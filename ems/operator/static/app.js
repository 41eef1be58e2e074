// The operator dashboard: the status and the samples of the chosen range fetched together and
// painted at once, then live samples, status and events over SSE.
"use strict";

const $ = id => document.getElementById(id);
const esc = v => String(v).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const W = w => {
  if (w === null || w === undefined || !isFinite(w)) return "—";
  const a = Math.abs(w);
  if (a >= 1e6) return (w / 1e6).toFixed(2) + " MW";
  if (a >= 1e3) return (w / 1e3).toFixed(a >= 1e5 ? 0 : 1) + " kW";
  return w.toFixed(0) + " W";
};
const pct = f => (f === null || f === undefined) ? "—" : (f * 100).toFixed(1) + " %";
const MODE = {grid_following: "GFL", grid_forming: "GFM", standby: "standby"};
// each unit its own colour, dash and width, so that units given the same power all stay visible
const UNIT_STYLES = [
  {color: "#58a6ff", dash: [], width: 4.5},
  {color: "#f778ba", dash: [9, 5], width: 2},
  {color: "#3fb950", dash: [2, 4], width: 2.5},
  {color: "#e3b341", dash: [12, 4, 3, 4], width: 2},
  {color: "#a371f7", dash: [5, 3], width: 2},
  {color: "#39c5cf", dash: [1, 3], width: 3},
  {color: "#ff7b72", dash: [14, 6], width: 1.5},
  {color: "#d2a8ff", dash: [6, 2, 1, 2], width: 2},
];
// the codes of the grid connection's limits, with what each means (ems/model/reasons.py)
const SMOOTHING_CODES = {
  RIDE_THROUGH: "a grid disturbance inside the ride-through curve: the site stays connected, the battery holds",
  RAMP_LIMITED: "the grid connection's ramp limit holds the battery: the grid may not move faster",
  JOB_RAMP: "an announced job start or stop the battery cannot take: its racks ramp at their share of the limit",
  GPU_SMOOTHING: "GPU power floors and ramps engaged: the battery alone cannot hold the swing",
  FILLER_LOAD: "the filler load burns what the battery cannot absorb of a drop of the site's load",
  SMOOTHING_CLIPPED: "the battery's bounds clip the smoothing: part of the swing reaches the grid",
  SMOOTHING_ACTIVE: "the fast loop moves the battery to keep training swings off the grid",
};
const RANGES = [300, 900, 3600, 21600, 86400, 0];  // site seconds; 0: all the server keeps
const MAX_POINTS = 1500;  // asked of the server for a range; the live buffer is refetched at twice that

// exposed for the browser tests and for anyone poking at the page
const ems = window.ems = {samplesReceived: 0, statusReceived: 0, eventsReceived: 0, lastSeq: 0, status: null,
  params: [], firstPaintMs: null, rangeS: 3600, view: () => view, csv: () => csvText()};

let samples = [];  // what the charts have: the chosen range's window, then live samples
let bufferSeq = 0;  // the newest sequence number in `samples`
let view = [];  // the samples in view
let unitIds = [];
let refetching = false;

const charts = {
  grid: new TimeChart($("c-grid"), {legend: $("l-grid"), series: gridSeries(null, false)}),
  racks: new TimeChart($("c-racks"), {legend: $("l-racks"), noValues: "no sample with every rack's telemetry fresh", series: [
    {key: s => s.racks_w, label: "rack load, all racks reporting (band: min to max between samples)", color: "#3fb950", width: 2,
      band: [s => s.racks_min_w, s => s.racks_max_w]},
  ]}),
  batt: new TimeChart($("c-batt"), {legend: $("l-batt"), series: []}),
  soc: new TimeChart($("c-soc"), {legend: $("l-soc"), axis: "percent", yMin: 0, yMax: 1, series: []}),
};
ems.charts = charts;

// the grid chart: with a ramp limit, the import it allows as a band under the grid, and the
// meter's average import where it has one (what the limit holds; an instant reading catches a
// training swing mid-way); without one, neither is drawn nor named
function gridSeries(ramp, average) {
  const env = ramp ? [{key: null, label: `ramp envelope: the import the limit allows (${W(ramp.limit_w)} in ${ramp.window_s} s)`,
    color: "#d29922", band: [s => s.ramp_lo_w, s => s.ramp_hi_w]}] : [];
  const avg = average ? [{key: s => s.grid_avg_w, label: "grid import, the meter's average", color: "#e6edf3", width: 2}] : [];
  return [...env,
    {key: s => s.grid_w, label: "grid import (band: highest between samples)", color: "#58a6ff", width: 2,
      band: [s => s.grid_w, s => s.grid_max_w]},
    ...avg,
    {key: s => s.cap_w, label: "import cap", color: "#f85149", dash: [6, 4], width: 1.5},
    {key: s => s.site_load_w, label: "import without the battery", color: "#8b98a5", dash: [2, 3], width: 1.5},
  ];
}

let gridShape = "";
function setGridSeries() {
  const sm = ems.status && ems.status.smoothing;
  const ramp = sm && sm.ramp ? sm.ramp : null;
  const average = samples.some(s => s.grid_avg_w !== null && s.grid_avg_w !== undefined);
  const shape = JSON.stringify([ramp && [ramp.limit_w, ramp.window_s], average]);
  if (shape === gridShape) return;
  gridShape = shape;
  charts.grid.setSeries(gridSeries(ramp, average));
  $("h-grid").textContent = ramp ? "Grid import vs cap and ramp envelope" : "Grid import vs cap";
}

// the band RMS, where the site's fast loop measures it: made when the site first shows it
function ensureRmsChart() {
  if (charts.rms) return;
  $("panel-rms").classList.remove("hidden");
  charts.rms = new TimeChart($("c-rms"), {legend: $("l-rms"), yMin: 0, series: [
    {key: s => s.grid_rms_w, label: "grid, with the battery", color: "#58a6ff", width: 2.5},
    {key: s => s.load_rms_w, label: "site without the battery", color: "#8b98a5", dash: [2, 3], width: 2},
    {key: s => s.rms_limit_w, label: "oscillation limit", color: "#f85149", dash: [6, 4], width: 1.5},
  ]});
  render();
}

function setUnits(ids) {
  if (ids.join() === unitIds.join()) return;
  unitIds = ids;
  const style = i => UNIT_STYLES[i % UNIT_STYLES.length];
  charts.batt.setSeries([
    ...ids.map((u, i) => ({key: s => s.units[u] ? s.units[u].power_w : null, label: u, ...style(i)})),
    {key: s => s.setpoint_w, label: "site setpoint (all units)", color: "#e6edf3", dash: [1, 3], width: 1.5},
  ]);
  charts.soc.setSeries(ids.map((u, i) => ({key: s => s.units[u] ? s.units[u].soc : null, label: u, ...style(i)})));
}

// --- the samples in view -----------------------------------------------------------------------
function render() {
  const last = samples.length ? samples[samples.length - 1] : null;
  if (last) setUnits(Object.keys(last.units));
  const t1 = last ? last.ts : null;
  const from = last && ems.rangeS ? t1 - ems.rangeS : -Infinity;
  view = samples.filter(s => s.ts >= from);
  setGridSeries();
  const t0 = view.length ? view[0].ts : null;
  const empty = ems.status ? "no samples in this range yet" : "waiting for the first control period";
  for (const c of Object.values(charts)) c.setView(view, t0, t1, empty);
  const info = $("view-info");
  if (!view.length) { info.textContent = ""; return; }
  const shown = t1 - t0;
  const short = ems.rangeS && shown < ems.rangeS * 0.9 ? ` (no older samples kept${ems.rangeS > 600 ? " yet" : ""})` : "";
  info.textContent = `${SiteTime.near(t0, t1)} – ${SiteTime.time(t1)} ${SiteTime.zone} · ${SiteTime.span(shown)} shown${short} · ${view.length} samples`;
  // the rack swing over the last site minute (at least the last sample's own band)
  const recent = view.filter(s => s.ts >= t1 - 60);
  const lo = Math.min(...recent.map(s => s.racks_min_w ?? Infinity)), hi = Math.max(...recent.map(s => s.racks_max_w ?? -Infinity));
  $("t-swing").textContent = isFinite(lo) && isFinite(hi) ? `${W(lo)} … ${W(hi)}` : "none reported";
}

function onSamples(batch) {
  if (!batch.length) return;
  ems.lastSeq = Math.max(ems.lastSeq, batch[batch.length - 1].seq);
  ems.samplesReceived += batch.length;
  const fresh = batch.filter(s => s.seq > bufferSeq);
  if (!fresh.length) return;
  samples.push(...fresh);
  bufferSeq = fresh[fresh.length - 1].seq;
  if (ems.rangeS) {  // keep what the range shows (and a little before it)
    const from = samples[samples.length - 1].ts - ems.rangeS * 1.05;
    let i = 0;
    while (i < samples.length && samples[i].ts < from) i++;
    if (i) samples.splice(0, i);
  }
  if (samples.length > 2 * MAX_POINTS && !refetching) loadWindow().then(render);  // merged down again by the server
  render();
}

async function loadWindow() {
  refetching = true;
  try {
    const q = new URLSearchParams({points: String(MAX_POINTS)});
    if (ems.rangeS) q.set("range_s", String(ems.rangeS));
    const r = await fetch("/api/history?" + q);
    if (!r.ok) return false;
    const h = await r.json();
    // live samples that came while this was asked stay
    samples = h.samples.concat(samples.filter(s => s.seq > h.seq));
    bufferSeq = Math.max(h.seq, bufferSeq);
    ems.lastSeq = Math.max(ems.lastSeq, h.seq);
    return true;
  } finally {
    refetching = false;
  }
}

function setRange(rangeS, reload) {
  ems.rangeS = rangeS;
  try { localStorage.setItem("ems-range", String(rangeS)); } catch (err) { /* private mode */ }
  for (const b of document.querySelectorAll("#range button")) b.setAttribute("aria-pressed", String(Number(b.dataset.range) === rangeS));
  if (reload) loadWindow().then(render);
}

function initialRange() {
  const asked = new URLSearchParams(location.search).get("range");
  let stored = null;
  try { stored = localStorage.getItem("ems-range"); } catch (err) { /* private mode */ }
  for (const v of [asked === "all" ? "0" : asked, stored]) {
    if (v !== null && RANGES.includes(Number(v))) return Number(v);
  }
  return 3600;
}

$("range").addEventListener("click", ev => {
  const b = ev.target.closest("button[data-range]");
  if (b) setRange(Number(b.dataset.range), true);
});

// --- CSV of the samples in view, made here ------------------------------------------------------
function csvText() {
  const cell = v => {
    if (v === null || v === undefined || (typeof v === "number" && !isFinite(v))) return "";
    const t = String(v);
    return /[",\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
  };
  const head = ["time_utc", `site_time (${SiteTime.zone})`, "grid_import_w", "grid_import_max_w", "import_cap_w",
    "import_without_battery_w", "rack_load_w", "rack_load_min_w", "rack_load_max_w", "battery_w",
    "battery_setpoint_w", ...unitIds.flatMap(u => [`${u}_power_w`, `${u}_soc`]), "reason", "periods"];
  // the grid connection's columns where the site has them (a ramp limit, the meter's average, smoothing)
  const extra = [["grid_import_avg_w", "grid_avg_w"], ["ramp_allowed_low_w", "ramp_lo_w"], ["ramp_allowed_high_w", "ramp_hi_w"],
    ["grid_band_rms_w", "grid_rms_w"], ["load_band_rms_w", "load_rms_w"], ["oscillation_limit_w_rms", "rms_limit_w"],
    ["riding_through", "riding_through"]].filter(([, k]) => view.some(s => s[k] !== null && s[k] !== undefined));
  head.push(...extra.map(([h]) => h));
  const rows = view.map(s => [new Date(s.ts * 1000).toISOString(), SiteTime.dateTime(s.ts), s.grid_w, s.grid_max_w,
    s.cap_w, s.site_load_w, s.racks_w, s.racks_min_w, s.racks_max_w, s.battery_w, s.setpoint_w,
    ...unitIds.flatMap(u => [s.units[u] ? s.units[u].power_w : null, s.units[u] ? s.units[u].soc : null]),
    s.reason, s.periods, ...extra.map(([, k]) => s[k])]);
  return [head, ...rows].map(r => r.map(cell).join(",")).join("\n") + "\n";
}

$("csv").addEventListener("click", () => {
  if (!view.length) return;
  const blob = new Blob([csvText()], {type: "text/csv"});
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  const site = (ems.status && ems.status.site) || "ems";
  a.download = `${site}_${SiteTime.compact(view[0].ts)}_${SiteTime.compact(view[view.length - 1].ts)}.csv`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
});

// --- the status ------------------------------------------------------------------------------------
function firstPaint() {
  if (!document.body.classList.contains("booting")) return;
  document.body.classList.remove("booting");
  requestAnimationFrame(() => { if (ems.firstPaintMs === null) ems.firstPaintMs = performance.now(); });
}

function onStatus(s) {
  ems.status = s; ems.statusReceived += 1;
  const zone = SiteTime.setZone(s.time_zone);
  $("site-zone").textContent = zone;
  $("zone-note").textContent = zone;
  $("site").textContent = s.site;
  $("site-time").textContent = SiteTime.dateTime(s.ts);
  $("setpoint-reason").textContent = s.reason;
  $("decided-by").textContent = s.decided_by;
  $("t-grid").textContent = W(s.grid_power_w);
  $("t-cap").textContent = s.grid_import_cap_w === null ? "none in force" : W(s.grid_import_cap_w);
  const bar = $("t-grid-bar");
  if (s.grid_import_cap_w && s.grid_power_w !== null) {
    const f = s.grid_power_w / s.grid_import_cap_w;
    bar.style.width = Math.max(0, Math.min(100, f * 100)) + "%";
    bar.style.background = f > 1.0 ? "var(--err)" : f > 0.95 ? "var(--warn)" : "var(--ok)";
  } else bar.style.width = "0";
  renderPeak(s);
  $("t-racks").textContent = s.racks.stale < s.racks.count ? W(s.racks.reported_power_w) : "none reported";
  $("t-stale").textContent = `${s.racks.stale}/${s.racks.count}`;
  $("t-batt").textContent = W(s.battery_power_w);
  $("t-setp").textContent = W(s.battery_setpoint_w);
  $("tile-pv").classList.toggle("hidden", !s.pv);
  if (s.pv) $("t-pv").textContent = W(s.pv.power_w);
  $("tile-genset").classList.toggle("hidden", !s.genset);
  if (s.genset) {
    $("t-genset").textContent = W(s.genset.power_w);
    $("t-genset-sub").textContent = Object.entries(s.genset).filter(([k]) => k !== "power_w").map(([k, v]) => `${k} ${v}`).join(" · ");
  }
  $("t-loop").textContent = s.loop.duration_ms.toFixed(1) + " ms";
  $("t-late").textContent = s.loop.lateness_ms.toFixed(1) + " ms";
  $("t-overruns").textContent = s.loop.overruns;
  $("t-down").textContent = s.loop.devices_down.length ? s.loop.devices_down.join(", ") : "none";
  const op = s.operator || {};
  const maint = op.maintenance || {};
  $("units").innerHTML = Object.entries(s.units).map(([id, u], i) => {
    const st = UNIT_STYLES[i % UNIT_STYLES.length];
    const state = u.available ? '<span class="pill ok">available</span>' : `<span class="pill ${u.reason === "UNIT_MAINTENANCE" ? "warn" : "bad"}">${esc(u.reason)}</span>`;
    const soc = u.soc === null ? "—" : `<span class="socbar"><span style="width:${(u.soc * 100).toFixed(1)}%"></span></span>${pct(u.soc)}`;
    const inMaint = id in maint;
    const since = inMaint ? ` title="in maintenance since ${esc(SiteTime.dateTime(maint[id].since_wall_s))}: ${esc(maint[id].why)}"` : "";
    return `<tr><td class="unit">${dashSwatch(st.color, st.dash, st.width)}${esc(id)}</td><td${since}>${state}</td><td class="soc">${soc}</td><td class="num">${W(u.power_w)}</td><td class="num">${W(u.setpoint_w)}</td><td title="${esc(u.mode ?? "")}">${esc(MODE[u.mode] ?? u.mode ?? "—")}</td>` +
      `<td><button class="small secondary" data-unit="${esc(id)}" data-maint="${inMaint ? "off" : "on"}">${inMaint ? "to service" : "maint."}</button></td></tr>`;
  }).join("");
  $("policies").innerHTML = Object.entries(s.policies).map(([p, code]) =>
    `<tr class="${p === s.decided_by ? "decider" : ""}"><td>${esc(p)}</td><td><span class="code">${esc(code)}</span></td></tr>`).join("");
  $("overruled").textContent = s.overruled.length ? "overruled: " + s.overruled.join(", ") : "";
  renderPlan(s.plan);
  const f = op.force;
  const banner = $("force-banner");
  if (f) {
    const now = s.wall_now_s || s.ts;
    const left = Math.max(0, f.until_wall_s - now);
    // what the units were given, and what held it when it is not what was asked
    const g = s.forced;
    const held = g && g.held_by ? `${W(g.written_w)}, held there by ${g.held_by} (asked ${W(g.asked_w)})`
      : (f.mode === "zero" ? "0 W" : W(f.setpoint_w));
    banner.textContent = `Forced mode: battery at ${held}, by ${f.by} (${f.why}), until ` +
      `${SiteTime.near(f.until_wall_s, now)} ${SiteTime.zone} (${SiteTime.span(left)} left)`;
    banner.classList.toggle("clamped", !!(g && g.held_by));
    banner.classList.remove("hidden");
  } else banner.classList.add("hidden");
  $("actions-disabled").classList.toggle("hidden", s.actions_enabled !== false);
  renderSmoothing(s);
  firstPaint();
}

// the grid connection's limits: the codes in force with what they mean, the ramp's allowed
// range now, the band RMS against the limit; and a banner while the site rides through a dip
function renderSmoothing(s) {
  const sm = s.smoothing, fo = s.failover || {};
  const riding = fo.riding_through || (s.reason === "RIDE_THROUGH" ? "grid" : null);
  const banner = $("ride-banner");
  banner.classList.toggle("hidden", !riding);
  if (riding) {
    banner.textContent = `Riding through a ${riding} disturbance (RIDE_THROUGH): the site stays connected ` +
      `and the battery holds its power; only a disturbance beyond the curve islands`;
  }
  $("tile-smoothing").classList.toggle("hidden", !sm);
  setGridSeries();
  if (!sm) return;
  // the grid connection's codes only (the fast loop says IDLE when it has nothing to add)
  const codes = [...new Set([riding ? "RIDE_THROUGH" : null, s.reason, sm.jobs && sm.jobs.reason, sm.gpu, sm.reason]
    .filter(c => c in SMOOTHING_CODES))];
  $("t-smooth").textContent = codes.length ? codes.join(" · ") : "none binding";
  $("t-smooth-why").textContent = codes.length ? SMOOTHING_CODES[codes[0]] || ""
    : "the grid's limits hold without the battery's help this period";
  const r = sm.ramp;
  let ramp = "no ramp limit";
  if (r) {
    const a = r.allowed_w;
    const now = !a ? "no grid value in its window yet" : a[0] > a[1] ? "window restarting"
      : `${W(a[0])} … ${W(a[1])} allowed now`;
    ramp = `ramp limit ${W(r.limit_w)} in ${r.window_s} s · ${now}`;
    const m = r.measured;  // the meter against the limit since the controller started
    if (m) ramp += m.episodes ? ` · metered over it ${m.exceeded_s.toFixed(0)} s in ${m.episodes} episode` +
      `${m.episodes === 1 ? "" : "s"} (worst ${W(m.worst_w)})` : " · metered: never over it";
  }
  $("t-ramp").textContent = ramp;
  const fast = sm.grid_band_rms_w !== null && sm.grid_band_rms_w !== undefined;
  $("t-rms").textContent = !fast ? "no fast loop: band RMS not measured" :
    `band RMS ${W(sm.grid_band_rms_w)} grid · ${W(sm.load_band_rms_w)} without the battery · ` +
    (sm.oscillation_limit_w_rms ? `limit ${W(sm.oscillation_limit_w_rms)}` : "no limit set");
  if (fast) ensureRmsChart();
}

function renderPeak(s) {
  const mp = s.month_peak || {};
  $("t-month").textContent = mp.month || "";
  const iv = mp.interval_s || 900;
  const ivName = iv % 60 === 0 ? `${iv / 60}-min` : `${iv} s`;
  $("t-peak15-label").textContent = `${ivName} billing demand`;
  const since = mp.interval_start_wall_s ? ` since ${SiteTime.near(mp.interval_start_wall_s, s.ts).replace(/:\d\d$/, "")}` : "";
  const open = mp.interval_average_w !== null && mp.interval_average_w !== undefined ? ` · this interval${since}: ${W(mp.interval_average_w)}` : "";
  if (mp.peak_demand_15min_w > 0) {
    $("t-peak15").textContent = W(mp.peak_demand_15min_w);
    $("t-peak15-sub").textContent = `highest completed ${ivName} average${open}`;
  } else {
    $("t-peak15").textContent = "none yet";
    $("t-peak15-sub").textContent = `no ${ivName} interval with import completed this month${open}`;
  }
  if (mp.peak_import_w !== null && mp.peak_import_w !== undefined) {
    $("t-peak").textContent = W(mp.peak_import_w);
    $("t-peak-sub").textContent = `one period, at ${SiteTime.near(mp.peak_at_wall_s, s.ts)} (since the server started)`;
  } else {
    $("t-peak").textContent = "none yet";
    $("t-peak-sub").textContent = "no import measured this month since the server started";
  }
}

function renderPlan(plan) {
  const el = $("plan");
  if (!plan) { el.textContent = "no arbitrage planner on this site"; el.className = "muted"; return; }
  el.className = "";
  if (!plan.plan) { el.textContent = `no plan yet (solves ${plan.solves}, failures ${plan.failures}${plan.error ? ", " + plan.error : ""})`; return; }
  const p = plan.plan;
  const rows = p.schedule.map(r => `<tr><td>${esc(r.start.replace("T", " "))}</td><td>${W(r.battery_w)}</td><td>${pct(r.soc_end)}</td><td>${W(r.import_cap_w)}</td></tr>`).join("");
  el.innerHTML = `<div class="sub">age ${p.age_s.toFixed(0)} s · expected savings ${p.expected_savings} · solve ${p.solve_time_ms} ms</div>` +
    `<table class="grid-table"><thead><tr><th>hour</th><th>battery</th><th>SoC at end</th><th>import cap</th></tr></thead><tbody>${rows}</tbody></table>`;
}

// --- events: any event's data rendered generically; times as site times; a `timeline` as bars ------
const seenEvents = new Set();
let oldestEventId = null;

// a value of an event's data as a person reads it: epoch seconds (`..._wall_s`, or any `..._s` that
// can only be a date) as the site's date and time
function dataValue(k, v) {
  if (typeof v === "number" && (/wall_s$/.test(k) || (/_s$/.test(k) && v > 1e9 && v < 1e11))) return SiteTime.dateTime(v);
  if (Array.isArray(v)) return "[" + v.map(x => dataValue(k, x)).join(", ") + "]";
  if (v !== null && typeof v === "object") return "{" + Object.entries(v).map(([k2, v2]) => `${k2} ${dataValue(k2, v2)}`).join(", ") + "}";
  return String(v);
}

function timelineHtml(tl) {
  const rows = tl.filter(e => e && typeof e === "object");
  if (!rows.length) return "";
  const num = (e, keys) => { for (const k of keys) if (typeof e[k] === "number") return e[k]; return null; };
  const start = e => num(e, ["sent_ms", "start_ms", "at_ms", "t_ms"]) ?? 0;
  const end = e => num(e, ["ack_ms", "end_ms", "done_ms", "at_ms", "t_ms"]) ?? start(e);
  const max = Math.max(1e-3, ...rows.map(end));
  return `<div class="timeline">` + rows.map(e => {
    const label = [e.device, e.action, e.step, e.name, e.what].filter(x => x !== undefined && x !== null).join(" ") || "step";
    const a = start(e), b = end(e);
    return `<div class="row"><span>${esc(label)}</span><div class="track"><div class="seg ${e.error ? "err" : ""}" style="left:${(a / max * 100).toFixed(2)}%;width:${(Math.max(b - a, 0) / max * 100).toFixed(2)}%" title="${esc(e.error || "")}"></div></div><span>${e.error ? "error" : b.toFixed(2) + " ms"}</span></div>`;
  }).join("") + `</div>`;
}

function eventHtml(e) {
  const d = e.data || {};
  const kv = Object.entries(d).filter(([k]) => k !== "timeline").map(([k, v]) =>
    `${esc(k)} <b>${esc(dataValue(k, v))}</b>`).join(" · ");
  return `<li data-id="${e.id}"><div class="head"><span class="kind">${esc(e.kind)}</span>` +
    (e.reason ? `<span class="code">${esc(e.reason)}</span>` : "") +
    `<span class="muted">#${e.id} · ${SiteTime.dateTime(e.wall_s)}</span></div>` +
    (kv ? `<div class="kv">${kv}</div>` : "") + (Array.isArray(d.timeline) ? timelineHtml(d.timeline) : "") + `</li>`;
}

function addEvents(events, {prepend}) {
  const kind = $("e-kind").value;
  const list = $("events");
  const html = [];
  for (const e of events) {
    if (seenEvents.has(e.id) || (kind && e.kind !== kind)) continue;
    seenEvents.add(e.id);
    html.push(eventHtml(e));
    if (oldestEventId === null || e.id < oldestEventId) oldestEventId = e.id;
  }
  if (!html.length) return;
  list.insertAdjacentHTML(prepend ? "afterbegin" : "beforeend", html.join(""));
}

async function loadEvents(reset) {
  const q = new URLSearchParams({limit: "30"});
  if (!reset && oldestEventId !== null) q.set("before_id", oldestEventId);
  if ($("e-kind").value) q.set("kind", $("e-kind").value);
  const r = await fetch("/api/events?" + q);
  if (reset) { $("events").innerHTML = ""; seenEvents.clear(); oldestEventId = null; }
  if (r.ok) addEvents((await r.json()).events, {prepend: false});
}

// --- operator actions ------------------------------------------------------------------------
$("token").value = sessionStorage.getItem("ems-token") || "";
$("token").addEventListener("change", () => sessionStorage.setItem("ems-token", $("token").value.trim()));

function showMessage(ok, text) {
  const m = $("msg");
  m.className = "msg " + (ok ? "ok" : "err");
  m.textContent = text;
}

async function act(path, body) {
  const token = $("token").value.trim();
  const headers = {"Content-Type": "application/json"};
  if (token) headers.Authorization = "Bearer " + token;
  let r;
  try {
    r = await fetch("/api/actions/" + path, {method: "POST", headers, body: JSON.stringify(body)});
  } catch (err) {
    showMessage(false, "Refused: the controller cannot be reached (" + err + ")");
    return null;
  }
  const data = await r.json().catch(() => ({error: r.statusText, detail: []}));
  if (!r.ok) {
    const detail = (data.detail || []).join("\n");
    showMessage(false, `Refused (${r.status}): ${data.error}${detail && !data.error.includes(detail) ? "\n" + detail : ""}`);
    return null;
  }
  showMessage(true, `Applied ${data.applies || ""}: event #${data.event.id} (${data.event.data.action})`);
  addEvents([data.event], {prepend: true});
  return data;
}

function paramInfo() {
  const p = ems.params.find(x => x.name === $("p-name").value);
  if (!p) { $("p-info").textContent = ""; return; }
  const sc = p.schema, b = [];
  if (sc.minimum !== undefined) b.push(`≥ ${sc.minimum}`);
  if (sc.exclusiveMinimum !== undefined) b.push(`> ${sc.exclusiveMinimum}`);
  if (sc.maximum !== undefined) b.push(`≤ ${sc.maximum}`);
  if (sc.exclusiveMaximum !== undefined) b.push(`< ${sc.exclusiveMaximum}`);
  const o = p.override;
  const over = o ? ` · overridden by ${o.by} (${o.why})${o.revert_at_wall_s ? " until " + SiteTime.dateTime(o.revert_at_wall_s) : ""}` : "";
  $("p-info").textContent = `now ${JSON.stringify(p.value)} · site file ${JSON.stringify(p.configured)}${b.length ? " · bounds " + b.join(", ") : ""}${over}${sc.description ? " · " + sc.description : ""}`;
}

async function loadParams() {
  const r = await fetch("/api/params");
  if (!r.ok) return;
  ems.params = (await r.json()).params;
  const sel = $("p-name"), keep = sel.value;
  sel.innerHTML = ems.params.map(p => `<option value="${esc(p.name)}">${esc(p.name.replace(/^policies\./, ""))}</option>`).join("");
  if (keep) sel.value = keep;
  paramInfo();
}
$("p-name").addEventListener("change", paramInfo);

function parseValue(text) {
  const t = text.trim();
  if (t === "true" || t === "false") return t === "true";
  if (t === "null" || t === "") return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : t;  // a non-number goes to the server as is, and is refused there
}

$("f-param").addEventListener("submit", async ev => {
  ev.preventDefault();
  const body = {param: $("p-name").value, value: parseValue($("p-value").value), reason: $("p-reason").value};
  if ($("p-revert").value) body.revert_after_s = Number($("p-revert").value);
  if (await act("set-param", body)) loadParams();
});
$("p-reset").addEventListener("click", async () => {
  if (await act("reset-param", {param: $("p-name").value, reason: $("p-reason").value})) loadParams();
});
$("f-force").addEventListener("submit", async ev => {
  ev.preventDefault();
  const mode = $("f-mode").value, reason = $("f-reason").value;
  const body = mode === "auto" ? {mode, reason} : {mode, timeout_s: Number($("f-timeout").value), reason};
  if (mode === "setpoint") body.setpoint_w = Number($("f-setpoint").value);
  await act("force-mode", body);
});
$("units").addEventListener("click", async ev => {
  const b = ev.target.closest("button[data-unit]");
  if (!b) return;
  const reason = prompt(`Why ${b.dataset.maint === "on" ? "put " + b.dataset.unit + " in maintenance" : "return " + b.dataset.unit + " to service"}?`);
  if (reason === null) return;
  await act("maintenance", {unit: b.dataset.unit, in_maintenance: b.dataset.maint === "on", reason});
});
$("e-kind").addEventListener("change", () => loadEvents(true));
$("e-more").addEventListener("click", () => loadEvents(false));

// --- live stream -------------------------------------------------------------------------------
function setConn(on, text) {
  $("conn-dot").className = "dot " + (on ? "on" : "off");
  $("conn-text").textContent = text;
}

function connect() {
  const src = new EventSource("/api/stream?since=" + ems.lastSeq);
  src.addEventListener("open", () => setConn(true, "live"));
  src.addEventListener("samples", m => onSamples(JSON.parse(m.data)));
  src.addEventListener("status", m => onStatus(JSON.parse(m.data)));
  src.addEventListener("event", m => { ems.eventsReceived += 1; addEvents([JSON.parse(m.data)], {prepend: true}); });
  src.addEventListener("error", () => {
    setConn(false, "reconnecting…");
    src.close();
    setTimeout(connect, 1000);  // resume from the last sample seen
  });
}

async function fetchStatus() {
  const r = await fetch("/api/status");
  if (r.ok) return r.json();
  if (r.status === 503) return null;  // no control period has run yet
  throw new Error(`status ${r.status}`);
}

(async function start() {
  setRange(initialRange(), false);
  // status and samples together, then one paint from both; the rest after it
  const [st, win] = await Promise.allSettled([fetchStatus(), loadWindow()]);
  if (st.status === "fulfilled" && st.value) {
    onStatus(st.value);  // sets the site's zone before anything shows a time
    render();
  } else {
    $("boot").textContent = st.status === "fulfilled" ? "Waiting for the first control period…"
      : "The controller cannot be reached; retrying…";
    if (win.status === "fulfilled") render();
  }
  connect();  // its first status message ends a wait for the first period
  await Promise.allSettled([loadParams(), loadEvents(true)]);
})();
