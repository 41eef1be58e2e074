// The operator dashboard: history on load, then live samples, status and events over SSE.
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
const axisW = v => Math.abs(v) >= 1e6 ? (v / 1e6).toFixed(2) + " MW" : (v / 1e3).toFixed(0) + " kW";
const pct = f => (f === null || f === undefined) ? "—" : (f * 100).toFixed(1) + " %";
const siteTime = ts => ts ? new Date(ts * 1000).toLocaleString([], {dateStyle: "medium", timeStyle: "medium"}) : "—";
const MODE = {grid_following: "GFL", grid_forming: "GFM", standby: "standby"};
const COLORS = ["#58a6ff", "#f778ba", "#3fb950", "#d29922", "#a371f7", "#39c5cf", "#ff7b72", "#e3b341"];

// exposed for the browser tests and for anyone poking at the page
const ems = window.ems = {samplesReceived: 0, statusReceived: 0, eventsReceived: 0, lastSeq: 0, status: null, params: []};

const charts = {
  grid: new TimeChart($("c-grid"), {legend: $("l-grid"), format: axisW, series: [
    {key: s => s.grid_w, label: "grid import", color: "#58a6ff", band: [s => s.grid_w, s => s.grid_max_w]},
    {key: s => s.cap_w, label: "cap", color: "#f85149", dash: true},
    {key: s => s.site_load_w, label: "without battery", color: "#8b98a5", dash: true},
  ]}),
  racks: new TimeChart($("c-racks"), {legend: $("l-racks"), format: axisW, series: [
    {key: s => s.racks_w, label: "rack load", color: "#3fb950", band: [s => s.racks_min_w, s => s.racks_max_w]},
  ]}),
  batt: new TimeChart($("c-batt"), {legend: $("l-batt"), format: axisW, series: []}),
  soc: new TimeChart($("c-soc"), {legend: $("l-soc"), format: v => (v * 100).toFixed(0) + " %", yMin: 0, yMax: 1, series: []}),
};
let unitIds = [];

function setUnits(ids) {
  if (ids.join() === unitIds.join()) return;
  unitIds = ids;
  charts.batt.setSeries([
    ...ids.map((u, i) => ({key: s => s.units[u] ? s.units[u].power_w : null, label: u, color: COLORS[i % COLORS.length]})),
    {key: s => s.setpoint_w, label: "site setpoint", color: "#e6edf3", dash: true},
  ], $("l-batt"));
  charts.soc.setSeries(ids.map((u, i) => ({key: s => s.units[u] ? s.units[u].soc : null, label: u, color: COLORS[i % COLORS.length]})), $("l-soc"));
}

function onSamples(samples) {
  if (!samples.length) return;
  setUnits(Object.keys(samples[samples.length - 1].units));
  ems.lastSeq = samples[samples.length - 1].seq;
  ems.samplesReceived += samples.length;
  for (const c of Object.values(charts)) c.push(samples);
  // the rack swing over the last minute of samples
  const recent = charts.racks.samples.slice(-240);
  const lo = Math.min(...recent.map(s => s.racks_min_w ?? Infinity)), hi = Math.max(...recent.map(s => s.racks_max_w ?? -Infinity));
  $("t-swing").textContent = isFinite(lo) && isFinite(hi) ? `${W(lo)} … ${W(hi)}` : "—";
}

