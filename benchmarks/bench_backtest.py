"""Backtest figures: a year at 15 min as configured (re-plans every 15 min) and with
hourly re-plans (issue 4's timing target), a peak-shaving-only year at 1 min, and the
share of the perfect-foresight savings the live policies capture.

Load: the shared SAM sample load x1000 (peak ~4.3 MW); tariff: the shared URDB rate;
battery and policies: config/backtest-site.yaml (2 x 1 MW / 2 MWh).

    python benchmarks/bench_backtest.py [--no-write] [--sensitivity]

`--sensitivity` also runs the year with single policy settings changed (two at a time,
several minutes) and writes how far the captured share moves: one year's figure turns on
a dozen peak days, so a setting is judged by the spread, not by one number.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import machine, update_section, write_json  # noqa: E402

from ems.backtest.config import BacktestConfig, load_backtest_config  # noqa: E402
from ems.backtest.results import Result  # noqa: E402
from ems.backtest.run import BacktestOptions, run  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
LOAD = SHARED / "loads" / "sam_sample_load_8760h.csv"
URDB = SHARED / "tariffs" / "sam_urdbv7.json"
SITE = ROOT / "config" / "backtest-site.yaml"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


# (label, arbitrage settings changed from config/backtest-site.yaml)
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("re-plan every 30 min", {"planning_interval_s": 1800}),
    ("re-plan every hour", {"planning_interval_s": 3600}),
    ("forecast envelope over 2 days", {"forecast_envelope_days": 2}),
    ("forecast correction fading over 4 h", {"forecast_correction_tau_s": 14400}),
    ("charge-peak weight 0.3", {"charge_peak_weight": 0.3}),
    ("hold value 0.004 per kWh h", {"hold_value_per_kwh_h": 0.004}),
    ("no early re-plan on SoC drift", {"replan_soc_deviation": None}),
    ("wear cost 0.02 per kWh", {"wear_cost_per_kwh": 0.02}),
]


def with_arbitrage(cfg: BacktestConfig, **changes: Any) -> BacktestConfig:
    arb = cfg.policies.arbitrage
    assert arb is not None
    policies = cfg.policies.model_copy(update={"arbitrage": arb.model_copy(update=changes)})
    return cfg.model_copy(update={"policies": policies})


def _shares(result: Result) -> tuple[float, list[float]]:
    """The year's captured share and each month's, in %."""
    assert result.foresight is not None
    months = [100 * m.savings / m.foresight_savings for m in result.months if m.foresight_savings]
    return result.foresight["share_captured"], months


def _run_variant(changes: dict[str, Any]) -> tuple[float, list[float]]:
    cfg = with_arbitrage(load_backtest_config(SITE), **changes)
    return _shares(run(cfg, BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0)).result)


def sensitivity(base: Result) -> str:
    base_share, base_months = _shares(base)
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_run_variant, [changes for _, changes in VARIANTS]))
    lines = ["## Backtest: sensitivity of the captured share", "",
             "Command: `python benchmarks/bench_backtest.py --sensitivity`. The year of the backtest "
             "section with one arbitrage setting changed at a time (everything else as in "
             "config/backtest-site.yaml). Per month: live savings / perfect-foresight savings, %.", "",
             "| change | captured | Jan..Dec |", "|---|---|---|",
             f"| none (as configured) | {100 * base_share:.1f} % | {' '.join(f'{m:.0f}' for m in base_months)} |"]
    for (label, _), (share, months) in zip(VARIANTS, results, strict=True):
        lines.append(f"| {label} | {100 * share:.1f} % | {' '.join(f'{m:.0f}' for m in months)} |")
    shares = [share for share, _ in results]
    lines += ["", f"Range over the changes: {100 * min(shares):.1f} to {100 * max(shares):.1f} %."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    ap.add_argument("--sensitivity", action="store_true", help="also run the year with single settings changed")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--quick", action="store_true",
                    help="four July weeks instead of the year (same figures, under a minute; docs left alone)")
    args = ap.parse_args()
    cfg = load_backtest_config(SITE)
    span = {"start": datetime(2018, 7, 2), "days": 28.0} if args.quick else {}
    steps_1min = 28 * 1440 if args.quick else 525_600

    t0 = time.perf_counter()
    year = run(cfg, BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, **span))
    year_total_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hourly = run(with_arbitrage(cfg, planning_interval_s=3600.0),
                 BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, **span))
    hourly_total_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ps = run(cfg, BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, step_s=60, foresight=False,
                                  peak_shaving_only=True, **span))
    ps_total_s = time.perf_counter() - t0

    t, pf, fin = year.result.total, year.result.foresight, year.result.financials
    hpf = hourly.result.foresight
    assert pf is not None and fin is not None and hpf is not None
    interval_min = (cfg.policies.arbitrage.planning_interval_s if cfg.policies.arbitrage else 0) / 60
    pst = ps.result.total
    lines = [
        "## Backtest",
        "",
        f"Machine: {machine()}. Command: `python benchmarks/bench_backtest.py`. Load: shared SAM sample "
        "load x1000 (peak 4.3 MW); tariff: shared URDB rate; battery 2 x 1 MW / 2 MWh "
        "(config/backtest-site.yaml). Method: docs/backtest.md.",
        "",
        f"- year at 15 min, planner re-solving every hour ({hourly.trace.plans} LP solves, "
        f"{hourly.trace.plan_time_s:.1f} s of it planning): engine {hourly.trace.wall_time_s:.1f} s; with "
        f"perfect foresight (12 month LPs, {hpf['solve_time_s']:.1f} s) and bills: {hourly_total_s:.1f} s; "
        f"captured {100 * hpf['share_captured']:.1f} % of perfect foresight",
        f"- year at 15 min as configured, planner re-solving every {interval_min:.0f} min "
        f"({year.trace.plans} LP solves, {year.trace.plan_time_s:.1f} s of it planning): total "
        f"{year_total_s:.1f} s. The figures below are this run's.",
        f"- peak-shaving-only year at 1 min ({steps_1min:,} steps): engine {ps.trace.wall_time_s:.1f} s, "
        f"total {ps_total_s:.1f} s",
        f"- bill without battery {t['bill_without']:,.0f}; with ems's policies {t['bill_with']:,.0f}: savings "
        f"{t['savings']:,.0f} (peak {t['peak_without_kw']:,.0f} -> {t['peak_with_kw']:,.0f} kW, "
        f"{t['equivalent_full_cycles']:.0f} equivalent full cycles)",
        f"- perfect foresight savings {pf['savings']:,.0f}: **captured {100 * pf['share_captured']:.1f} %** "
        f"({100 * pf['share_captured_net']:.1f} % net of wear at the planner's wear cost)",
        f"- peak shaving alone with the fixed 3.5 MW cap (1 min): savings {pst['savings']:,.0f}",
        f"- financials (economics in config/backtest-site.yaml): payback "
        f"{'never' if fin.simple_payback_years is None else f'{fin.simple_payback_years:.1f} y'}, "
        f"NPV {fin.npv:,.0f}, IRR {'-' if fin.irr is None else f'{100 * fin.irr:.1f} %'}, "
        f"LCOS {fin.lcos_per_kwh or float('nan'):.3f} per kWh",
        f"- targets: year at 15 min with hourly re-plans under 120 s: {_met(hourly_total_s < 120)}; "
        f"peak-shaving year at "
        f"1 min under 30 s: {_met(ps.trace.wall_time_s < 30)}; at least 90 % of perfect foresight: "
        f"{_met(pf['share_captured'] >= 0.9)} (how steady that is: the sensitivity section)",
        "- side by side with SAM's own battery dispatch: `python benchmarks/sam_battery_compare.py` "
        "(table in docs/backtest.md)",
    ]
    body = "\n".join(lines)
    if args.quick:
        body = body.replace("year at", "4 July weeks at").replace(
            "Command: `python benchmarks/bench_backtest.py`", "Command: `python benchmarks/bench_backtest.py --quick`")
    print(body)
    write_json(args.json, {
        "span": "4 July weeks" if args.quick else "year",
        "hourly_replans_total_s": hourly_total_s, "hourly_replans_engine_s": hourly.trace.wall_time_s,
        "hourly_replans_share_captured": hpf["share_captured"],
        "total_s": year_total_s, "plans": year.trace.plans, "plan_time_s": year.trace.plan_time_s,
        "peak_shaving_1min_engine_s": ps.trace.wall_time_s, "peak_shaving_1min_total_s": ps_total_s,
        "bill_without": t["bill_without"], "bill_with": t["bill_with"], "savings": t["savings"],
        "peak_without_kw": t["peak_without_kw"], "peak_with_kw": t["peak_with_kw"],
        "equivalent_full_cycles": t["equivalent_full_cycles"], "foresight_savings": pf["savings"],
        "share_captured": pf["share_captured"], "share_captured_net": pf["share_captured_net"],
        "peak_shaving_only_savings": pst["savings"], "payback_years": fin.simple_payback_years, "npv": fin.npv,
        "irr": fin.irr, "lcos_per_kwh": fin.lcos_per_kwh,
    })
    if not args.no_write and not args.quick:
        update_section("backtest", body)
    if args.sensitivity:
        table = sensitivity(year.result)
        print(table)
        if not args.no_write:
            update_section("backtest-sensitivity", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
