"""`ems backtest` on an off-grid or weak-grid site: the run, the diesel-only baseline, the
comparison (docs/off-grid.md). The money is fuel and genset rental, and on a weak grid with a
tariff (--tariff, or the arbitrage section's) the import's bill."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ems.backtest.config import BacktestConfig
from ems.backtest.engine import Progress, Trace, run_backtest
from ems.backtest.errors import BacktestInputError
from ems.backtest.financials import Economics
from ems.backtest.genset_planning import Forecast, GensetPlanning
from ems.backtest.offgrid_report import compare
from ems.backtest.run import BacktestOptions, check_prices, load_series, warmup_net
from ems.microgrid_config import MicrogridConfig
from ems.planning.settings import load_tariff
from ems.step_params import step_params
from ems.tariff.model import Tariff
from policies.microgrid import Mode

# the step unless given: a genset's start and warm-up (~70 s) fit in 5 min; at 15 min a genset
# started as the battery empties gave nothing for the whole step, and designs that serve every
# kWh at 1 and 5 min read as leaving load dark (docs/backtest.md, "Sizing")
OFFGRID_STEP_S = 300


def is_offgrid(cfg: BacktestConfig) -> bool:
    return cfg.microgrid is not None and cfg.microgrid.mode is not Mode.GRID_CONNECTED


def economics(cfg: BacktestConfig) -> Economics | None:
    e = cfg.economics
    return None if e is None else Economics(e.capex, e.om_per_year, e.discount_rate, e.lifetime_years,
                                            e.degradation_per_year, e.end_of_life_cost)


def weak_grid_tariff(cfg: BacktestConfig, opts: BacktestOptions) -> Tariff | None:
    """The tariff a weak grid's import is billed on and its planner plans against: --tariff,
    else the arbitrage section's where it is enabled; None without either (the import is then
    not priced). Off-grid there is no grid to bill. --prices without a tariff to take them is
    refused, not dropped."""
    arb = cfg.policies.arbitrage
    arb = arb if arb is not None and arb.enabled else None  # a switched-off section is not the site's tariff
    if cfg.microgrid is not None and cfg.microgrid.mode is Mode.OFF_GRID:
        for option, given in (("--tariff", opts.tariff), ("--prices", opts.prices_csv)):
            if given is not None:
                raise BacktestInputError(f"{option}: an off_grid site has no grid to bill; leave it out")
        return None
    path = opts.tariff or (arb.tariff if arb is not None else None)
    if path is None:
        if opts.prices_csv is not None:
            raise BacktestInputError("--prices: a weak grid's import needs a tariff to be billed on them "
                                     "(--tariff, or policies.arbitrage.tariff)")
        return None
    return load_tariff(path, opts.prices_csv or (arb.prices_csv if arb is not None else None))


def run_offgrid(cfg: BacktestConfig, opts: BacktestOptions, progress: Progress | None = None,
                genset_plan: Forecast | None = None, trucks: MicrogridConfig | None = None
                ) -> tuple[Trace, dict[str, Any]]:
    """`trucks`: the diesel-only baseline's section (default the site's: `compare`)."""
    mg = cfg.microgrid
    if mg is None or not is_offgrid(cfg):
        raise BacktestInputError("microgrid.mode must be off_grid or weak_grid")
    if opts.known_load_ahead_h is not None:
        raise BacktestInputError("--known-load-ahead-h: not on an off_grid or weak_grid run (its money is fuel "
                                 "and rent, not the bill a plan is judged on; its gensets plan on their own: "
                                 "--genset-plan)")
    if opts.dr_events_csv is not None:
        raise BacktestInputError("--dr-events: not on an off_grid or weak_grid run (its step books no "
                                 "demand-response events)")
    step = opts.step_s or OFFGRID_STEP_S
    load, pv, start, load_w, pv_w = load_series(opts, step)
    if genset_plan is None and mg.genset_plan is not None:  # the site plans its gensets live: so here
        genset_plan = "persistence"
    tariff = weak_grid_tariff(cfg, opts)
    warm = None
    if tariff is not None:
        check_prices(tariff, start, step, load_w.size)
        # the planner's history as a controller running a while has it (without, it planned nothing the first day)
        warm = warmup_net(load, pv, start, step)
    if opts.peak_shaving_only:  # the import still billed on the tariff; no planner
        cfg = cfg.model_copy(update={"policies": cfg.policies.model_copy(update={"arbitrage": None})})
    return run_series(cfg, start, step, load_w, pv_w, progress, genset_plan, trucks=trucks, tariff=tariff,
                      warmup_w=warm)


def run_series(cfg: BacktestConfig, start: datetime, step_s: int, load_w: np.ndarray, pv_w: np.ndarray | None,
               progress: Progress | None = None, genset_plan: Forecast | None = None,
               plan_every_s: float | None = None, trucks: MicrogridConfig | None = None,
               tariff: Tariff | None = None, warmup_w: np.ndarray | None = None) -> tuple[Trace, dict[str, Any]]:
    """The run and its comparison. `genset_plan`: the gensets on the MILP's schedule from this
    forecast (None: the SoC thresholds alone), re-solved every `plan_every_s` (default: the site
    file's `genset_plan`, else 6 h). `tariff` (weak grid): what the planner plans against, as
    live, and what the import is billed on; `warmup_w` the net load before `start` seeding its history."""
    assert cfg.microgrid is not None
    planning = None
    if genset_plan is not None:
        params = step_params(cfg).microgrid
        assert params is not None
        planning = GensetPlanning(cfg, params, step_s, np.asarray(load_w, dtype=np.float64),
                                  np.zeros(load_w.size) if pv_w is None else np.asarray(pv_w, dtype=np.float64),
                                  genset_plan)
        if (gp := cfg.microgrid.genset_plan) is not None:  # the site file's timing, as live
            planning.every_s, planning.horizon_s = gp.every_s, gp.horizon_s
        if plan_every_s is not None:
            planning.every_s = plan_every_s
    trace = run_backtest(cfg, tariff, start, step_s, load_w, pv_w, progress=progress, genset_planning=planning,
                         warmup_w=warmup_w)
    out = compare(trace, cfg.microgrid, economics(cfg), trucks, tariff, cfg.grid_connection.import_limit_w)
    out["genset_plan"] = None if planning is None else {
        "forecast": planning.forecast, "solves": planning.solves, "failures": planning.failures,
        "solve_time_s": planning.solve_time_s, "horizon_h": planning.horizon_s / 3600,
        "every_h": planning.every_s / 3600}
    out["run"] = {"start": start.isoformat(), "step_s": step_s, "steps": int(load_w.size),
                  "days": load_w.size * step_s / 86400, "mode": cfg.microgrid.mode.value,
                  "battery_wh": trace.capacity_wh, "wall_time_s": trace.wall_time_s}
    return trace, out


def with_battery_scale(cfg: BacktestConfig, scale: float) -> BacktestConfig:
    """The site with every unit's energy (not power) scaled: a battery-size sweep."""
    units = [u.model_copy(update={"capacity_wh": u.capacity_wh * scale}) for u in cfg.battery_units]
    return cfg.model_copy(update={"battery_units": units})


def _no_nan(value: Any) -> Any:
    """null where a figure has no value (PV self-consumption without PV): a bare NaN is not
    JSON, and jq or a browser refused the whole file."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value


def write_offgrid(out_dir: Path, result: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "offgrid.json"
    path.write_text(json.dumps(_no_nan(result), indent=2, default=float, allow_nan=False))
    return path


def summary_lines(r: dict[str, Any]) -> list[str]:
    b, s = r["baseline"], r["site"]
    lines = [
        f"{r['run']['mode']}: {r['run']['days']:.3g} days, unserved {r['unserved_kwh']:,.1f} kWh",  # 0.5: not "0"
        f"diesel {r['diesel_litres']:,.0f} l vs {r['baseline_diesel_litres']:,.0f} l diesel-only "
        f"({b['units']} x {b['rated_w'] / 1e6:g} MW, N+1): saved {r['diesel_saved_litres']:,.0f} l "
        f"({100 * r['diesel_saved_share']:.0f} %), CO2 {r['co2_saved_kg'] / 1000:,.1f} t",
        f"genset hours {s['genset_hours']:,.0f} vs {b['engine_h']:,.0f}, starts {s['genset_starts']:.0f} "
        f"vs {b['starts']}; PV used {100 * s['pv_self_consumption']:.0f} % "
        f"(curtailed {s['pv_curtailed_kwh']:,.0f} kWh)" if s["pv_kwh"] > 0 else
        f"genset hours {s['genset_hours']:,.0f} vs {b['engine_h']:,.0f}, starts {s['genset_starts']:.0f} "
        f"vs {b['starts']}",
        f"{'fuel and rental' if r['grid_bill'] is None else 'fuel, rental and the import bill'} "
        f"{r['site_cost']:,.0f} vs {b['cost']:,.0f}: saved {r['cost_saved']:,.0f} "
        f"({r['cost_saved_per_year']:,.0f} a year)",
    ]
    if r["run"]["mode"] == "weak_grid":
        s_kwh = s["grid_import_kwh"]
        lines.append(f"grid import {s_kwh:,.0f} kWh, " + ("not priced (no tariff: --tariff or policies.arbitrage)"
                                                          if r["grid_bill"] is None else
                                                          f"billed {r['grid_bill']:,.0f} on the tariff"))
    if (gp := r.get("genset_plan")) is not None:
        lines.append(f"gensets on the MILP schedule ({gp['forecast']} forecast, {gp['horizon_h']:g} h ahead every "
                     f"{gp['every_h']:g} h): {gp['solves']} solves, {gp['failures']} failed, "
                     f"{gp['solve_time_s']:.1f} s solving")
    if (wg := r.get("baseline_weak_grid")) is not None:
        priced = "" if wg["grid_bill"] is None else f", the import billed {wg['grid_bill']:,.0f}"
        lines.append(f"the same grid, trucks and PV, no battery: {wg['units']} trucks, {wg['fuel_l']:,.0f} l, "
                     f"{wg['grid_import_kwh']:,.0f} kWh imported{priced}; the battery's part: "
                     f"{r['battery_diesel_saved_litres']:,.0f} l, {r['battery_cost_saved_per_year']:,.0f} a year")
    elif (pv := r.get("baseline_with_pv")) is not None:
        lines.append(f"the same trucks with the same PV, no battery: {pv['fuel_l']:,.0f} l; the battery's part: "
                     f"{r['battery_diesel_saved_litres']:,.0f} l, {r['battery_cost_saved_per_year']:,.0f} a year")
    fin = r["financials"]
    if fin is not None:
        payback = "never" if fin["simple_payback_years"] is None else f"{fin['simple_payback_years']:.1f} y"
        lines.append(f"storage (on the battery's part): payback {payback}, NPV {fin['npv']:,.0f}")
    return lines



def battery_sweep(cfg: BacktestConfig, opts: BacktestOptions, scales: list[float],
                  genset_plan: Forecast | None = None) -> list[dict[str, Any]]:
    """The same run (its gensets on the same plan) with the battery's energy scaled by each of
    `scales`: how big must it be?"""
    rows = []
    for k in scales:
        _, r = run_offgrid(with_battery_scale(cfg, k), opts, genset_plan=genset_plan)
        rows.append({"scale": k, "battery_wh": r["run"]["battery_wh"],
                     **{x: r[x] for x in ("unserved_kwh", "diesel_litres", "co2_saved_kg", "genset_starts",
                                          "genset_hours", "cost_saved")}})
    return rows


def sweep_lines(rows: list[dict[str, Any]]) -> list[str]:
    return [f"battery {r['battery_wh'] / 1e6:g} MWh: unserved {r['unserved_kwh']:,.1f} kWh, diesel "
            f"{r['diesel_litres']:,.0f} l, starts {r['genset_starts']:.0f}, saved {r['cost_saved']:,.0f}" for r in rows]
