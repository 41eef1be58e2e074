"""The report page: one self-contained HTML file (inline SVG charts and CSS; no script, no
font, image or style fetched) that reads like an engineering report: key results, the week
that decides the demand charges, the months, the economics and how it was computed."""

from __future__ import annotations

import html

from ems.backtest.report.charts import (
    components_chart,
    peaks_chart,
    savings_chart,
    week_chart,
    week_of_highest_load,
)
from ems.backtest.report.economics import economics_section
from ems.backtest.report.formatting import (
    COMPONENT_LABELS,
    Currency,
    PowerUnit,
    days,
    duration,
    number,
    percent,
    period,
)
from ems.backtest.report.method import method_box
from ems.backtest.report.tables import components_table, monthly_table, shown_components
from ems.backtest.run import Backtest

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;color:#1d1d1d;
 max-width:1000px;margin:24px auto;padding:0 16px;line-height:1.45;font-size:15px}
h1{font-size:25px;margin:0 0 2px}h2{font-size:19px;margin:30px 0 8px;padding-bottom:3px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:18px 0 4px}.sub{color:#555;margin:0 0 14px}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:10px}
.kpi{border:1px solid #d6d6d6;border-radius:4px;padding:8px 10px;background:#fafafa}
.kpi .k{font-size:12px;color:#555}.kpi .v{font-size:19px;font-weight:600;font-variant-numeric:tabular-nums}
.kpi .d{font-size:12px;color:#444}
svg{width:100%;height:auto;display:block}
table{border-collapse:collapse;font-size:13px;margin:8px 0;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:600;padding-bottom:4px}
th,td{padding:3px 8px;border-bottom:1px solid #e2e2e2;text-align:left;vertical-align:bottom}
th{border-bottom:1.5px solid #555;font-weight:600}td{white-space:nowrap}
.num{text-align:right}tfoot td{font-weight:700;border-top:1.5px solid #555;border-bottom:none}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:24px;align-items:start}
.note,.caption{font-size:13px;color:#444}
.method{margin-top:30px;border:1px solid #c9d6e3;background:#f4f8fb;padding:2px 16px 8px;border-radius:4px}
.method h2{border:none;margin-top:12px}.method li{margin:4px 0}
@media print{body{max-width:none;font-size:12px}.kpi{break-inside:avoid}figure,table{break-inside:avoid}}
"""


def title(bt: Backtest) -> str:
    t = bt.trace
    return f"Battery backtest: {bt.setup.site}, {period(t.start, t.grid_w.size, t.step_s)}"


def _kpi(label: str, value: str, detail: str = "") -> str:
    return (f"<div class=kpi><div class=k>{html.escape(label)}</div><div class=v>{html.escape(value)}</div>"
            f"<div class=d>{html.escape(detail)}</div></div>")


def _key_results(bt: Backtest, cur: Currency) -> str:
    t, pf, fin, e = bt.result.total, bt.result.foresight, bt.result.financials, bt.setup.economics
    run_days = bt.trace.grid_w.size * bt.trace.step_s / 86400
    unit = PowerUnit.for_peak(t["peak_without_kw"])
    digits = 0 if unit.name == "kW" else 1
    cut = t["peak_without_kw"] - t["peak_with_kw"]
    cards = [
        _kpi("Bill savings", cur.money(t["savings"]),
             f"{percent(t['savings'] / t['bill_without'])} of {cur.money(t['bill_without'])}"
             if t["bill_without"] > 0 else ""),
        _kpi("Peak demand", f"{number(t['peak_with_kw'] * unit.per_kw, digits)} {unit.name}",
             f"from {number(t['peak_without_kw'] * unit.per_kw, digits)} {unit.name} "
             f"({percent(-cut / t['peak_without_kw'])})"
             if t["peak_without_kw"] > 0 else ""),
        _kpi("Share of perfect foresight captured", "\u2013" if pf is None else percent(pf["share_captured_net"]),
             "not computed in this run" if pf is None
             else f"net of wear; bound {cur.money(pf['net_savings'])}, bill savings alone "
                  f"{percent(pf['share_captured'])}"),
        _kpi("Battery throughput", f"{number(t['discharged_kwh'])} kWh",
             f"{number(t['equivalent_full_cycles'], 1)} equivalent full cycles"),
    ]
    if fin is not None and e is not None:
        cards += [
            _kpi("Year-1 savings" + (" (extrapolated)" if run_days < 364.5 else ""), cur.money(fin.annual_savings),
                 f"O&M {cur.money(e.om_per_year)} a year"),
            _kpi("Simple payback", "never" if fin.simple_payback_years is None
                 else f"{number(fin.simple_payback_years, 1)} years", f"CAPEX {cur.money(e.capex)}"),
            _kpi("NPV", cur.money(fin.npv), f"at {percent(e.discount_rate)} over {e.lifetime_years} years"),
            _kpi("IRR", percent(fin.irr), "\u2013" if fin.lcos_per_kwh is None
                 else f"LCOS {number(fin.lcos_per_kwh, 3)} {cur.per('kWh')}"),
        ]
    return "<div class=kpis>" + "".join(cards) + "</div>"


def html_report(bt: Backtest) -> str:
    r, t, s = bt.result, bt.trace, bt.setup
    cur = Currency.of(bt.tariff)
    months = r.months
    heading = title(bt)
    run_days = t.grid_w.size * t.step_s / 86400
    sub = (f"{days(run_days)} at {duration(t.step_s)} steps &middot; {s.units} battery "
           f"unit{'s' if s.units != 1 else ''}, {number(s.capacity_kwh)} kWh / {number(s.rated_power_kw)} kW "
           f"&middot; money in {html.escape(cur.unit)}")
    week = week_of_highest_load(t)
    week_days = (week.stop - week.start) * t.step_s / 86400
    week_heading = ("The week of the highest load" if week_days >= 7
                    else f"The whole run ({days(week_days)})")
    pf_line = "" if bt.foresight is None else " and what perfect foresight would have imported"
    _, hidden = shown_components(months)
    hidden_note = "" if not hidden else (
        "Not shown: " + ", ".join(COMPONENT_LABELS[c].lower() for c in hidden) + " (no change in any month). ")
    body = [
        f"<h1>{html.escape(heading)}</h1><p class=sub>{sub}</p>",
        "<h2>Key results</h2>", _key_results(bt, cur),
        f"<h2>{week_heading}</h2>",
        "<p class=caption>Demand charges are set by the highest 15-minute import of the month, so these days decide "
        "most of them. Top: the site's load without the battery, the grid import with it, the cap the controller "
        f"held{pf_line}. Middle: the battery's state of charge. Bottom: the energy price the tariff charges.</p>",
        week_chart(t, bt.foresight, bt.tariff, (s.soc_min, s.soc_max), cur),
        "<h2>Month by month</h2>",
        "<h3>Savings against the perfect-foresight bound</h3>" if bt.foresight is not None
        else "<h3>Savings</h3>", savings_chart(months, cur),
        monthly_table(months, cur),
        "<p class=note>Peaks are the billed 15-minute demand; the totals row gives the highest month's. "
        "Each month's bound starts and ends as charged as the live run was at the month's ends, so no month "
        "can exceed it on what both optimise, the bill net of the planner's wear cost; the run's own bound "
        "(the key results) also chooses the charge at each month's end and is at least their sum.</p>",
        "<h3>Peak demand</h3>", peaks_chart(months),
        "<h3>Savings by bill component</h3>", components_chart(months, cur), components_table(months, cur),
        f"<p class=note>{hidden_note}Energy-charge savings are negative where the battery's losses cost more than "
        "moving energy to cheaper hours saves.</p>",
        economics_section(s.economics, r.financials, cur, s.capacity_kwh, run_days, len(months),
                          (r.total.get("stored_energy_change_kwh", 0.0), r.total.get("stored_energy_value", 0.0))),
        method_box(s, bt.tariff, r.run, t.start, t.grid_w.size),
    ]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(heading)}</title>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
