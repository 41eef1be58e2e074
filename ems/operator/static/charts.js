// A small time-series chart on a canvas: lines, min/max bands, dash patterns; no library.
// Axes on round values (1, 2 or 5 times a power of ten; round minutes and hours of the site's
// zone), each label once; a non-negative quantity never gets a negative axis.
"use strict";

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
  86400, 172800, 604800];

// the smallest of 1, 2 or 5 times a power of ten that splits `span` into at most `most` steps
function niceStep(span, most) {
  if (!(span > 0) || !isFinite(span)) return 1;
  let p = Math.pow(10, Math.floor(Math.log10(span / most)));
  for (;;) {
    for (const m of [1, 2, 5]) if (span / (m * p) <= most) return m * p;
    p *= 10;
  }
}

// axis label formatters: (lo, hi, step) -> (value -> text), precise enough that distinct ticks differ
const AxisFormat = {
  watts(lo, hi, step) {
    const a = Math.max(Math.abs(lo), Math.abs(hi));
    let scale = a >= 1e6 ? 1e6 : a >= 1e3 ? 1e3 : 1;
    while (scale > 1 && step / scale < 1e-3) scale /= 1e3;  // a step finer than 3 decimals: a smaller unit
    const unit = {1: "W", 1000: "kW", 1000000: "MW"}[scale];
    const dec = Math.max(0, Math.min(3, Math.ceil(-Math.log10(step / scale) - 1e-9)));
    return v => {
      const x = Math.abs(v / scale) < 0.5 * Math.pow(10, -dec) ? 0 : v / scale;
      return x.toFixed(dec) + " " + unit;
    };
  },
  percent(lo, hi, step) {
    const dec = Math.max(0, Math.min(2, Math.ceil(-Math.log10(step * 100) - 1e-9)));
    return v => (v * 100).toFixed(dec) + " %";
  },
};

// a filled block for a series that is only a band (an allowed range, say)
function bandSwatch(color) {
  return `<svg width="26" height="10" aria-hidden="true"><rect x="1" y="1" width="24" height="8" fill="${color}" ` +
    `fill-opacity="0.35" stroke="${color}" stroke-width="1"/></svg>`;
}

function dashSwatch(color, dash, width) {
  const d = dash && dash.length ? ` stroke-dasharray="${dash.join(" ")}"` : "";
  return `<svg width="26" height="10" aria-hidden="true"><line x1="1" y1="5" x2="25" y2="5" stroke="${color}" ` +
    `stroke-width="${Math.min(width || 2, 3)}"${d}/></svg>`;
}

class TimeChart {
  // series: [{key: s => value, label, color, dash?: [on, off, ...], width?, band?: [s => lo, s => hi]}];
  // key null: the band alone (its edges drawn thin), a block in the legend
  // axis: "watts" | "percent"; yMin, yMax: a fixed axis end (else from the data)
  // noValues: what to say when there are samples but none has a value (all gaps)
  constructor(canvas, {series, axis = "watts", yMin = null, yMax = null, legend = null, noValues = null}) {
    this.noValues = noValues || "no values in this range";
    this.canvas = canvas;
    this.axis = axis;
    this.yMin = yMin;
    this.yMax = yMax;
    this.legend = legend;
    this.samples = [];
    this.t0 = null;
    this.t1 = null;
    this.empty = "waiting for data…";
    this.pending = false;
    this.drawn = 0;  // frames drawn with data (for the tests)
    this.axes = null;  // the last drawn axes: {lo, hi, y: labels, x: labels}
    this.bands = {};  // the last drawn bands: label -> points
    this.setSeries(series);
    new ResizeObserver(() => this.schedule()).observe(canvas);
  }

  setSeries(series) {
    this.series = series;
    if (this.legend) {
      this.legend.innerHTML = series.map(s =>
        `<span>${s.key ? dashSwatch(s.color, s.dash, s.width) : bandSwatch(s.color)}${s.label}</span>`).join("");
    }
    this.schedule();
  }

