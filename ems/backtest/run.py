"""One backtest from files to a `Result`: what `ems backtest` runs."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np

from ems.backtest.ageing_run import lifetime_ageing
from ems.backtest.config import BacktestConfig
from ems.backtest.dr_events import check_events_in_run, load_dr_events
from ems.backtest.engine import Progress, Trace, run_backtest
from ems.backtest.errors import BacktestInputError
from ems.backtest.financials import Economics
from ems.backtest.foresight import BatteryModel, Foresight, month_bounds, perfect_foresight
from ems.backtest.results import Result, charge_price, evaluate, soc_at_month_edges, stored_energy_price
from ems.backtest.series import FloatArray, PowerSeries, read_power_csv, resample, window
from ems.backtest.setup import Setup, setup_of
from ems.config import DemandResponseConfig
from ems.planning.depth_wear import WearPrice
from ems.planning.settings import load_tariff, may_export
from ems.step_params import step_params
from ems.tariff import BillInputError, check_prices_cover
from ems.tariff.model import Tariff
from policies.reserve import floor_soc

WARMUP_DAYS = 28
DEFAULT_WEAR_PER_KWH = 0.01
FORESIGHT_STEP_S = 900


@dataclass(frozen=True)
class BacktestOptions:
    load_csv: Path
    tariff: Path | None = None  # default: policies.arbitrage.tariff
    prices_csv: Path | None = None
    pv_csv: Path | None = None
    load_scale: float = 1.0
    pv_scale: float = 1.0
    unit: str = "kw"
    start: datetime | None = None  # first step of the run; default: the load series' start
    series_start: datetime | None = None  # date of the first value of a series without timestamps
    step_s: int | None = None  # default: the planning step, else 900 s
    days: float | None = None  # default: the whole series
    foresight: bool = True
    peak_shaving_only: bool = False  # run without arbitrage, whatever the site file says
    dr_events_csv: Path | None = None  # demand-response events to replay (ems/backtest/dr_events.py)
    # a diagnostic: the planner sees the true load this many hours ahead (what a forecast is worth)
    known_load_ahead_h: float | None = None


@dataclass(frozen=True)
class Backtest:
    result: Result
    trace: Trace
    foresight: Foresight | None
    tariff: Tariff
    setup: Setup  # what ran, for the report
    pv_w: FloatArray | None = None  # the run's PV per step (the trace's load is net of it)


def load_series(opts: BacktestOptions, step: int
                ) -> tuple[PowerSeries, PowerSeries | None, datetime, FloatArray, FloatArray | None]:
    """The run's load and PV at `step` s as the options say: the whole series, the start, and
    the run's window of each from its start."""
    if step <= 0 or 3600 % step:  # (-300 passes Python's modulo)
        raise BacktestInputError(f"--step-s: step {step} s must be positive and divide 3600")
    if opts.days is not None and not 0 < opts.days < math.inf:  # nan fails both
        raise BacktestInputError(f"--days: {opts.days} is not a positive number of days")
    unit: Literal["kw", "w"] = "w" if opts.unit == "w" else "kw"
    load = resample(read_power_csv(opts.load_csv, unit=unit, scale=opts.load_scale, start=opts.series_start), step)
    start = opts.start or load.start
    n = load.values_w.size - round((start - load.start).total_seconds() / step)
    if n <= 0:
        raise BacktestInputError(f"--start {start:%Y-%m-%d %H:%M}: not before the end of the load series "
                                 f"({load.start:%Y-%m-%d %H:%M} .. {load.end:%Y-%m-%d %H:%M})")
    if opts.days is not None:
        wanted = round(opts.days * 86400 / step)
        if wanted > n:  # it ran what there was, and the summary read as the days asked for
            raise BacktestInputError(f"--days {opts.days:g}: the load series has {n * step / 86400:.4g} days from "
                                     f"{start:%Y-%m-%d %H:%M} ({load.start:%Y-%m-%d %H:%M} .. "
                                     f"{load.end:%Y-%m-%d %H:%M})")
        n = wanted
    pv = None if opts.pv_csv is None else resample(
        read_power_csv(opts.pv_csv, unit=unit, scale=opts.pv_scale, start=opts.series_start), step)
    if pv is not None and float(pv.values_w.sum()) < 0:  # as `ems size` refuses it: it billed PV as more load
        raise BacktestInputError(f"{opts.pv_csv}: the PV series sums to less than 0; PV is generation, > 0")
    # which file falls short: the load's and the PV's said alike "the series ... does not cover"
    return (load, pv, start, window(load, start, n, f"{opts.load_csv}: the load series"),
            None if pv is None else window(pv, start, n, f"{opts.pv_csv}: the PV series"))


