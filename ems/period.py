"""One control period, whatever runs it: snapshot + parameters + state + plan -> setpoints.

The live loop (ems/control_loop.py), the backtest (ems/backtest/engine.py) and any
simulation call `step` and nothing else between their snapshot and their writes, so what
a backtest says the battery saves is what the site's controller does.

Rules enter as constraints in one ordered list, never by rewriting another policy's
parameters. In priority order:

1. battery limits: each available unit's safety envelope (rating, BMS limits, SoC window,
   reserve floor, temperature derating, unit ramp), summed; the site ramp limit; on an
   off-grid or weak-grid site (policies/microgrid.py) the balance (the load less the
   gensets and the grid's allowance) with the gensets' dispatch; the grid connection's
   import and export limits (none off-grid); while a grid disturbance is ridden
   through, the setpoint held where it was;
2. the reserve floor (arbitrage's and the outage reserve, the higher): no discharge below
   it, and a charge of its own back to it when under it; then the grid connection's ramp
   limit (the grid moves no more than its limit within its window);
3. an operator's forced mode, while it lasts, in place of 4-7;
4. a demand-response event's target (policies/demand_response.py): the battery covers
   what it can above the reserve, GPU racks capped by flex tier for the rest;
5. the import cap: the fresh plan's cap, else the configured peak shaving; without a
   trusted meter, the safe action (hold, then 0 W);
6. a demand-response event due soon: the battery charges for it (a target, within 5),
   unless the fresh plan has planned for the event (then 7 charges as the plan prices it);
7. arbitrage: the plan's SoC trajectory;
8. idle: 0 W.

The arbiter narrows the feasible interval in that order (a lower priority never undoes a
higher one); the dispatcher splits the setpoint across units within their envelopes; the
envelope has the last word, and when it changes a setpoint the period's reason is
`ENVELOPE_CLAMP`. The setpoints returned are the ones to write.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ems.arbiter import Arbitration, arbitrate
from ems.dispatcher import dispatch
from ems.envelope import EnvelopeParams, clamp, unit_limits
from ems.model.decision import Decision
from ems.model.dr import DrEvent
from ems.model.plan import GensetSchedule, PlanView
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot, site_soc
from policies import (
    arbitrage,
    battery_limits,
    demand_response,
    grid_limits,
    grid_ramp,
    idle,
    microgrid,
    operator_force,
    peak_shaving,
    plan_cap,
    pv_curtailment,
    reserve,
    ride_through,
)
from policies.battery_limits import UnitLimits


@dataclass(frozen=True, slots=True)
class StepParams:
    limits: battery_limits.BatteryLimitsParams
    envelope: EnvelopeParams  # its reserve_soc is set each period from the reserve policy
    reserve: reserve.ReserveParams = field(default_factory=reserve.ReserveParams)
    grid: grid_limits.GridLimitsParams = field(default_factory=grid_limits.GridLimitsParams)
    grid_ramp: grid_ramp.GridRampParams | None = None
    peak: peak_shaving.PeakShavingParams | None = None
    arbitrage: arbitrage.ArbitrageParams | None = None
    peak_hold_s: float = 0.0  # the held load window, for the plan's cap too
    meter_invalid_hold_s: float = 0.0
    microgrid: microgrid.MicrogridParams | None = None  # off-grid or weak-grid: the balance and the gensets
    dr: demand_response.DrParams | None = None  # demand response: flex tiers, pre-charge


@dataclass(frozen=True, slots=True)
class StepState:
    peak: peak_shaving.PeakShavingState = field(default_factory=peak_shaving.PeakShavingState)
    ramp: grid_ramp.GridRampState = field(default_factory=grid_ramp.GridRampState)
    microgrid: microgrid.MicrogridState = field(default_factory=microgrid.MicrogridState)
    dr: demand_response.DrState = field(default_factory=demand_response.DrState)


@dataclass(frozen=True, slots=True)
class StepResult:
    decisions: tuple[Decision, ...]
    arbitration: Arbitration
    unit_setpoints_w: dict[str, float]  # after the envelope: what is written
    reason: Reason  # why the site setpoint is what it is this period
    decided_by: str
    cap_w: float | None  # the import cap in force
    reserve_soc: float  # the reserve floor in force (0: none)
    clamped: tuple[str, ...]  # units whose setpoint the envelope changed
    state: StepState
    unit_bounds_w: dict[str, tuple[float, float]] = field(default_factory=dict)  # each unit's (lo, hi) this period
    pv_limit_w: float | None = None  # the metered PV inverter's limit (export not allowed); None: none
    microgrid: microgrid.MicrogridOutcome | None = None  # the gensets' dispatch and the balance, where configured
    dr: demand_response.DrOutcome | None = None  # demand response, where configured: phase, rack caps

    @property
    def setpoint_w(self) -> float:
        """The site battery setpoint written (> 0 discharge)."""
        return sum(self.unit_setpoints_w.values())


def _cap_decision(snap: SiteSnapshot, p: StepParams, plan: PlanView | None,
                  state: StepState) -> tuple[Decision | None, float | None, StepState]:
    """The import cap's constraint: the fresh plan's, else the configured one's."""
    current = None if p.arbitrage is None else arbitrage.fresh_plan(snap, p.arbitrage, plan)
    if current is None and p.peak is None:
        return None, None, state
    if current is None:
        assert p.peak is not None
        d, peak_state = peak_shaving.decide(snap, p.peak, state.peak)
        return d, p.peak.grid_import_cap_w, replace(state, peak=peak_state)
    view, k = current
    cap_w = view.import_cap_w[k]
    held_w, peak_state = peak_shaving.held_load(snap, p.peak_hold_s, state.peak)
    if held_w is None:
        d = peak_shaving.without_meter(snap, plan_cap.NAME, p.meter_invalid_hold_s)
    else:
        d = plan_cap.decide(cap_w, held_w)
    return d, cap_w if math.isfinite(cap_w) else None, replace(state, peak=peak_state)


