"""Fast-time engine: the live period step (ems/period.py) against the plant model.

Per step of `step_s` (the control period of the backtest):

1. plant read: a `SiteSnapshot` straight from the plant's units (no sockets): meter =
   the step's load minus what the battery delivers now, BMS and PCS readings per unit;
   where the file names racks, their share of the load under the caps in force
   (ems/backtest/racks.py), the caps the step decides holding back the step's load;
   The live loop runs every second and follows the load within a step; giving the step's
   load to the decision made at its start stands in for that;
2. planning: the planning runner (ems/planning/runner.py, as live) records the step just
   done and, when due, builds the next request from the history so far (never the
   future), which is solved at once;
3. the period step, exactly as live: reserve floor, import cap, arbitrage, dispatch and
   the safety envelope;
4. plant command: each unit's PCS gets its setpoint; the plant integrates the step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from ems.backtest.config import BacktestConfig
from ems.backtest.errors import BacktestInputError
from ems.backtest.genset_planning import GensetPlanning
from ems.backtest.microgrid_account import MicrogridAccount, MicrogridTrace
from ems.backtest.racks import ReplayedRacks
from ems.demand import DemandMeter
from ems.dr_book import DrBook
from ems.model.dr import DrEvent
from ems.model.racks import RacksReading
from ems.model.readings import MeterReading, PcsMode
from ems.model.snapshot import SiteSnapshot, unit_snapshot
from ems.period import StepParams, StepState, step
from ems.planning.builder import BatteryNow, PlanBuilder
from ems.planning.lp import PlanError
from ems.planning.runner import PlanningRunner
from ems.planning.settings import planner_settings
from ems.plant_read import UnitReader
from ems.step_params import step_params
from ems.tariff.model import Tariff
from plant.config import PlantConfig, SimBessConfig
from plant.plant import Plant
from policies.demand_response import EventTally

FloatArray = npt.NDArray[np.float64]
Progress = Callable[[int, int], None]

_EPOCH = datetime(1970, 1, 1)
_NO_RACKS = RacksReading((), (), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), 1.0)


@dataclass(frozen=True)
class Trace:
    """What happened, per step (averages over the step; SoC at its end)."""

    start: datetime
    step_s: int
    load_w: FloatArray  # the site without battery (net of PV)
    grid_w: FloatArray  # > 0 import
    battery_w: FloatArray  # > 0 discharge
    soc: FloatArray  # site SoC (energy-weighted) at the end of the step
    cap_w: FloatArray  # import cap in force (NaN: none)
    reason: npt.NDArray[np.int16]  # the period's reason code
    setpoint_w: FloatArray  # site setpoint written, after the envelope
    unit_setpoint_w: dict[str, FloatArray]  # each unit's setpoint written
    reserve_soc: FloatArray  # the reserve floor in force (0: none)
    charged_wh: float
    discharged_wh: float
    capacity_wh: float
    soc_initial: float
    charge_efficiency: float  # AC -> stored, the units' weighted by capacity: what a stored kWh cost at the meter
    plans: int
    plan_failures: int
    plan_time_s: float
    wall_time_s: float
    solver_time_s: float = 0.0  # of plan_time_s, HiGHS's own solves
    request_time_s: float = 0.0  # of plan_time_s, building the requests (forecast, tariff signals)
    microgrid: MicrogridTrace | None = None  # off-grid or weak-grid: gensets, fuel, unserved, curtailed
    dr_results: tuple[EventTally, ...] = ()  # each demand-response event replayed
    # where the file names racks: the GPU energy the caps held back and the racks' demand during events, by tier
    gpu_held_wh_by_tier: tuple[float, ...] = ()
    gpu_demand_wh_by_tier: tuple[float, ...] = ()


def plant_for_backtest(cfg: BacktestConfig, step_s: int) -> PlantConfig:
    """The battery units as a plant, with what a backtest needs: one sub-step per step and no
    heartbeat timeout (the engine commands every step)."""
    bess = [SimBessConfig.model_validate(u.model_dump(exclude={"id"}) | {"heartbeat_timeout_s": 0.0})
            for u in cfg.battery_units]
    return PlantConfig(max_substep_s=float(step_s), bess=bess)


def _planning(cfg: BacktestConfig, tariff: Tariff | None, start: datetime, step_s: int,
              warmup_w: FloatArray | None, demand: DemandMeter) -> PlanningRunner | None:
    """The planning runner, seeded with the load before `start` as a controller that has
    been running a while would have it; None without arbitrage."""
    settings = planner_settings(cfg.policies, cfg.grid_connection)
    a = cfg.policies.arbitrage
    if settings is None or a is None:
        return None
    if tariff is None:
        raise BacktestInputError("arbitrage is configured: a tariff is needed")
    if settings.step_s % step_s:
        raise BacktestInputError(f"the planning step ({settings.step_s:g} s) must be a multiple of "
                                 f"the backtest step ({step_s} s)")
    runner = PlanningRunner(PlanBuilder(tariff, settings), a.planning_interval_s, demand, reuse_lp=a.reuse_lp)
    t0 = (start - _EPOCH).total_seconds()
    if warmup_w is not None:
        for j, w in enumerate(warmup_w):
            runner.observe(t0 - (warmup_w.size - 1 - j) * step_s, step_s, float(w))
    return runner


def known_ahead(net_w: FloatArray, t0_local_s: float, step_s: int, plan_step_s: float, ahead_h: float
                ) -> Callable[[float, FloatArray], FloatArray]:
    """A diagnostic, not a forecast: the true net load laid over the first `ahead_h` hours of
    each plan's forecast (each plan step the mean of its backtest steps), so a run prices
    what a forecast that good would be worth (docs/backtest.md, "What a better forecast is worth")."""
    per = max(1, round(plan_step_s / step_s))
    steps = max(1, round(ahead_h * 3600.0 / plan_step_s))  # under a step: the first (else none, silently)

    def overlay(start_local_s: float, forecast_w: FloatArray) -> FloatArray:
        i0 = round((start_local_s - t0_local_s) / step_s)  # < 0: the plan starts before the run
        first = -(i0 // per) if i0 < 0 else 0  # the first plan step wholly within the series
        last = min(steps, forecast_w.size, (net_w.size - i0) // per)
        out = forecast_w.copy()
        if last > first:
            a = i0 + first * per
            out[first:last] = net_w[a: a + (last - first) * per].reshape(last - first, per).mean(axis=1)
        return out
    return overlay


def run_backtest(cfg: BacktestConfig, tariff: Tariff | None, start: datetime, step_s: int,
                 load_w: FloatArray, pv_w: FloatArray | None = None,
                 progress: Progress | None = None, params: StepParams | None = None,
                 warmup_w: FloatArray | None = None, genset_planning: GensetPlanning | None = None,
                 dr_events: Sequence[DrEvent] = (), known_load_ahead_h: float | None = None) -> Trace:
    """Run the site's configured policies over `load_w` (W per step, before PV).

    `tariff` is needed when arbitrage is configured (the planner plans against it).
    `warmup_w` (net load of the steps just before `start`) seeds the planner's history.
    `genset_planning`: off-grid or weak-grid, the gensets' MILP schedule, handed to the step.
    `known_load_ahead_h`: a diagnostic: the planner sees the true net load that far ahead."""
    t_wall = time.perf_counter()
    n = load_w.size
    net_w = load_w if pv_w is None else load_w - pv_w
    params = params or step_params(cfg)
    # the site's demand meter, in naive tariff time (the series' own clock)
    demand = DemandMeter(tariff) if tariff is not None else DemandMeter()
    runner = _planning(cfg, tariff, start, step_s, warmup_w, demand)
    if known_load_ahead_h is not None:
        if runner is None:  # else ignored: the run would read as "knowing the load is worth nothing"
            raise BacktestInputError("--known-load-ahead-h: no arbitrage planner reads a load forecast in this run "
                                     "(policies.arbitrage is not configured, or --peak-shaving-only)")
        runner.builder.known_ahead = known_ahead(net_w, (start - _EPOCH).total_seconds(), step_s,
                                                 runner.builder.s.step_s, known_load_ahead_h)

    unit_ids = [u.id for u in cfg.battery_units]
    plant = Plant(plant_for_backtest(cfg, step_s), unit_ids, [], [], 1.0)
    units = [plant.units[uid] for uid in unit_ids]
    stale_after = cfg.control.bess_stale_after_s
    t0_local = (start - _EPOCH).total_seconds()
    readers = [(uid, UnitReader(u)) for uid, u in zip(unit_ids, units, strict=True)]
    total_cap_wh = sum(r.capacity_wh for _, r in readers)
    rated_w = sum(r.rated_power_w for _, r in readers)
    for u in units:
        u.command_mode(PcsMode.GRID_FOLLOWING, 0.0)

    # per-step results in lists (a numpy item write costs more than an append), arrays at the end
    grid: list[float] = []
    battery: list[float] = []
    soc: list[float] = []
    setpoints: list[float] = []
    per_unit: dict[str, list[float]] = {uid: [] for uid in unit_ids}
    cap = np.full(n, np.nan)
    reserve_soc = np.zeros(n)
    reason = np.zeros(n, dtype=np.int16)
    soc_initial = site_soc = sum(r.unit.soc * r.capacity_wh for _, r in readers) / total_cap_wh
    net_list: list[float] = np.asarray(net_w, dtype=np.float64).tolist()
    state = StepState()
    book = DrBook(keep_results=0)  # the live loop's event book: the same event in force
    for e in dr_events:
        book.add_unbounded(e)
    dr_results: list[EventTally] = []
    precharge_s = 0.0 if params.dr is None else params.dr.precharge_s
    horizon_s = 0.0 if runner is None else runner.builder.s.horizon_steps * runner.builder.s.step_s
    last_setpoint_w = 0.0
    battery_now_w = plant.battery_power_w
    plan_time = 0.0
    request_time = 0.0  # of plan_time: building the requests (forecast, tariff signals)
    report_every = max(1, n // 200)
    step_s_f = float(step_s)
    account = None if params.microgrid is None else MicrogridAccount(params.microgrid,
                                                                    cfg.grid_connection.export_limit_w)
    pv_list: list[float] = [0.0] * n if pv_w is None else np.asarray(pv_w, dtype=np.float64).tolist()
    dr_p = params.dr
    racks = None if cfg.racks is None else ReplayedRacks(
        cfg.racks, {} if dr_p is None else dr_p.tier_of_row, 0 if dr_p is None else dr_p.default_tier)
    gross_list: list[float] = np.asarray(load_w, dtype=np.float64).tolist()
    served: list[float] = []  # the net load the site drew: less what the racks' caps held back
    for k in range(n):
        t = float(k * step_s)
        local_t = t0_local + t
        if runner is not None:
            if k > 0:  # the step just done, as the live planner records each period
                runner.observe(local_t, step_s_f, served[k - 1])
            ahead = [] if params.dr is None else book.ahead(local_t, horizon_s)  # the events the plan knows
            if runner.due(t, site_soc, ahead):
                t_plan = time.perf_counter()
                req = runner.request(local_t, t, BatteryNow(site_soc, total_cap_wh, rated_w, rated_w), ahead)
                request_time += time.perf_counter() - t_plan
                if req is not None:
                    try:
                        runner.accept(req, runner.solve(req), local_t, t)
                    except PlanError as exc:  # the old plan goes stale; arbitrage stands down, as live
                        runner.failed(exc)
                plan_time += time.perf_counter() - t_plan
        load_k = net_list[k]
        # plant read
        # what the grid (off-grid: nothing) supplies of it; the gensets' part is theirs; the racks
        # read (and the meter sees) the step's load under the caps in force
        genset_w = 0.0 if account is None else account.genset_now_w
        held_w = 0.0 if racks is None else racks.held_w(gross_list[k])
        meter = MeterReading(load_k - held_w - battery_now_w - genset_w, 230.0, 50.0, 0.0, 0.0, t)
        snaps = tuple(unit_snapshot(uid, *r.read(t), t, stale_after) for uid, r in readers)
        snap = SiteSnapshot(t, local_t, step_s, meter, snaps, _NO_RACKS if racks is None else racks.reading(
            gross_list[k]), last_setpoint_w)
        # the period step
        schedule = (None if genset_planning is None
                    else genset_planning.schedule_at(k, t, site_soc, state.microgrid.gensets))
        event = None if params.dr is None else book.current(local_t, precharge_s)
        if runner is not None:  # the program's baseline where the event asks a reduction from it
            event = runner.with_program_baseline(event, local_t, 0.0)
        result = step(snap, params, state, None if runner is None else runner.view, genset_plan=schedule, dr=event)
        state = result.state
        if result.dr is not None and result.dr.finished is not None:
            dr_results.append(result.dr.finished)
        if racks is not None:  # the step's caps act on the step's load, as its setpoints on the battery
            caps = {} if result.dr is None else result.dr.caps_w
            load_k -= racks.apply(caps, gross_list[k], step_s_f, result.dr is not None and result.dr.phase == "active")
        served.append(load_k)
        # plant command; no heartbeat: its timeout is off here
        last_setpoint_w = 0.0
        for uid, r in readers:
            share_w = result.unit_setpoints_w[uid]
            r.unit.command_setpoint(share_w)
            per_unit[uid].append(share_w)
            last_setpoint_w += share_w
        # the plant's units, one sub-step each (PCS ramp, BMS derating, efficiencies); the site
        # around them is only load - battery here, so Plant.step's meter noise and statistics
        # (a third of a 1-min year) are skipped
        t_end = t + step_s
        battery_now_w = 0.0
        for u in units:
            u.step(t_end, step_s_f)
            battery_now_w += u.power_w
        grid.append(load_k - battery_now_w if account is None
                    else account.settle(load_k, pv_list[k], battery_now_w, result))
        demand.add(grid[k], step_s_f, local_t + step_s_f)
        battery.append(battery_now_w)
        setpoints.append(last_setpoint_w)
        site_soc = sum(r.unit.soc * r.capacity_wh for _, r in readers) / total_cap_wh
        soc.append(site_soc)
        if result.cap_w is not None and math.isfinite(result.cap_w):
            cap[k] = result.cap_w
        reserve_soc[k] = result.reserve_soc
        reason[k] = result.reason.value
        if progress is not None and (k % report_every == 0 or k == n - 1):
            progress(k + 1, n)
    return Trace(
        start=start, step_s=step_s, load_w=np.asarray(net_w, dtype=np.float64), grid_w=np.array(grid, dtype=np.float64),
        battery_w=np.array(battery, dtype=np.float64), soc=np.array(soc, dtype=np.float64), cap_w=cap, reason=reason,
        setpoint_w=np.array(setpoints, dtype=np.float64),
        unit_setpoint_w={uid: np.array(v, dtype=np.float64) for uid, v in per_unit.items()},
        reserve_soc=reserve_soc,
        charged_wh=sum(u.energy_charged_wh for u in units), discharged_wh=sum(u.energy_discharged_wh for u in units),
        capacity_wh=total_cap_wh, soc_initial=soc_initial,
        charge_efficiency=sum(u.charge_efficiency * r.capacity_wh
                              for u, (_, r) in zip(cfg.battery_units, readers, strict=True)) / total_cap_wh,
        plans=0 if runner is None else runner.solves, plan_failures=0 if runner is None else runner.failures,
        plan_time_s=plan_time, wall_time_s=time.perf_counter() - t_wall,
        solver_time_s=0.0 if runner is None else runner.solver_time_s, request_time_s=request_time,
        microgrid=None if account is None else account.trace(
            np.asarray(load_w, dtype=np.float64), np.zeros(n) if pv_w is None else np.asarray(pv_w, dtype=np.float64),
            state.microgrid.gensets),
        dr_results=tuple(dr_results) if state.dr.tally is None else (*dr_results, state.dr.tally),
        gpu_held_wh_by_tier=() if racks is None else tuple(racks.held_wh.tolist()),
        gpu_demand_wh_by_tier=() if racks is None else tuple(racks.demand_wh.tolist()),
    )
