"""Genset dispatch on an off-grid or weak-grid site: which gensets run, and at what power.

Pure: `decide(inputs, params, state)` each period. Each genset goes
off -> starting (start delay) -> warm-up (no load) -> running -> cool-down (no load) -> off;
a start during cool-down takes it straight back to running (still warm, not a new start).

* Energy: SoC at or under `start_soc` latches "recharge" (GENSET_START_LOW_SOC) until SoC
  reaches `stop_soc` (hysteresis; GENSET_STOP_SOC_RECOVERED). While recharging, enough
  gensets run to carry the whole deficit at their efficient load (the battery no longer
  discharges); one stops only when the rest carry it at `stage_down_load_fraction` of their
  efficient load.
* Power: when the load less the grid's allowance exceeds what the battery can give (times
  `battery_margin`), the next genset is staged in (GENSET_START_LOAD); the last one staged
  in stops once the load fits on one fewer at `stage_down_load_fraction` of their rating
  (GENSET_STOP_LOAD_FELL).
* A genset never stops before `min_run_s` of running (GENSET_MIN_RUN_HOLD).
* Running gensets share the load equally at no less than their efficient load
  (`efficient_load_fraction`, the fuel curve's best point by default), the surplus charging
  the battery (GENSET_CHARGING) as far as it can take it; never under `min_load_fraction`
  unless nothing could take the power (then `below_min_load_s` counts it: wet stacking).
* Where the planner's schedule is fresh (ems/planning/genset_milp.py), it decides the
  energy: at least as many gensets run as it has on (GENSET_START_PLAN, GENSET_STOP_PLAN),
  giving what it planned (at least the deficit); the power rule and the SoC latch stay as
  backstops (a forecast can be wrong).
* Of the gensets that are off, the one with the fewest running hours starts first
  (maintenance hours spread across the fleet). A genset that reports a failed start is out
  (GENSET_START_FAILED; GENSET_TRIPPED when it had been running) while it does, and the
  next one is staged in at once.

Fuel, running hours and starts accumulate in the state, so live and backtest report them
from the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from ems.model.reasons import Reason
from policies.fuel_curve import FuelCurve


class Phase(StrEnum):
    OFF = "off"
    STARTING = "starting"
    WARMUP = "warmup"
    RUNNING = "running"
    COOLDOWN = "cooldown"


@dataclass(frozen=True, slots=True)
class GensetSpec:
    genset_id: str
    rated_w: float
    fuel: FuelCurve
    min_load_fraction: float = 0.3
    efficient_load_fraction: float = 0.75
    start_delay_s: float = 10.0
    warmup_s: float = 60.0
    min_run_s: float = 1800.0
    cooldown_s: float = 300.0


@dataclass(frozen=True, slots=True)
class DispatchParams:
    gensets: tuple[GensetSpec, ...]
    start_soc: float = 0.30
    stop_soc: float = 0.80
    battery_margin: float = 0.9  # plan to load the battery up to this share of what it can give
    stage_down_load_fraction: float = 0.7


@dataclass(frozen=True, slots=True)
class GensetUnitState:
    phase: Phase = Phase.OFF
    since_s: float | None = None
    started_at_s: float | None = None  # when it last reached running
    output_w: float = 0.0
    fuel_l: float = 0.0
    run_s: float = 0.0  # starting to the end of cool-down: engine hours
    loaded_s: float = 0.0
    below_min_load_s: float = 0.0
    starts: int = 0
    started_for: Reason | None = None  # why it was last started


@dataclass(frozen=True, slots=True)
class DispatchState:
    units: tuple[GensetUnitState, ...] = ()
    recharge: bool = False  # the SoC latch
    stage_order: tuple[int, ...] = ()  # indices of units started, oldest first


@dataclass(frozen=True, slots=True)
class DispatchInputs:
    now_s: float
    period_s: float
    soc: float | None  # site SoC; None: unknown (no latch change)
    demand_w: float  # what the site needs from the battery, gensets and grid (load less PV)
    grid_allowance_w: float  # what the grid may give (0 off-grid; the import limit on a weak grid)
    battery_discharge_w: float  # what the battery can give now
    battery_charge_w: float  # what it can take now
    failed: frozenset[str] = frozenset()  # gensets that report a failed start: out of service while they do
    planned_on: int | None = None  # the planner's schedule: gensets on this period (None: no fresh plan)
    planned_w: float | None = None  # ... and what they give together


@dataclass(frozen=True, slots=True)
class GensetEvent:
    genset_id: str
    action: str  # "start", "stop" or "failed"
    reason: Reason


@dataclass(frozen=True, slots=True)
class Dispatch:
    output_w: dict[str, float]  # each genset's power this period
    phases: dict[str, Phase]
    events: tuple[GensetEvent, ...]  # starts and stops commanded this period, each with its reason
    held: tuple[str, ...] = ()  # gensets due to stop, kept running for their minimum run
    reason: Reason | None = None  # GENSET_CHARGING while gensets carry a surplus into the battery

    @property
    def total_w(self) -> float:
        return sum(self.output_w.values())

    @property
    def commanded_on(self) -> tuple[str, ...]:
        return tuple(g for g, ph in self.phases.items() if ph not in (Phase.OFF, Phase.COOLDOWN))


def initial_state(p: DispatchParams) -> DispatchState:
    return DispatchState(units=tuple(GensetUnitState() for _ in p.gensets))


def _advance(u: GensetUnitState, g: GensetSpec, now_s: float) -> GensetUnitState:
    """Phases that end by time alone, each at the instant it ends (a long period may pass several)."""
    since = now_s if u.since_s is None else u.since_s
    if u.phase is Phase.STARTING and now_s - since >= g.start_delay_s:
        since += g.start_delay_s
        u = replace(u, phase=Phase.WARMUP, since_s=since)
    if u.phase is Phase.WARMUP and now_s - since >= g.warmup_s:
        since += g.warmup_s
        u = replace(u, phase=Phase.RUNNING, since_s=since, started_at_s=since)
    if u.phase is Phase.COOLDOWN and now_s - since >= g.cooldown_s:
        u = replace(u, phase=Phase.OFF, since_s=since + g.cooldown_s)
    return u


def _online(u: GensetUnitState) -> bool:
    return u.phase in (Phase.STARTING, Phase.WARMUP, Phase.RUNNING)


def decide(x: DispatchInputs, p: DispatchParams, state: DispatchState) -> tuple[Dispatch, DispatchState]:
    units = list(state.units) if len(state.units) == len(p.gensets) else [GensetUnitState() for _ in p.gensets]
    units = [_advance(u, g, x.now_s) for u, g in zip(units, p.gensets, strict=True)]
    events: list[GensetEvent] = []
    for i, g in enumerate(p.gensets):  # a start that failed: out, and the next one staged in below
        if g.genset_id in x.failed and _online(units[i]):
            tripped = units[i].phase is Phase.RUNNING  # it had started: a trip, not a failed start
            units[i] = replace(units[i], phase=Phase.OFF, since_s=x.now_s)
            events.append(GensetEvent(g.genset_id, "failed",
                                      Reason.GENSET_TRIPPED if tripped else Reason.GENSET_START_FAILED))
    order = [i for i in state.stage_order if _online(units[i])]
    recharge = state.recharge
    if x.soc is not None:
        if x.soc <= p.start_soc:
            recharge = True
        elif x.soc >= p.stop_soc:
            recharge = False
    held: list[str] = []
    deficit_w = x.demand_w - x.grid_allowance_w  # what the battery and gensets must give
    for_power_w = deficit_w - p.battery_margin * max(0.0, x.battery_discharge_w)

    def needed(need_w: float, fraction: float | None, scale: float = 1.0) -> int:
        """Gensets (largest first) to give `need_w` at `scale` x `fraction` of rating (None: efficient load)."""
        n, cap = 0, 0.0
        for i in sorted(range(len(p.gensets)), key=lambda j: p.gensets[j].rated_w, reverse=True):
            if cap >= need_w:
                break
            g = p.gensets[i]
            cap += g.rated_w * (g.efficient_load_fraction if fraction is None else fraction) * scale
            n += 1
        return n

    # power: what the battery cannot give; energy (recharging): the whole deficit at efficient load, so
    # the battery stops discharging. A genset stops only when the rest carry it at a lower loading
    # (`stage_down_load_fraction` of the loading that started it): hysteresis, no chatter
    down = p.stage_down_load_fraction
    n_power_up, n_power_keep = needed(for_power_w, 1.0), needed(for_power_w, down)
    n_up = max(n_power_up, max(1, needed(deficit_w, None)) if recharge else 0)
    n_keep = max(n_power_keep, max(1, needed(deficit_w, None, down)) if recharge else 0)
    # the planner's schedule, where fresh, decides the energy; power and the SoC latch stay backstops
    plan_n = x.planned_on
    if plan_n is not None:
        n_up, n_keep = max(n_up, plan_n), max(n_keep, plan_n)
    # stage in
    while len(order) < min(n_up, len(p.gensets)):
        idle = [i for i in range(len(p.gensets)) if not _online(units[i]) and p.gensets[i].genset_id not in x.failed]
        if not idle:
            break
        # a warm one first (cool-down: no new start), then the fewest hours
        i = min(idle, key=lambda j: (units[j].phase is not Phase.COOLDOWN, units[j].run_s))
        u = units[i]
        if for_power_w > 0 and n_power_up > len(order):
            why = Reason.GENSET_START_LOAD
        elif plan_n is not None and plan_n > len(order) and not recharge:
            why = Reason.GENSET_START_PLAN
        else:
            why = Reason.GENSET_START_LOW_SOC
        if u.phase is Phase.COOLDOWN:
            units[i] = replace(u, phase=Phase.RUNNING, since_s=x.now_s, started_for=why)
        else:
            units[i] = replace(u, phase=Phase.STARTING, since_s=x.now_s, starts=u.starts + 1, started_for=why)
        order.append(i)
        events.append(GensetEvent(p.gensets[i].genset_id, "start", why))
    # stage out, last started first
    while len(order) > n_keep:
        i = order[-1]
        u, g = units[i], p.gensets[i]
        ran_s = 0.0 if u.started_at_s is None or u.phase is not Phase.RUNNING else x.now_s - u.started_at_s
        if ran_s < g.min_run_s:
            held.append(g.genset_id)
            break
        units[i] = replace(u, phase=Phase.COOLDOWN, since_s=x.now_s)
        order.pop()
        if u.started_for is Reason.GENSET_START_LOW_SOC and not recharge:
            why = Reason.GENSET_STOP_SOC_RECOVERED
        elif plan_n is not None and len(order) >= plan_n:
            why = Reason.GENSET_STOP_PLAN
        else:
            why = Reason.GENSET_STOP_LOAD_FELL
        events.append(GensetEvent(g.genset_id, "stop", why))
    # share the power among those running
    running = [i for i in range(len(p.gensets)) if units[i].phase is Phase.RUNNING]
    out = {g.genset_id: 0.0 for g in p.gensets}
    reason: Reason | None = None
    if running:
        rated = sum(p.gensets[i].rated_w for i in running)
        efficient = sum(p.gensets[i].rated_w * p.gensets[i].efficient_load_fraction for i in running)
        floor = sum(p.gensets[i].rated_w * p.gensets[i].min_load_fraction for i in running)
        takers_w = max(0.0, deficit_w + max(0.0, x.battery_charge_w))  # what can be taken of them
        # the plan's power where it decides (its surplus charges the battery as far as it planned), else
        # the efficient load
        want_w = x.planned_w if plan_n is not None and x.planned_w is not None and not recharge else efficient
        total = min(rated, max(deficit_w, want_w), takers_w)
        total = max(total, min(floor, takers_w))
        if total > max(deficit_w, 0.0) + 1.0:
            reason = Reason.GENSET_CHARGING
        for i in running:
            out[p.gensets[i].genset_id] = total * p.gensets[i].rated_w / rated
    if held:
        reason = Reason.GENSET_MIN_RUN_HOLD  # what runs now does so for its minimum run, not by choice
    dt = x.period_s
    new_units = []
    for u, g in zip(units, p.gensets, strict=True):
        w = out[g.genset_id]
        burning = u.phase is not Phase.OFF
        below = u.phase is Phase.RUNNING and w < g.min_load_fraction * g.rated_w - 1.0
        new_units.append(replace(
            u, output_w=w,
            fuel_l=u.fuel_l + (g.fuel.l_per_h(w / g.rated_w) * dt / 3600.0 if burning else 0.0),
            run_s=u.run_s + (dt if burning else 0.0),
            loaded_s=u.loaded_s + (dt if w > 0 else 0.0),
            below_min_load_s=u.below_min_load_s + (dt if below else 0.0)))
    new_state = DispatchState(tuple(new_units), recharge, tuple(order))
    dispatch = Dispatch(out, {g.genset_id: u.phase for g, u in zip(p.gensets, new_units, strict=True)},
                        tuple(events), tuple(held), reason)
    return dispatch, new_state


def fleet_totals(state: DispatchState) -> tuple[float, float, int]:
    """(litres, engine hours, starts) over every genset."""
    return (math.fsum(u.fuel_l for u in state.units), math.fsum(u.run_s for u in state.units) / 3600.0,
            sum(u.starts for u in state.units))