def _dr_decision(snap: SiteSnapshot, p: StepParams, state: StepState, event: DrEvent | None,
                 limits: list[UnitLimits], reserve_soc: float
                 ) -> tuple[Decision | None, demand_response.DrOutcome | None, StepState]:
    """A demand-response event's constraint, with what the battery has above the reserve."""
    if p.dr is None:
        return None, None, state
    soc_cap = site_soc(snap)
    soc, capacity_wh = (0.0, 0.0) if soc_cap is None else soc_cap
    e = p.envelope
    above_wh = max(soc - max(reserve_soc, p.limits.soc_min), 0.0) * capacity_wh * e.discharge_efficiency
    to_fill_wh = max(min(p.dr.precharge_soc, p.limits.soc_max) - soc, 0.0) * capacity_wh / e.charge_efficiency
    d, outcome, dr_state = demand_response.decide(
        snap, p.dr, state.dr, event, sum(lim.max_discharge_w for lim in limits), above_wh,
        sum(lim.max_charge_w for lim in limits), to_fill_wh)
    return d, outcome, replace(state, dr=dr_state)


def _plan_charges_for(snap: SiteSnapshot, p: StepParams, plan: PlanView | None, event: DrEvent | None) -> bool:
    """The fresh plan has planned for this event (its charge before the window, priced against
    the tariff): arbitrage follows it, and the fixed pre-charge stands down."""
    if p.arbitrage is None or event is None:
        return False
    current = arbitrage.fresh_plan(snap, p.arbitrage, plan)
    return current is not None and event.event_id in current[0].dr_event_ids


