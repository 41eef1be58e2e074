"""Backtest outputs: a self-contained HTML page (inline SVG, no script, no network) for
people, and JSON + CSV for machines."""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ems.backtest.engine import Trace
from ems.backtest.foresight import Foresight
from ems.backtest.results import COMPONENTS, Result
from ems.model.reasons import Reason
from ems.tariff.model import Tariff
from ems.tariff_signals import tariff_signals

FloatArray = npt.NDArray[np.float64]
W, H, PAD_L, PAD_B = 900, 220, 60, 28


def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def _week(trace: Trace) -> slice:
    """Seven days around the highest load of the run (where demand charges are decided)."""
    per_day = round(86400 / trace.step_s)
    n = trace.load_w.size
    peak_day = int(np.argmax(trace.load_w)) // per_day
    first = max(0, min(peak_day - 3, n // per_day - 7)) * per_day
    return slice(first, min(n, first + 7 * per_day))


def _thin(values: FloatArray, most: int = 1500) -> FloatArray:
    k = max(1, math.ceil(values.size / most))
    n = values.size // k * k
    out: FloatArray = values[:n].reshape(-1, k).mean(axis=1) if k > 1 else values
    return out


def _line_chart(title: str, unit: str, series: Sequence[tuple[str, str, FloatArray, str]],
                day_labels: Sequence[str]) -> str:
    finite = np.concatenate([v[np.isfinite(v)] for _, _, v, _ in series] or [np.zeros(1)])
    lo, hi = float(min(finite.min(), 0.0)), float(finite.max())
    hi = hi if hi > lo else lo + 1.0
    plot_w, plot_h = W - PAD_L - 10, H - PAD_B - 20

    def y(v: float) -> float:
        return 10 + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{html.escape(title)}">']
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        v = lo + frac * (hi - lo)
        parts.append(f'<line x1="{PAD_L}" x2="{W - 10}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                     f'<text x="{PAD_L - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{v:,.3g}</text>')
    for i, label in enumerate(day_labels):
        x = PAD_L + plot_w * i / max(len(day_labels), 1)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="10" y2="{10 + plot_h}" stroke="#eee"/>'
                     f'<text x="{x + 3:.1f}" y="{H - 8}" font-size="10">{html.escape(label)}</text>')
    legend_x = PAD_L
    for name, color, values, dash in series:
        n = values.size
        pts = " ".join(f"{PAD_L + plot_w * i / max(n - 1, 1):.1f},{y(float(v)):.1f}"
                       for i, v in enumerate(values) if np.isfinite(v))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.4" stroke-dasharray="{dash}" '
                     f'points="{pts}"/>')
        parts.append(f'<text x="{legend_x}" y="{H - 8 + 0}" dy="-{plot_h + 4}" font-size="11" fill="{color}">'
                     f'{html.escape(name)}</text>')
        legend_x += 14 + 7 * len(name)
    parts.append(f'<text x="4" y="14" font-size="11">{html.escape(unit)}</text></svg>')
    return f"<h3>{html.escape(title)}</h3>" + "".join(parts)


def _bar_chart(result: Result) -> str:
    months = result.months
    live = [m.savings for m in months]
    best = [m.foresight_savings for m in months]
    top = max([*live, *[b for b in best if b is not None], 1.0])
    bottom = min([*live, 0.0])
    plot_h = H - PAD_B - 20
    slot = (W - PAD_L - 10) / max(len(months), 1)

    def y(v: float) -> float:
        return 10 + plot_h * (1 - (v - bottom) / (top - bottom))

    parts = [f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="monthly savings">']
    parts.append(f'<line x1="{PAD_L}" x2="{W - 10}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#999"/>')
    for frac in (0.5, 1.0):
        v = bottom + frac * (top - bottom)
        parts.append(f'<text x="{PAD_L - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{v:,.0f}</text>')
    for i, m in enumerate(months):
        x = PAD_L + i * slot
        bw = slot * 0.38
        bars: list[tuple[float | None, str]] = [(m.savings, "#2b6cb0"), (m.foresight_savings, "#9ae6b4")]
        for j, (amount, color) in enumerate(bars):
            if amount is None:
                continue
            v = amount
            top_y, base_y = min(y(v), y(0)), max(y(v), y(0))
            parts.append(f'<rect x="{x + 4 + j * bw:.1f}" y="{top_y:.1f}" width="{bw:.1f}" '
                         f'height="{max(base_y - top_y, 0.5):.1f}" fill="{color}"><title>{m.month}: '
                         f'{v:,.0f}</title></rect>')
        parts.append(f'<text x="{x + 4:.1f}" y="{H - 8}" font-size="10">{m.month[2:]}</text>')
    parts.append(f'<text x="{PAD_L}" y="12" font-size="11" fill="#2b6cb0">ems policies</text>'
                 f'<text x="{PAD_L + 90}" y="12" font-size="11" fill="#38a169">perfect foresight</text></svg>')
    return "<h3>Savings per month</h3>" + "".join(parts)


def _table(result: Result) -> str:
    head = ("month", "bill without", "bill with", "savings", *[f"of which {c}" for c in COMPONENTS],
            "peak without kW", "peak with kW", "discharged kWh", "cycles", "foresight savings")
    rows = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for m in result.months:
        cells = (m.month, _fmt(m.bill_without), _fmt(m.bill_with), _fmt(m.savings),
                 *[_fmt(m.savings_by_component[c]) for c in COMPONENTS], _fmt(m.peak_without_kw),
                 _fmt(m.peak_with_kw), _fmt(m.discharged_kwh), _fmt(m.equivalent_full_cycles, 1),
                 _fmt(m.foresight_savings))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _headline(result: Result) -> str:
    t, pf, fin = result.total, result.foresight, result.financials
    items = [("Bill without battery", _fmt(t["bill_without"])), ("Bill with battery", _fmt(t["bill_with"])),
             ("Savings", _fmt(t["savings"])), ("Battery wear at the planner's cost", _fmt(t["wear_cost"])),
             ("Discharged", f"{_fmt(t['discharged_kwh'])} kWh ({_fmt(t['equivalent_full_cycles'], 1)} cycles)"),
             ("Peak import (15-min demand)", f"{_fmt(t['peak_without_kw'])} kW without, "
                                             f"{_fmt(t['peak_with_kw'])} kW with")]
    if pf is not None:
        items += [("Perfect-foresight savings", _fmt(pf["savings"])),
                  ("Share captured (bill savings; net of wear)",
                   f"{_fmt(100 * pf['share_captured'], 1)} %; {_fmt(100 * pf['share_captured_net'], 1)} %")]
    if fin is not None:
        items += [("Annual savings (year 1)", _fmt(fin.annual_savings)),
                  ("Simple payback", f"{_fmt(fin.simple_payback_years, 1)} years"),
                  ("NPV", _fmt(fin.npv)), ("IRR", "-" if fin.irr is None else f"{100 * fin.irr:.1f} %"),
                  ("LCOS", f"{_fmt(fin.lcos_per_kwh, 3)} per kWh discharged")]
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def html_report(result: Result, trace: Trace, foresight: Foresight | None, tariff: Tariff, title: str) -> str:
    wk = _week(trace)
    per_day = round(86400 / trace.step_s)
    days = [(trace.start + timedelta(seconds=trace.step_s * (wk.start + d * per_day))).strftime("%a %d %b")
            for d in range(max(1, (wk.stop - wk.start) // per_day))]
    power = [("load without battery", "#999", _thin(trace.load_w[wk] / 1e3), ""),
             ("grid import", "#2b6cb0", _thin(trace.grid_w[wk] / 1e3), ""),
             ("import cap", "#e53e3e", _thin(trace.cap_w[wk] / 1e3), "5,3")]
    soc = [("SoC (ems)", "#2b6cb0", _thin(trace.soc[wk] * 100), "")]
    if foresight is not None:
        k = foresight.step_s // trace.step_s
        pf_grid = np.repeat(foresight.grid_w, k)[wk] / 1e3
        power.append(("grid, perfect foresight", "#38a169", _thin(pf_grid), "2,2"))
        soc.append(("SoC, perfect foresight", "#38a169", _thin(np.repeat(foresight.soc, k)[wk] * 100), "2,2"))
    start = trace.start + timedelta(seconds=trace.step_s * wk.start)
    sig = tariff_signals(tariff, start, trace.step_s, wk.stop - wk.start,
                         month_kwh=float(np.maximum(trace.load_w, 0).mean()) / 1000 * 730,
                         reference_peak_kw=float(trace.load_w.max()) / 1000)
    price = [("import price", "#805ad5", _thin(sig.import_price_per_kwh), "")]
    body = [f"<h1>{html.escape(title)}</h1>", _headline(result),
            f"<h2>The week of the highest load ({html.escape(days[0])} ...)</h2>",
            _line_chart("Power", "kW", power, days), _line_chart("State of charge", "%", soc, days),
            _line_chart("Energy price (marginal tier)", "per kWh", price, days), "<h2>Months</h2>",
            _bar_chart(result), _table(result),
            "<p>Method and assumptions: docs/backtest.md. Money in the tariff's currency.</p>"]
    style = ("body{font-family:sans-serif;max-width:960px;margin:auto;color:#222}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;"
             "text-align:right}dl{display:grid;grid-template-columns:auto 1fr;gap:2px 16px}dt{color:#555}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")


def write_outputs(out_dir: Path, result: Result, trace: Trace, foresight: Foresight | None, tariff: Tariff,
                  title: str, timeseries: bool = False) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    summary = out_dir / "summary.json"
    summary.write_text(json.dumps(result.to_json(), indent=2, default=float))
    written.append(summary)
    monthly = out_dir / "monthly.csv"
    with monthly.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["month", "bill_without", "bill_with", "savings", *[f"savings_{c}" for c in COMPONENTS],
                    "peak_without_kw", "peak_with_kw", "discharged_kwh", "charged_kwh",
                    "equivalent_full_cycles", "foresight_savings"])
        for m in result.months:
            w.writerow([m.month, f"{m.bill_without:.2f}", f"{m.bill_with:.2f}", f"{m.savings:.2f}",
                        *[f"{m.savings_by_component[c]:.2f}" for c in COMPONENTS], f"{m.peak_without_kw:.1f}",
                        f"{m.peak_with_kw:.1f}", f"{m.discharged_kwh:.1f}", f"{m.charged_kwh:.1f}",
                        f"{m.equivalent_full_cycles:.2f}",
                        "" if m.foresight_savings is None else f"{m.foresight_savings:.2f}"])
    written.append(monthly)
    page = out_dir / "report.html"
    page.write_text(html_report(result, trace, foresight, tariff, title))
    written.append(page)
    if timeseries:
        ts = out_dir / "timeseries.csv"
        with ts.open("w", newline="") as fh:
            w = csv.writer(fh)
            units = list(trace.unit_setpoint_w)
            w.writerow(["timestamp", "load_w", "grid_w", "battery_w", "setpoint_w", "soc", "reserve_soc", "cap_w",
                        "reason", *[f"setpoint_w_{u}" for u in units]])
            for k in range(trace.grid_w.size):
                t = trace.start + timedelta(seconds=trace.step_s * k)
                cap = trace.cap_w[k]
                w.writerow([t.isoformat(), f"{trace.load_w[k]:.0f}", f"{trace.grid_w[k]:.0f}",
                            f"{trace.battery_w[k]:.0f}", f"{trace.setpoint_w[k]:.0f}", f"{trace.soc[k]:.4f}",
                            f"{trace.reserve_soc[k]:.4f}", "" if np.isnan(cap) else f"{cap:.0f}",
                            Reason(int(trace.reason[k])).code,
                            *[f"{trace.unit_setpoint_w[u][k]:.0f}" for u in units]])
        written.append(ts)
    return written