def _warmup(series: PowerSeries, start: datetime, step_s: int) -> np.ndarray | None:
    """The load before `start` for the planner's history: the series' own past, or for a
    series that is one typical year starting at `start`, its last weeks (wrapped)."""
    n = WARMUP_DAYS * 86400 // step_s
    before = start - timedelta(days=WARMUP_DAYS)
    if before >= series.start:
        return window(series, before, n)
    if series.values_w.size * step_s >= 364 * 86400 and start == series.start:
        out: np.ndarray = series.values_w[-n:]
        return out
    return None


def warmup_net(load: PowerSeries, pv: PowerSeries | None, start: datetime, step_s: int) -> np.ndarray | None:
    """The net load (load less PV) before `start` that seeds the planner's history."""
    warm = _warmup(load, start, step_s)
    if pv is not None:
        pv_warm = _warmup(pv, start, step_s)
        warm = None if warm is None or pv_warm is None else warm - pv_warm
    return warm


def battery_model(cfg: BacktestConfig, trace: Trace) -> BatteryModel:
    bess = cfg.battery_units
    b, a = cfg.policies.battery, cfg.policies.arbitrage
    rated = sum(u.rated_power_w for u in bess)
    return BatteryModel(
        capacity_wh=trace.capacity_wh, max_charge_w=rated, max_discharge_w=rated,
        charge_efficiency=bess[0].charge_efficiency, discharge_efficiency=bess[0].discharge_efficiency,
        # the reserve the live step keeps (arbitrage's share, the outage reserve), so no plan beats it by
        # spending what the site must keep
        soc_min=b.soc_min, soc_max=b.soc_max, reserve_soc=floor_soc(step_params(cfg).reserve, trace.capacity_wh),
        soc_initial=trace.soc_initial,
        wear_cost_per_kwh=DEFAULT_WEAR_PER_KWH if a is None else a.wear_cost_per_kwh,
        wear_depth_cost_per_kwh=() if a is None else tuple(a.wear_depth_cost_per_kwh),
        allow_export=may_export(cfg.policies, cfg.grid_connection),
    )


def dr_summary(trace: Trace) -> dict[str, object]:
    """The replayed events: revenue, energy shifted, the battery's part, minutes at target, the
    GPU energy the racks' caps held back and the throughput given up by tier (where the file
    names racks: the replay's truth, and the controller's own estimate in each event's
    figures), and each event's figures."""
    r = trace.dr_results
    minutes = sum(t.minutes for t in r)
    held, demand = trace.gpu_held_wh_by_tier, trace.gpu_demand_wh_by_tier
    return {"events": len(r), "revenue": round(sum(t.revenue for t in r), 2),
            "shifted_kwh": round(sum(t.shifted_wh for t in r) / 1e3, 1),
            "battery_kwh": round(sum(t.battery_wh for t in r) / 1e3, 1),
            "share_minutes_at_target": None if minutes == 0 else sum(t.minutes_at_target for t in r) / minutes,
            "gpu_throttled_kwh": round(sum(held) / 1e3, 1),
            "gpu_throttled_kwh_by_tier": {str(k): round(w / 1e3, 1) for k, w in enumerate(held) if demand[k] > 0},
            "throughput_given_up_by_tier": {str(k): round(held[k] / demand[k], 4)
                                            for k in range(len(demand)) if demand[k] > 0},
            "results": [t.summary() for t in r]}


def check_prices(tariff: Tariff, start: datetime, step_s: int, n_steps: int) -> None:
    """Dynamic prices that do not cover the run, or at a step finer than it, end here, before
    the run, with what they cover (the bill at its end raised a traceback)."""
    if tariff.dynamic_prices is not None:
        try:
            check_prices_cover(tariff.dynamic_prices, start, step_s, n_steps)
        except BillInputError as exc:
            raise BacktestInputError(f"--prices (or policies.arbitrage.prices_csv): {exc}") from None