def step(snap: SiteSnapshot, p: StepParams, state: StepState, plan: PlanView | None = None,
         force: operator_force.ForceParams | None = None, genset_plan: GensetSchedule | None = None,
         dr: DrEvent | None = None) -> StepResult:
    floor = reserve.decide(snap, p.reserve)
    reserve_soc = 0.0 if floor is None else floor[1]
    envelope = p.envelope if reserve_soc == p.envelope.reserve_soc else replace(p.envelope, reserve_soc=reserve_soc)
    # the ramp runs from what each PCS reports it holds now (this period's reading)
    holding = {u.unit_id: None if u.pcs is None else u.pcs.setpoint_w for u in snap.units}
    limits = unit_limits(snap.units, envelope, holding, snap.period_s)
    decisions = [battery_limits.decide(snap, p.limits, limits, reserve_soc)]
    mg: microgrid.MicrogridOutcome | None = None
    grid_snap, grid_on = snap, p.grid.configured
    if p.microgrid is not None:  # the balance outranks the grid limits: it is the island's physics
        balance, mg, mg_state = microgrid.decide(snap, p.microgrid, state.microgrid,
                                                 sum(lim.max_discharge_w for lim in limits),
                                                 sum(lim.max_charge_w for lim in limits), genset_plan)
        state = replace(state, microgrid=mg_state)
        decisions += [] if balance is None else [balance]
        grid_on = grid_on and p.microgrid.mode is not microgrid.Mode.OFF_GRID
        if snap.meter is not None and mg.meter_shift_w:  # the grid as it will be with the gensets' new output
            grid_snap = replace(snap, meter=replace(snap.meter, grid_power_w=snap.meter.grid_power_w + mg.meter_shift_w,
                                                    average_w=None))
    if grid_on:
        decisions += grid_limits.decide(grid_snap, p.grid)
    if (riding := ride_through.decide(snap)) is not None:
        decisions.append(riding)
    if floor is not None:
        decisions.append(floor[0])
    if p.grid_ramp is not None and (ramp := grid_ramp.decide(snap, p.grid_ramp, state.ramp)) is not None:
        decisions.append(ramp)
    cap_w: float | None = None
    dr_d, dr_out, state = _dr_decision(snap, p, state, dr, limits, reserve_soc)
    if force is not None:  # the operator has taken over: the cap, DR's battery and arbitrage stand down
        decisions.append(operator_force.decide(force))
    else:
        if dr_d is not None and dr_d.reason is not Reason.DR_PRECHARGE:
            decisions.append(dr_d)
        cap, cap_w, state = _cap_decision(snap, p, plan, state)
        if cap is not None:
            decisions.append(cap)
        if dr_d is not None and dr_d.reason is Reason.DR_PRECHARGE and not _plan_charges_for(snap, p, plan, dr):
            decisions.append(dr_d)
        if p.arbitrage is not None:
            decisions.append(arbitrage.decide(snap, p.arbitrage, plan))
    decisions.append(idle.decide())
    arb = arbitrate(decisions)
    shares = dispatch(arb.setpoint_w, limits, p.limits.soc_min, p.limits.soc_max)
    site_w = grid_limits.site_bounds(grid_snap, p.grid) if grid_on else (-math.inf, math.inf)
    out, clamped = clamp(shares, snap.units, envelope, holding, snap.period_s, site_w)
    reason, by = (Reason.ENVELOPE_CLAMP, "envelope") if clamped else (arb.reason, arb.decided_by)
    if mg is not None:
        if (short := microgrid.period_reason(mg, sum(out.values()))) is not None:
            reason, by = short, microgrid.NAME
        state = replace(state, microgrid=microgrid.book(state.microgrid, mg, sum(out.values()), snap.period_s))
    if p.dr is not None:
        state = replace(state, dr=demand_response.book(snap, p.dr, state.dr, sum(out.values())))
    if p.grid_ramp is not None:
        state = replace(state, ramp=grid_ramp.record(snap, p.grid_ramp, state.ramp, sum(out.values())))
    bounds = {lim.unit_id: (-lim.max_charge_w, lim.max_discharge_w) for lim in limits}
    # what the battery cannot keep off the grid under an export limit comes off the PV
    pv_params = pv_curtailment.PvCurtailmentParams(p.grid.export_limit_w)
    pv_limit_w = pv_curtailment.decide(snap, sum(out.values()), pv_params)
    return StepResult(tuple(decisions), arb, out, reason, by, cap_w, reserve_soc, tuple(clamped), state,
                      {u.unit_id: bounds.get(u.unit_id, (0.0, 0.0)) for u in snap.units}, pv_limit_w, mg, dr_out)


def standing_down(snap: SiteSnapshot, reason: Reason, by: str, state: StepState) -> StepResult:
    """A period in which the step does not run (islanded: the grid-forming units balance the
    island): every unit at 0 W, with the reason."""
    d = Decision(by, reason, 0.0, 0.0)
    arb = Arbitration(0.0, 0.0, 0.0, reason, by, ())
    return StepResult((d,), arb, {u.unit_id: 0.0 for u in snap.units}, reason, by, None, 0.0, (), state)
