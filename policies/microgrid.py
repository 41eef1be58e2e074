"""Off-grid and weak-grid sites: the battery as the heart, gensets as the last resort.

Pure, each period, from the frozen snapshot. The site's demand on its sources (load less
PV) is the meter's reading (what the grid, or on an off-grid site the sources other than
the battery, supply) plus the battery's and the gensets' output of the period before.

* `off_grid`: no grid at all; the island is the steady state. The battery balances what
  the gensets do not carry.
* `weak_grid`: an import limit far below the load. The grid gives up to its limit, the
  battery the rest, the gensets when the battery runs low or cannot carry the load.

The battery's constraint (MICROGRID_BALANCE, or GENSET_CHARGING while gensets carry a
surplus into it) ranks right after its own limits: what it cannot do is either load not
served (UNSERVED_LOAD) or a surplus nowhere can take, which curtails PV (PV_CURTAILED).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from ems.model.decision import Decision
from ems.model.plan import GensetSchedule
from ems.model.readings import GensetReading, GensetState
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot, site_soc
from policies import genset_dispatch

NAME = "microgrid"


class Mode(StrEnum):
    GRID_CONNECTED = "grid_connected"
    WEAK_GRID = "weak_grid"
    OFF_GRID = "off_grid"


@dataclass(frozen=True, slots=True)
class MicrogridParams:
    mode: Mode
    dispatch: genset_dispatch.DispatchParams
    import_limit_w: float = 0.0  # weak grid: what the grid may give (it gives all of it while the battery
    # can take the rest: the battery is charged from the grid's spare room)
    co2_kg_per_l: float = 2.68  # diesel
    facility_overhead_w: float | None = None  # cooling etc. beyond the racks, for PUE


@dataclass(frozen=True, slots=True)
class MicrogridState:
    gensets: genset_dispatch.DispatchState = field(default_factory=genset_dispatch.DispatchState)
    demand_w: float | None = None  # the last known demand (for the status; never acted on once stale)
    served_wh: float = 0.0  # what the periods expected: the backtest measures the real thing
    unserved_wh: float = 0.0
    surplus_wh: float = 0.0  # curtailed (PV) or not taken
    # gensets that report stopped where the dispatch has them warming up or running (a start
    # ignored, or stopped on its own without saying failed): out of service, as a reported
    # failure is, until the device reports anything but stopped
    silent: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MicrogridOutcome:
    """What the period expects of the sources (the backtest measures the real thing)."""

    mode: Mode
    demand_w: float | None
    grid_allowance_w: float
    dispatch: genset_dispatch.Dispatch
    battery_target_w: float | None  # the balance asked of the battery (> 0 discharge)
    meter_shift_w: float  # how far the gensets' new output moves the meter from its reading
    co2_kg_per_l: float = 2.68
    facility_overhead_w: float | None = None


def grid_allowance_w(p: MicrogridParams) -> float:
    return 0.0 if p.mode is Mode.OFF_GRID else p.import_limit_w


def genset_readings(snap: SiteSnapshot, p: MicrogridParams) -> dict[str, GensetReading]:
    """Each genset device's fresh reading by its dispatch id (the site's `genset` device alone,
    in a snapshot that has no others, is the first of the list)."""
    if snap.gensets:
        return snap.gensets
    if snap.genset is not None and p.dispatch.gensets:
        return {p.dispatch.gensets[0].genset_id: snap.genset}
    return {}


def gensets_before_w(snap: SiteSnapshot, p: MicrogridParams, state: MicrogridState) -> float:
    """What the gensets gave in the period before: the dispatch's own figures, but each genset
    device as it reports itself where its reading is fresh (live, they follow the island's load,
    so what they give is measured, not assumed)."""
    readings = genset_readings(snap, p)
    units = state.gensets.units if len(state.gensets.units) == len(p.dispatch.gensets) else ()
    expected = [u.output_w for u in units] or [0.0] * len(p.dispatch.gensets)
    return sum(readings[g.genset_id].power_w if g.genset_id in readings else w
               for g, w in zip(p.dispatch.gensets, expected, strict=True))


def _silent(readings: dict[str, GensetReading], p: MicrogridParams, state: MicrogridState) -> frozenset[str]:
    """Gensets whose device reports stopped while the dispatch had them past their start delay
    (warming up or running): believed running, they would carry the island on paper only, and
    the next genset would never be staged in. Kept out while the device still reports stopped
    (without a reading: kept as they were)."""
    units = state.gensets.units if len(state.gensets.units) == len(p.dispatch.gensets) else ()
    past_start = (genset_dispatch.Phase.WARMUP, genset_dispatch.Phase.RUNNING)
    out = set()
    for g, u in zip(p.dispatch.gensets, units or [None] * len(p.dispatch.gensets), strict=True):
        r = readings.get(g.genset_id)
        stopped = r is not None and r.state is GensetState.STOPPED
        kept = g.genset_id in state.silent and (r is None or stopped)
        if kept or (stopped and u is not None and u.phase in past_start):
            out.add(g.genset_id)
    return frozenset(out)


def decide(snap: SiteSnapshot, p: MicrogridParams, state: MicrogridState, battery_discharge_w: float,
           battery_charge_w: float, plan: GensetSchedule | None = None
           ) -> tuple[Decision | None, MicrogridOutcome, MicrogridState]:
    before_w = gensets_before_w(snap, p, state)
    load_w = snap.site_load_w
    # without a trusted meter the demand is unknown: no balance (never a guess); the gensets keep to SoC
    demand_w = None if load_w is None else load_w + before_w
    soc = site_soc(snap)
    allowance = grid_allowance_w(p)
    # a genset device that reports a failure (a failed start, a trip) is out of service while it does
    readings = genset_readings(snap, p)
    failed = frozenset(gid for gid, r in readings.items() if r.state is GensetState.FAILED)
    silent = _silent(readings, p, state)
    failed |= silent
    k = None if plan is None else plan.step_at(snap.now_s)  # outside its horizon: the thresholds alone
    x = genset_dispatch.DispatchInputs(
        snap.now_s, snap.period_s, None if soc is None else soc[0],
        allowance if demand_w is None else demand_w,  # unknown demand: plan as if the grid carried it
        allowance, battery_discharge_w, battery_charge_w, failed,
        None if plan is None or k is None else plan.on[k], None if plan is None or k is None else plan.power_w[k])
    dispatch, gensets = genset_dispatch.decide(x, p.dispatch, state.gensets)
    new_state = replace(state, gensets=gensets, demand_w=state.demand_w if demand_w is None else demand_w,
                        silent=silent)
    shift_w = before_w - dispatch.total_w
    if demand_w is None:
        return None, MicrogridOutcome(p.mode, None, allowance, dispatch, None, shift_w, p.co2_kg_per_l,
                                      p.facility_overhead_w), new_state
    target_w = demand_w - dispatch.total_w - allowance
    why = dispatch.reason or Reason.MICROGRID_BALANCE
    d = Decision(NAME, why, min_w=target_w, max_w=target_w, target_w=target_w)
    return d, MicrogridOutcome(p.mode, demand_w, allowance, dispatch, target_w, shift_w, p.co2_kg_per_l,
                               p.facility_overhead_w), new_state


def shortfall(outcome: MicrogridOutcome, setpoint_w: float) -> tuple[float, float]:
    """(unserved W, surplus W) the period expects with the battery at `setpoint_w`: the
    balance it could not meet, one way or the other."""
    if outcome.battery_target_w is None:
        return 0.0, 0.0
    gap = outcome.battery_target_w - setpoint_w
    return max(gap, 0.0), max(-gap, 0.0)


def period_reason(outcome: MicrogridOutcome, setpoint_w: float) -> Reason | None:
    """UNSERVED_LOAD or PV_CURTAILED when the battery could not meet the balance (1 kW), else None."""
    unserved, surplus = shortfall(outcome, setpoint_w)
    if unserved > 1000.0:
        return Reason.UNSERVED_LOAD
    if surplus > 1000.0:
        return Reason.PV_CURTAILED
    return None


def book(state: MicrogridState, outcome: MicrogridOutcome, setpoint_w: float, period_s: float) -> MicrogridState:
    """The period's energy served, not served and in surplus, as expected at `setpoint_w`."""
    unserved, surplus = shortfall(outcome, setpoint_w)
    served = 0.0 if outcome.demand_w is None else max(outcome.demand_w, 0.0) - unserved
    h = period_s / 3600.0
    return replace(state, served_wh=state.served_wh + max(served, 0.0) * h,
                   unserved_wh=state.unserved_wh + unserved * h, surplus_wh=state.surplus_wh + surplus * h)
