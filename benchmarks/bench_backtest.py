"""Backtest figures: a year at 15 min as configured (re-plans every 15 min), the same
year with the planner's LP rebuilt for every plan (timed side by side), hourly re-plans,
a peak-shaving-only year at 1 min, and the share of the perfect-foresight savings the
live policies capture (net of wear, against a bound that no month can beat).

Load: the shared SAM sample load x1000 (peak ~4.3 MW); tariff: the shared URDB rate;
battery and policies: config/backtest-site.yaml (2 x 1 MW / 2 MWh).

    python benchmarks/bench_backtest.py [--no-write] [--sensitivity] [--quick] [--json PATH]
                                         [--planning-only] [--forecast-value]

`--sensitivity` also runs the year with single policy settings changed (two at a time,
several minutes) and writes how far the captured share moves: one year's figure turns on
a dozen peak days, so a setting is judged by the spread, not by one number.
`--forecast-value` runs the year again with the planner shown the true load 1, 3, 6 and 24 h
ahead (a diagnostic: what a better forecast is worth, by lead) and writes its own section.
`--planning-only` runs just the two planning runs side by side (LP kept, LP rebuilt; no
perfect-foresight bound) and writes their times to their own section: the planning-speed
figures alone, in about half the time of the whole benchmark.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import LOAD, SITE, URDB, machine, update_section, write_json  # noqa: E402

from ems.backtest.config import BacktestConfig, load_backtest_config  # noqa: E402
from ems.backtest.engine import Trace  # noqa: E402
from ems.backtest.results import Result  # noqa: E402
from ems.backtest.run import BacktestOptions, run  # noqa: E402
from ems.forecast_eval import afternoon_mae_skill  # noqa: E402


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
    """The year's captured share and each month's (net of wear, each against its own bound), in %."""
    assert result.foresight is not None
    months = [100 * m.share for m in result.months if m.share is not None]
    return result.foresight["share_captured_net"], months


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
             "config/backtest-site.yaml). Per month: live savings / the month's own perfect-foresight bound, "
             "net of wear, %.", "",
             "| change | captured | Jan..Dec |", "|---|---|---|",
             f"| none (as configured) | {100 * base_share:.1f} % | {' '.join(f'{m:.0f}' for m in base_months)} |"]
    for (label, _), (share, months) in zip(VARIANTS, results, strict=True):
        lines.append(f"| {label} | {100 * share:.1f} % | {' '.join(f'{m:.0f}' for m in months)} |")
    shares = [share for share, _ in results]
    lines += ["", f"Range over the changes: {100 * min(shares):.1f} to {100 * max(shares):.1f} %."]
    return "\n".join(lines)


KNOWN_AHEAD_H = (1.0, 3.0, 6.0, 24.0)


def _run_known(args: tuple[float | None, dict[str, Any]]) -> tuple[float, list[float], float]:
    ahead_h, span = args
    cfg = load_backtest_config(SITE)
    bt = run(cfg, BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, known_load_ahead_h=ahead_h, **span))
    share, months = _shares(bt.result)
    return share, months, bt.result.total["savings"]


def forecast_value(span: dict[str, Any], what: str, json_path: Path | None, write: bool) -> int:
    """The same run with the planner shown the true load 1, 3, 6 and 24 h ahead instead of
    its forecast (`--known-load-ahead-h`): what a better forecast would be worth, by lead."""
    todo: list[tuple[float | None, dict[str, Any]]] = [(None, span), *((h, span) for h in KNOWN_AHEAD_H)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_run_known, todo))
    cmd = "python benchmarks/bench_backtest.py --forecast-value" + (" --quick" if what != "year" else "")
    lines = ["## Backtest: what a better forecast is worth", "",
             f"Machine: {machine()}. Command: `{cmd}`. The backtest of the section above over the {what} "
             "(15-min re-plans, everything as configured), run again with the planner shown the true "
             "load the given hours ahead instead of its forecast (`ems backtest --known-load-ahead-h H`: a "
             "diagnostic, not a forecast). Captured: net of wear, against the perfect-foresight bound; per "
             "month against its own bound, %.", "",
             "| the planner's load ahead | captured | savings | per month |", "|---|---|---|---|"]
    figures: dict[str, Any] = {"span": what}
    for (ahead_h, _), (share, months, savings) in zip(todo, results, strict=True):
        label = "its forecast (as configured)" if ahead_h is None else f"true for {ahead_h:g} h, then forecast"
        if ahead_h is not None and ahead_h >= 24:
            label = f"true over the horizon ({ahead_h:g} h)"
        lines.append(f"| {label} | {100 * share:.1f} % | {savings:,.0f} | {' '.join(f'{m:.0f}' for m in months)} |")
        figures["forecast_share" if ahead_h is None else f"known_{ahead_h:g}h_share"] = share
    body = "\n".join(lines)
    print(body)
    if write and what == "year":
        update_section("backtest-forecast-value", body)
    write_json(json_path, figures)
    return 0


def _share_months(result: Result) -> str:
    return " ".join(f"{m.month[5:]} {100 * m.share:.0f}" for m in result.months if m.share is not None)


def _planning_line(label: str, tr: Trace) -> str:
    return (f"- {label} ({tr.plans:,} plans): **{tr.plan_time_s:.1f} s** of planning: HiGHS's own solves "
            f"{tr.solver_time_s:.1f} s, building the requests (forecast, tariff signals) {tr.request_time_s:.1f} s, "
            f"the LP layer (update or build, read-out) {tr.plan_time_s - tr.solver_time_s - tr.request_time_s:.1f} s; "
            f"{1e3 * tr.plan_time_s / max(tr.plans, 1):.2f} ms a plan")


def planning_only(cfg: BacktestConfig, opts: BacktestOptions, what: str, json_path: Path | None,
                  write: bool) -> int:
    """The kept and the rebuilt LP over the same span, one after the other in this process;
    the year's figures go to their own section of docs/benchmarks.md."""
    kept = run(cfg, opts).trace
    rebuilt = run(with_arbitrage(cfg, reuse_lp=False), opts).trace
    speedup = rebuilt.plan_time_s / kept.plan_time_s
    over_solver = kept.plan_time_s / kept.solver_time_s
    lp_over_solver = (kept.plan_time_s - kept.request_time_s) / kept.solver_time_s
    cmd = "python benchmarks/bench_backtest.py --planning-only" + (" --quick" if what != "year" else "")
    body = "\n".join([
        "## Backtest: planning speed", "",
        f"Machine: {machine()}. Command: `{cmd}`. The backtest of the section above (15-min steps and "
        f"re-plans) over the {what} without the perfect-foresight bound, run twice in one process: the "
        "planner's LP kept and updated in place, then rebuilt for every plan. Method: docs/backtest.md, "
        "\"Planning speed\".", "",
        _planning_line("LP kept", kept),
        _planning_line("LP rebuilt", rebuilt),
        f"- kept LP **{speedup:.2f}x faster** (target 5x: {_met(speedup >= 5)}); planning / HiGHS solve time "
        f"**{over_solver:.2f}** (target 1.5: {_met(over_solver <= 1.5)}; without building the requests "
        f"{lp_over_solver:.2f})",
    ])
    print(body)
    if write and what == "year":
        update_section("backtest-planning", body)
    write_json(json_path, {
        "span": what, "year_15min_replan_s": kept.plan_time_s, "rebuild_15min_replan_s": rebuilt.plan_time_s,
        "planning_over_solver": over_solver, "lp_over_solver": lp_over_solver, "solver_s": kept.solver_time_s,
        "rebuild_solver_s": rebuilt.solver_time_s, "request_s": kept.request_time_s,
        "rebuild_request_s": rebuilt.request_time_s, "replan_speedup": speedup, "plans": kept.plans,
    })
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    ap.add_argument("--sensitivity", action="store_true", help="also run the year with single settings changed")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--quick", action="store_true",
                    help="July alone instead of the year (same figures, under a minute; docs left alone)")
    ap.add_argument("--planning-only", action="store_true",
                    help="only the kept and the rebuilt LP side by side, timed (own section of the docs)")
    ap.add_argument("--forecast-value", action="store_true",
                    help="only the year with the true load known 1, 3, 6, 24 h ahead (own section of the docs)")
    args = ap.parse_args()
    cfg = load_backtest_config(SITE)
    span: dict[str, Any] = {"start": datetime(2018, 7, 1), "days": 31.0} if args.quick else {}
    what = "July" if args.quick else "year"
    steps_1min = 31 * 1440 if args.quick else 525_600
    opts = BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, **span)

    if args.forecast_value:
        return forecast_value(span, what, args.json, not args.no_write)
    if args.planning_only:
        return planning_only(cfg, dataclasses.replace(opts, foresight=False), what, args.json, not args.no_write)
    t0 = time.perf_counter()
    year = run(cfg, opts)
    year_total_s = time.perf_counter() - t0
    # the same run with the LP rebuilt for every plan (the path before issue 15), side by side
    t0 = time.perf_counter()
    rebuilt = run(with_arbitrage(cfg, reuse_lp=False), dataclasses.replace(opts, foresight=False))
    rebuilt_total_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hourly = run(with_arbitrage(cfg, planning_interval_s=3600.0), opts)
    hourly_total_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ps = run(cfg, dataclasses.replace(opts, step_s=60, foresight=False, peak_shaving_only=True))
    ps_total_s = time.perf_counter() - t0

    t, pf, fin = year.result.total, year.result.foresight, year.result.financials
    hpf = hourly.result.foresight
    assert pf is not None and fin is not None and hpf is not None
    interval_min = (cfg.policies.arbitrage.planning_interval_s if cfg.policies.arbitrage else 0) / 60
    pst = ps.result.total
    tr, rb = year.trace, rebuilt.trace
    speedup = rb.plan_time_s / tr.plan_time_s
    over_solver = tr.plan_time_s / tr.solver_time_s
    lp_over_solver = (tr.plan_time_s - tr.request_time_s) / tr.solver_time_s
    share, max_month = pf["share_captured_net"], pf["max_month_share"]
    # the load forecast's skill, walk-forward (ems/forecast_eval.py): 35 days in --quick
    skill = afternoon_mae_skill(LOAD, 1000.0, days=35.0 if args.quick else None)
    cmd = "python benchmarks/bench_backtest.py" + (" --quick" if args.quick else "")
    lines = [
        "## Backtest",
        "",
        f"Machine: {machine()}. Command: `{cmd}`. Load: shared SAM sample "
        "load x1000 (peak 4.3 MW); tariff: shared URDB rate; battery 2 x 1 MW / 2 MWh "
        "(config/backtest-site.yaml). Method: docs/backtest.md. Span: the " + what + " at 15 min.",
        "",
        f"- planning with 15-min re-plans ({tr.plans:,} plans), the LP kept and updated in place: "
        f"**{tr.plan_time_s:.1f} s** of planning, of it HiGHS's own solves {tr.solver_time_s:.1f} s and "
        f"building the requests (forecast, tariff signals) {tr.request_time_s:.1f} s; whole run "
        f"{year_total_s:.1f} s",
        f"- the same with the LP rebuilt for every plan ({rb.plans:,} plans), in the same process: "
        f"**{rb.plan_time_s:.1f} s** of planning (HiGHS {rb.solver_time_s:.1f} s, the requests "
        f"{rb.request_time_s:.1f} s, built the same way); whole run "
        f"{rebuilt_total_s:.1f} s. Kept LP **{speedup:.1f}x faster** "
        f"(target 5x: {_met(speedup >= 5)}); planning / HiGHS solve time **{over_solver:.2f}** "
        f"(target 1.5: {_met(over_solver <= 1.5)}; the LP layer alone, without building the requests: "
        f"{lp_over_solver:.2f})",
        f"- re-planning hourly ({hourly.trace.plans:,} plans, {hourly.trace.plan_time_s:.1f} s planning): whole "
        f"run with the bound and bills {hourly_total_s:.1f} s; captured {100 * hpf['share_captured_net']:.1f} % "
        "of the bound",
        f"- peak-shaving-only at 1 min ({steps_1min:,} steps): engine {ps.trace.wall_time_s:.1f} s, "
        f"total {ps_total_s:.1f} s",
        f"- bill without battery {t['bill_without']:,.0f}; with ems's policies {t['bill_with']:,.0f}: savings "
        f"{t['savings']:,.0f} (peak {t['peak_without_kw']:,.0f} -> {t['peak_with_kw']:,.0f} kW, "
        f"{t['equivalent_full_cycles']:.0f} equivalent full cycles)",
        f"- perfect foresight (one LP over the {what}, SoC free between months, {pf['solve_time_s']:.1f} s with "
        f"the months' own bounds): savings {pf['savings']:,.0f}, net of wear {pf['net_savings']:,.0f}; "
        f"**captured {100 * share:.1f} %** net of wear, the bound's own measure (target 95 %: "
        f"{_met(share >= 0.95)}; of the bill savings alone {100 * pf['share_captured']:.1f} %)",
        f"- per month against its own bound (net of wear, %): {_share_months(year.result)}; "
        f"highest **{100 * max_month:.1f} %** (at most 100 %: {_met(max_month <= 1.0 + 1e-9)})",
        f"- re-planning every {interval_min:.0f} min as configured; financials: payback "
        f"{'never' if fin.simple_payback_years is None else f'{fin.simple_payback_years:.1f} y'}, "
        f"NPV {fin.npv:,.0f}, IRR {'-' if fin.irr is None else f'{100 * fin.irr:.1f} %'}, "
        f"LCOS {fin.lcos_per_kwh or float('nan'):.3f} per kWh",
        f"- forecast skill on weekday afternoons 12-20 h (`afternoon_mae_skill`, walk-forward, the learned "
        f"P50 against the naive same hour of week, {'35 days' if args.quick else 'the year'}): "
        f"{100 * skill:.1f} % lower MAE (`ems forecast-eval`; docs/backtest.md, \"Forecast\")",
        "- side by side with SAM's own battery dispatch: `python benchmarks/sam_battery_compare.py` "
        "(table in docs/backtest.md)",
    ]
    body = "\n".join(lines)
    print(body)
    write_json(args.json, {
        "span": what,
        "captured_share": share, "max_month_share": max_month,
        "year_15min_replan_s": tr.plan_time_s, "rebuild_15min_replan_s": rb.plan_time_s,
        "planning_over_solver": over_solver, "lp_over_solver": lp_over_solver,
        "solver_s": tr.solver_time_s, "rebuild_solver_s": rb.solver_time_s, "request_s": tr.request_time_s,
        "rebuild_request_s": rb.request_time_s,
        "replan_speedup": speedup, "plans": tr.plans,
        "afternoon_mae_skill": skill,
        "share_captured_bill": pf["share_captured"], "foresight_savings": pf["savings"],
        "foresight_net_savings": pf["net_savings"],
        "month_shares": {m.month: m.share for m in year.result.months},
        "total_s": year_total_s, "rebuild_total_s": rebuilt_total_s,
        "hourly_replans_total_s": hourly_total_s, "hourly_replans_share_captured": hpf["share_captured_net"],
        "peak_shaving_1min_engine_s": ps.trace.wall_time_s, "peak_shaving_1min_total_s": ps_total_s,
        "bill_without": t["bill_without"], "bill_with": t["bill_with"], "savings": t["savings"],
        "peak_without_kw": t["peak_without_kw"], "peak_with_kw": t["peak_with_kw"],
        "equivalent_full_cycles": t["equivalent_full_cycles"],
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