def run(cfg: BacktestConfig, opts: BacktestOptions, progress: Progress | None = None) -> Backtest:
    arb = cfg.policies.arbitrage
    tariff_path = opts.tariff or (None if arb is None else arb.tariff)
    if tariff_path is None:
        raise BacktestInputError("no tariff: pass --tariff or set policies.arbitrage.tariff")
    tariff = load_tariff(tariff_path, opts.prices_csv or (None if arb is None else arb.prices_csv))
    if opts.peak_shaving_only:
        cfg = cfg.model_copy(update={"policies": cfg.policies.model_copy(update={"arbitrage": None})})
        arb = None
    step = opts.step_s or (arb.step_s if arb is not None else 900)
    load, pv, start, load_w, pv_w = load_series(opts, step)
    n = load_w.size
    check_prices(tariff, start, step, n)
    warm = warmup_net(load, pv, start, step)
    events = [] if opts.dr_events_csv is None else load_dr_events(opts.dr_events_csv)
    if opts.dr_events_csv is not None:
        check_events_in_run(events, opts.dr_events_csv, start, n * step)
    if events and cfg.policies.demand_response is None:  # the replay needs the policy; its defaults will do
        cfg = cfg.model_copy(update={"policies": cfg.policies.model_copy(
            update={"demand_response": DemandResponseConfig()})})
    trace = run_backtest(cfg, tariff, start, step, load_w, pv_w, progress=progress,
                         warmup_w=warm, dr_events=events, known_load_ahead_h=opts.known_load_ahead_h)
    fs = None
    model = battery_model(cfg, trace)
    if opts.foresight:
        # the bound at 15 min where the run's steps fill whole quarter hours from a quarter hour
        # on; else at the run's own step (a run ending 2 steps into a month, or starting at :05,
        # gave the bound other months than the run's)
        into_day_s = start.hour * 3600 + start.minute * 60 + start.second
        whole = FORESIGHT_STEP_S % step == 0 and n % (FORESIGHT_STEP_S // step) == 0 \
            and into_day_s % FORESIGHT_STEP_S == 0
        pf_step = FORESIGHT_STEP_S if whole else step
        k = pf_step // step
        m = trace.load_w.size // k
        net = trace.load_w[: m * k].reshape(m, k).mean(axis=1)
        # the bounds value the charge they keep as the results credit it (a kWh kept is worth
        # its buying back): each maximises what it is judged on
        kept_price = stored_energy_price(
            tariff, trace, charge_price(tariff, trace.start, step, trace.battery_w, trace.load_w))
        fs = perfect_foresight(tariff, start, pf_step, net, model, soc_final_min=float(trace.soc[-1]),
                               final_value_per_kwh=kept_price)
        edges = soc_at_month_edges(trace)
        t0 = time.perf_counter()
        month_grid, month_wear, month_end = month_bounds(tariff, start, pf_step, net, model, edges, kept_price)
        fs = dataclasses.replace(fs, month_grid_w=month_grid, month_wear_cost=month_wear, month_end_soc=month_end,
                                 solve_time_s=fs.solve_time_s + time.perf_counter() - t0)
    e = cfg.economics
    econ = None if e is None else Economics(e.capex, e.om_per_year, e.discount_rate, e.lifetime_years,
                                            e.degradation_per_year, e.end_of_life_cost)
    lifetime = None
    if e is not None and e.ageing is not None and econ is not None:
        lifetime = lifetime_ageing(trace, e.ageing, e.lifetime_years, e.capex,
                                   (cfg.policies.battery.soc_min, cfg.policies.battery.soc_max))
        econ = replace(econ, capacity_by_year=lifetime.path.capacity_by_year(),
                       replacement_cost=e.capex if e.ageing.replacement_cost is None else e.ageing.replacement_cost,
                       replacement_years=lifetime.path.replacement_years)
    wear = DEFAULT_WEAR_PER_KWH if arb is None else arb.wear_cost_per_kwh
    b = cfg.policies.battery
    price = WearPrice(wear, () if arb is None else tuple(arb.wear_depth_cost_per_kwh), b.soc_min, b.soc_max)
    result = evaluate(tariff, trace, fs, econ, price)
    if lifetime is not None:
        result = replace(result, ageing=lifetime.summary())
    result.run.update({
        "start": start.isoformat(), "step_s": step, "steps": n, "days": n * step / 86400,
        "policies": "peak_shaving" if arb is None else "peak_shaving+arbitrage",
        "plans": trace.plans, "plan_failures": trace.plan_failures,
        "plan_time_s": trace.plan_time_s, "wall_time_s": trace.wall_time_s,
        "load_csv": str(opts.load_csv), "load_scale": opts.load_scale, "tariff": str(tariff_path),
    })
    if events:
        result.run["dr"] = dr_summary(trace)
    setup = setup_of(cfg, step, model.reserve_soc, None if fs is None else fs.step_s, price, econ)
    return Backtest(result, trace, fs, tariff, setup, pv_w)