function onStatus(s) {
  ems.status = s; ems.statusReceived += 1;
  $("site").textContent = s.site;
  $("site-time").textContent = siteTime(s.ts);
  $("setpoint-reason").textContent = s.reason;
  $("decided-by").textContent = s.decided_by;
  $("t-grid").textContent = W(s.grid_power_w);
  $("t-cap").textContent = W(s.grid_import_cap_w);
  const bar = $("t-grid-bar");
  if (s.grid_import_cap_w && s.grid_power_w !== null) {
    const f = s.grid_power_w / s.grid_import_cap_w;
    bar.style.width = Math.max(0, Math.min(100, f * 100)) + "%";
    bar.style.background = f > 1.0 ? "var(--err)" : f > 0.95 ? "var(--warn)" : "var(--ok)";
  } else bar.style.width = "0";
  const mp = s.month_peak || {};
  $("t-peak").textContent = W(mp.peak_import_w);
  $("t-peak15").textContent = W(mp.peak_demand_15min_w);
  $("t-month").textContent = mp.month || "—";
  $("t-racks").textContent = W(s.racks.reported_power_w);
  $("t-stale").textContent = `${s.racks.stale}/${s.racks.count}`;
  $("t-batt").textContent = W(s.battery_power_w);
  $("t-setp").textContent = W(s.battery_setpoint_w);
  if (s.pv) { $("t-pv").textContent = W(s.pv.power_w); $("t-pv-sub").textContent = "measured"; }
  if (s.genset) {
    $("t-genset").textContent = W(s.genset.power_w);
    $("t-genset-sub").textContent = Object.entries(s.genset).filter(([k]) => k !== "power_w").map(([k, v]) => `${k} ${v}`).join(" · ") || "—";
  }
  $("t-loop").textContent = s.loop.duration_ms.toFixed(1) + " ms";
  $("t-late").textContent = s.loop.lateness_ms.toFixed(1) + " ms";
  $("t-overruns").textContent = s.loop.overruns;
  $("t-down").textContent = s.loop.devices_down.length ? s.loop.devices_down.join(", ") : "none";
  const op = s.operator || {};
  const maint = op.maintenance || {};
  $("units").innerHTML = Object.entries(s.units).map(([id, u]) => {
    const state = u.available ? '<span class="pill ok">available</span>' : `<span class="pill ${u.reason === "UNIT_MAINTENANCE" ? "warn" : "bad"}">${esc(u.reason)}</span>`;
    const soc = u.soc === null ? "—" : `<span class="socbar"><span style="width:${(u.soc * 100).toFixed(1)}%"></span></span>${pct(u.soc)}`;
    const inMaint = id in maint;
    return `<tr><td>${esc(id)}</td><td>${state}</td><td>${soc}</td><td>${W(u.power_w)}</td><td>${W(u.setpoint_w)}</td><td title="${esc(u.mode ?? "")}">${esc(MODE[u.mode] ?? u.mode ?? "—")}</td>` +
      `<td><button class="small secondary" data-unit="${esc(id)}" data-maint="${inMaint ? "off" : "on"}">${inMaint ? "to service" : "maint."}</button></td></tr>`;
  }).join("");
  $("policies").innerHTML = Object.entries(s.policies).map(([p, code]) =>
    `<tr class="${p === s.decided_by ? "decider" : ""}"><td>${esc(p)}</td><td><span class="code">${esc(code)}</span></td></tr>`).join("");
  $("overruled").textContent = s.overruled.length ? "overruled: " + s.overruled.join(", ") : "";
  renderPlan(s.plan);
  const f = op.force;
  const banner = $("force-banner");
  if (f) {
    const left = Math.max(0, f.until_wall_s - (s.wall_now_s || s.ts));
    // what the units were given, and what held it when it is not what was asked
    const g = s.forced;
    const held = g && g.held_by ? `${W(g.written_w)}, held there by ${g.held_by} (asked ${W(g.asked_w)})`
      : (f.mode === "zero" ? "0 W" : W(f.setpoint_w));
    banner.textContent = `Forced mode: battery at ${held}, by ${f.by} (${f.why}); ${left.toFixed(0)} site s left`;
    banner.classList.toggle("clamped", !!(g && g.held_by));
    banner.classList.remove("hidden");
  } else banner.classList.add("hidden");
  $("actions-disabled").classList.toggle("hidden", s.actions_enabled !== false);
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

// --- events: any event's data rendered generically; a `timeline` list as bars --------------
const seenEvents = new Set();
let oldestEventId = null;

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
    `${esc(k)} <b>${esc(typeof v === "object" && v !== null ? JSON.stringify(v) : v)}</b>`).join(" · ");
  return `<li data-id="${e.id}"><div class="head"><span class="kind">${esc(e.kind)}</span>` +
    (e.reason ? `<span class="code">${esc(e.reason)}</span>` : "") +
    `<span class="muted">#${e.id} · ${siteTime(e.wall_s)}</span></div>` +
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
  if (reset) { $("events").innerHTML = ""; seenEvents.clear(); oldestEventId = null; }
  const q = new URLSearchParams({limit: "30"});
  if (!reset && oldestEventId !== null) q.set("before_id", oldestEventId);
  if ($("e-kind").value) q.set("kind", $("e-kind").value);
  const r = await fetch("/api/events?" + q);
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
  const over = p.override ? ` · overridden by ${p.override.by} (${p.override.why})` : "";
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
function connect() {
  const src = new EventSource("/api/stream?since=" + ems.lastSeq);
  src.addEventListener("open", () => { $("conn-dot").className = "dot on"; $("conn-text").textContent = "live"; });
  src.addEventListener("samples", m => onSamples(JSON.parse(m.data)));
  src.addEventListener("status", m => onStatus(JSON.parse(m.data)));
  src.addEventListener("event", m => { ems.eventsReceived += 1; addEvents([JSON.parse(m.data)], {prepend: true}); });
  src.addEventListener("error", () => {
    $("conn-dot").className = "dot off"; $("conn-text").textContent = "reconnecting…";
    src.close();
    setTimeout(connect, 1000);  // resume from the last sample seen
  });
}

(async function start() {
  try {
    const h = await (await fetch("/api/history")).json();
    onSamples(h.samples);
    const st = await fetch("/api/status");
    if (st.ok) onStatus(await st.json());
  } catch (err) { /* the stream below retries */ }
  await Promise.all([loadParams(), loadEvents(true)]);
  connect();
})();
