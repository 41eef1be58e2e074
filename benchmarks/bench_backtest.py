"""Backtest figures: a year at 15 min with hourly re-plans, a peak-shaving-only year at
1 min, and the share of the perfect-foresight savings the live policies capture.

Load: the shared SAM sample load x1000 (peak ~4.3 MW); tariff: the shared URDB rate;
battery and policies: config/backtest-site.yaml (2 x 1 MW / 2 MWh).

    python benchmarks/bench_backtest.py [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import machine, update_section  # noqa: E402

from ems.backtest.run import BacktestOptions, run  # noqa: E402
from ems.config import load_config  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
LOAD = SHARED / "loads" / "sam_sample_load_8760h.csv"
URDB = SHARED / "tariffs" / "sam_urdbv7.json"
SITE = ROOT / "config" / "backtest-site.yaml"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    cfg = load_config(SITE)

    t0 = time.perf_counter()
    year = run(cfg, BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0))
    year_total_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ps = run(cfg, BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, step_s=60, foresight=False,
                                  peak_shaving_only=True))
    ps_total_s = time.perf_counter() - t0

    t, pf, fin = year.result.total, year.result.foresight, year.result.financials
    assert pf is not None and fin is not None
    pst = ps.result.total
    lines = [
        "## Backtest",
        "",
        f"Machine: {machine()}. Command: `python benchmarks/bench_backtest.py`. Load: shared SAM sample "
        "load x1000 (peak 4.3 MW); tariff: shared URDB rate; battery 2 x 1 MW / 2 MWh "
        "(config/backtest-site.yaml). Method: docs/backtest.md.",
        "",
        f"- year at 15 min, planner re-solving every hour ({year.trace.plans} LP solves, "
        f"{year.trace.plan_time_s:.1f} s of it planning): engine {year.trace.wall_time_s:.1f} s; with perfect "
        f"foresight (12 month LPs, {pf['solve_time_s']:.1f} s) and bills: {year_total_s:.1f} s",
        f"- peak-shaving-only year at 1 min (525,600 steps): engine {ps.trace.wall_time_s:.1f} s, "
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
        f"- issue 4's targets: year at 15 min under 120 s: {_met(year_total_s < 120)}; peak-shaving year at "
        f"1 min under 30 s: {_met(ps.trace.wall_time_s < 30)}; at least 90 % of perfect foresight: "
        f"{_met(pf['share_captured'] >= 0.9)} (why: docs/backtest.md)",
        "- side by side with SAM's own battery dispatch: `python benchmarks/sam_battery_compare.py` "
        "(table in docs/backtest.md)",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        update_section("backtest", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
