// A small time-series chart on a canvas: lines, min/max bands, dashed lines; no library.
"use strict";

class TimeChart {
  // series: [{key: s => value, label, color, dash?, band?: [s => lo, s => hi]}]
  constructor(canvas, {series, format, yMin = null, yMax = null, keep = 1200, legend = null}) {
    this.canvas = canvas;
    this.series = series;
    this.format = format;
    this.yMin = yMin;
    this.yMax = yMax;
    this.keep = keep;
    this.samples = [];
    this.pending = false;
    if (legend) {
      legend.innerHTML = series.map(s => `<span><i style="background:${s.color}${s.dash ? ";opacity:.6" : ""}"></i>${s.label}</span>`).join("");
    }
    new ResizeObserver(() => this.schedule()).observe(canvas);
  }

  setSeries(series, legend) {
    this.series = series;
    if (legend) legend.innerHTML = series.map(s => `<span><i style="background:${s.color}"></i>${s.label}</span>`).join("");
    this.schedule();
  }

  push(samples) {
    for (const s of samples) this.samples.push(s);
    if (this.samples.length > this.keep) this.samples.splice(0, this.samples.length - this.keep);
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  draw() {
    const c = this.canvas, dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight || 220;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const fontPx = Math.max(11, Math.round(parseFloat(getComputedStyle(document.documentElement).fontSize) * 0.75));
    g.font = `${fontPx}px system-ui, sans-serif`;
    const pad = {l: fontPx * 5, r: 8, t: 8, b: fontPx * 2};
    const data = this.samples;
    if (data.length < 2) {
      g.fillStyle = "#8b98a5"; g.fillText("waiting for data…", pad.l, h / 2); return;
    }
    const t0 = data[0].ts, t1 = data[data.length - 1].ts;
    let lo = Infinity, hi = -Infinity;
    const take = v => { if (v !== null && v !== undefined && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } };
    for (const s of data) for (const se of this.series) {
      take(se.key(s)); if (se.band) { take(se.band[0](s)); take(se.band[1](s)); }
    }
    if (this.yMin !== null) lo = this.yMin;
    if (this.yMax !== null) hi = this.yMax;
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    const span = hi - lo;
    if (this.yMin === null) lo -= span * 0.05;
    if (this.yMax === null) hi += span * 0.05;
    const X = t => pad.l + (t1 === t0 ? 0 : (t - t0) / (t1 - t0)) * (w - pad.l - pad.r);
    const Y = v => pad.t + (1 - (v - lo) / (hi - lo)) * (h - pad.t - pad.b);
    // grid and axes
    g.strokeStyle = "#2a3440"; g.fillStyle = "#8b98a5"; g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4, y = Y(v);
      g.beginPath(); g.moveTo(pad.l, y); g.lineTo(w - pad.r, y); g.stroke();
      g.fillText(this.format(v), 2, y + fontPx / 3);
    }
    for (let i = 0; i <= 3; i++) {
      const t = t0 + (t1 - t0) * i / 3, x = X(t);
      const label = new Date(t * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
      g.textAlign = i === 0 ? "left" : i === 3 ? "right" : "center";
      g.fillText(label, i === 3 ? w - pad.r : x, h - fontPx * 0.5);
      g.textAlign = "left";
    }
    // bands first, then lines on top
    for (const se of this.series) {
      if (!se.band) continue;
      g.fillStyle = se.color + "33";
      g.beginPath();
      let started = false;
      for (const s of data) { const v = se.band[1](s); if (v === null || v === undefined) continue; const x = X(s.ts), y = Y(v); started ? g.lineTo(x, y) : g.moveTo(x, y); started = true; }
      for (let i = data.length - 1; i >= 0; i--) { const s = data[i]; const v = se.band[0](s); if (v === null || v === undefined) continue; g.lineTo(X(s.ts), Y(v)); }
      g.closePath(); g.fill();
    }
    for (const se of this.series) {
      g.strokeStyle = se.color; g.lineWidth = se.dash ? 1.5 : 2; g.setLineDash(se.dash ? [6, 4] : []);
      g.beginPath();
      let pen = false;
      for (const s of data) {
        const v = se.key(s);
        if (v === null || v === undefined || !isFinite(v)) { pen = false; continue; }  // a gap, never a 0
        const x = X(s.ts), y = Y(v);
        pen ? g.lineTo(x, y) : g.moveTo(x, y); pen = true;
      }
      g.stroke();
    }
    g.setLineDash([]);
  }
}

window.TimeChart = TimeChart;