  // the samples in view, oldest first, and the span of time the x axis covers
  setView(samples, t0, t1, empty) {
    this.samples = samples;
    this.t0 = t0;
    this.t1 = t1;
    if (empty) this.empty = empty;
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  yRange() {
    let lo = Infinity, hi = -Infinity;
    const take = v => { if (v !== null && v !== undefined && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } };
    for (const s of this.samples) {
      for (const se of this.series) {
        if (se.key) take(se.key(s));
        if (se.band) { take(se.band[0](s)); take(se.band[1](s)); }
      }
    }
    if (!isFinite(lo)) return null;
    const dataLo = lo, dataHi = hi;
    if (this.yMin !== null) lo = this.yMin;
    if (this.yMax !== null) hi = this.yMax;
    if (hi - lo < 1e-9) {  // a flat line: a small span around it
      const pad = this.axis === "percent" ? 0.01 : Math.max(1000, Math.abs(hi) * 0.05);
      lo -= pad; hi += pad;
    } else {
      const pad = (hi - lo) * 0.06;
      if (this.yMin === null) lo -= pad;
      if (this.yMax === null) hi += pad;
    }
    // padding never takes an axis across zero: a quantity that is not negative gets no negative axis
    if (dataLo >= 0 && lo < 0) lo = 0;
    else if (dataHi <= 0 && hi > 0) hi = 0;
    const step = niceStep(hi - lo, 6);
    if (this.yMin === null) lo = Math.floor(lo / step + 1e-9) * step;
    if (this.yMax === null) hi = Math.ceil(hi / step - 1e-9) * step;
    if (dataLo >= 0 && lo < 0) lo = 0;
    return {lo, hi, step};
  }

  timeTicks(t0, t1, maxTicks) {
    const span = Math.max(t1 - t0, 1e-3);
    const step = TIME_STEPS.find(s => span / s <= maxTicks) || TIME_STEPS[TIME_STEPS.length - 1];
    const off = SiteTime.offset(t0);  // ticks on the site zone's round minutes, hours and days
    const ticks = [];
    for (let t = Math.ceil((t0 + off) / step) * step - off; t <= t1 + 1e-6; t += step) ticks.push(t);
    return {ticks, step};
  }

  timeLabel(t, step, prev) {
    if (step >= 86400) return SiteTime.day(t);
    const clock = step < 60 ? SiteTime.time(t) : SiteTime.hm(t);
    if (prev === null || SiteTime.day(prev) !== SiteTime.day(t)) {
      // the first label, and the first of each new day, also says the day when the view spans days
      if (this.t1 - this.t0 > 3600 && SiteTime.day(this.t0) !== SiteTime.day(this.t1)) return `${SiteTime.day(t)} ${clock}`;
    }
    return clock;
  }

  draw() {
    const c = this.canvas, dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight || 220;
    if (!w) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const fontPx = Math.max(11, Math.round(parseFloat(getComputedStyle(document.documentElement).fontSize) * 0.75));
    g.font = `${fontPx}px system-ui, sans-serif`;
    g.textBaseline = "alphabetic";
    const data = this.samples;
    const yr = this.yRange();
    if (!data.length || yr === null || this.t0 === null) {
      g.fillStyle = "#8b98a5"; g.textAlign = "center";
      g.fillText(data.length ? this.noValues : this.empty, w / 2, h / 2); g.textAlign = "left";
      this.axes = null;
      return;
    }
    const {lo, hi, step} = yr;
    const fmt = AxisFormat[this.axis](lo, hi, step);
    const yTicks = [];
    for (let i = 0; lo + i * step <= hi + step * 1e-6; i++) yTicks.push(lo + i * step);
    const yLabels = yTicks.map(v => fmt(Math.abs(v) < step * 1e-6 ? 0 : v));
    const labelW = Math.max(...yLabels.map(t => g.measureText(t).width));
    const pad = {l: Math.ceil(labelW) + 10, r: 12, t: Math.round(fontPx * 0.7), b: Math.round(fontPx * 2)};
    const t0 = this.t0, t1 = this.t1 > this.t0 ? this.t1 : this.t0 + 1;
    const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
    const X = t => pad.l + (t - t0) / (t1 - t0) * pw;
    const Y = v => pad.t + (1 - (v - lo) / (hi - lo)) * ph;
    // y grid and labels: each value once
    g.strokeStyle = "#2a3440"; g.fillStyle = "#8b98a5"; g.lineWidth = 1; g.textAlign = "right";
    const axes = {lo, hi, y: [], x: []};  // what was drawn, for the tests
    yTicks.forEach((v, i) => {
      const y = Math.round(Y(v)) + 0.5;
      g.beginPath(); g.moveTo(pad.l, y); g.lineTo(w - pad.r, y); g.stroke();
      if (yLabels[i] !== axes.y[axes.y.length - 1]) { g.fillText(yLabels[i], pad.l - 6, y + fontPx / 3); axes.y.push(yLabels[i]); }
    });
    // time ticks on round times of the site zone, labels that do not collide nor repeat
    const sample = g.measureText(this.t1 - this.t0 > 3600 ? "28 Nov 00:00" : "00:00:00").width;
    const maxTicks = Math.max(2, Math.floor(pw / (sample + fontPx * 2)));
    const {ticks, step: tStep} = this.timeTicks(t0, t1, maxTicks);
    g.textAlign = "center";
    let prevT = null, prevText = null, prevRight = -Infinity;
    for (const t of ticks) {
      const x = X(t);
      const text = this.timeLabel(t, tStep, prevT);
      const tw = g.measureText(text).width;
      const left = Math.max(pad.l, Math.min(x - tw / 2, w - pad.r - tw));
      g.beginPath(); g.moveTo(Math.round(x) + 0.5, pad.t + ph); g.lineTo(Math.round(x) + 0.5, pad.t + ph + 4); g.stroke();
      if (text !== prevText && left > prevRight + fontPx) {
        g.textAlign = "left"; g.fillText(text, left, h - fontPx * 0.45);
        prevRight = left + tw; prevText = text; axes.x.push(text);
      }
      prevT = t;
    }
    g.textAlign = "left";
    this.axes = axes;
    g.save();
    g.beginPath(); g.rect(pad.l, pad.t - 2, pw, ph + 4); g.clip();
    // bands first, then lines on top, in series order (so a later, dashed line shows over an earlier one)
    const bands = {};  // points drawn in each series' band, for the tests
    for (const se of this.series) {
      if (!se.band) continue;
      bands[se.label] = 0;
      // one shape per run of samples with both ends: a gap (no range in force) is never bridged
      const runs = [];
      let run = [];
      for (const s of data) {
        const a = se.band[0](s), b = se.band[1](s);
        if (a === null || a === undefined || b === null || b === undefined) { if (run.length) runs.push(run); run = []; continue; }
        run.push([X(s.ts), Y(a), Y(b)]);
      }
      if (run.length) runs.push(run);
      for (const r of runs) {
        if (r.length === 1) r.push([r[0][0] + 1, r[0][1], r[0][2]]);  // a lone sample: a sliver, not nothing
        g.fillStyle = se.color + "33";
        g.beginPath();
        r.forEach(([x, , y], i) => i ? g.lineTo(x, y) : g.moveTo(x, y));
        for (let i = r.length - 1; i >= 0; i--) g.lineTo(r[i][0], r[i][1]);
        g.closePath(); g.fill();
        if (!se.key) {  // a band alone: its edges, so the range reads where the fill is faint
          g.strokeStyle = se.color; g.lineWidth = 1; g.setLineDash([]);
          for (const k of [1, 2]) { g.beginPath(); r.forEach((p, i) => i ? g.lineTo(p[0], p[k]) : g.moveTo(p[0], p[k])); g.stroke(); }
        }
        bands[se.label] += r.length;
      }
    }
    this.bands = bands;
    for (const se of this.series) {
      if (!se.key) continue;
      g.strokeStyle = se.color; g.lineWidth = se.width || 2; g.setLineDash(se.dash || []);
      g.lineJoin = "round";
      g.beginPath();
      let run = [];
      const lone = [];  // a sample alone between gaps: drawn as a point, so it is not lost
      for (const s of data) {
        const v = se.key(s);
        if (v === null || v === undefined || !isFinite(v)) {  // a gap, never a 0
          if (run.length === 1) lone.push(run[0]);
          run = [];
          continue;
        }
        const x = X(s.ts), y = Y(v);
        run.length ? g.lineTo(x, y) : g.moveTo(x, y);
        run.push([x, y]);
      }
      if (run.length === 1) lone.push(run[0]);
      g.stroke();
      g.fillStyle = se.color;
      for (const [x, y] of lone) { g.beginPath(); g.arc(x, y, (se.width || 2) + 0.5, 0, 2 * Math.PI); g.fill(); }
    }
    g.setLineDash([]);
    g.restore();
    this.drawn += 1;
  }
}

window.TimeChart = TimeChart;
