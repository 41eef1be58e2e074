"""The policy stack: snapshot -> decisions in priority order -> setpoint -> unit shares.

One pure function shared by the live loop and the backtester, so both run exactly the
same policy ordering: safety (battery limits) > reserve floor > peak shaving >
arbitrage > idle. An operator's forced mode (policies/operator_force.py) takes the place
of peak shaving and arbitrage while it lasts.

With a fresh arbitrage plan, peak shaving holds the plan's import cap for the current
step (the planned monthly peak of the step's demand period) instead of its configured
one, and does not recharge on its own: the plan decides when to charge, and peak
shaving's bound keeps that charging from setting a new peak. The plan's cap replaces the
configured cap rather than being capped by it: a fixed cap the battery cannot hold
through a long peak empties it early, and the peak then goes through unshaved; the
planner knows the energy it takes. Without a fresh plan, peak shaving runs on its
configured cap and recharge threshold, as if no planner existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ems.arbiter import Arbitration, arbitrate
from ems.config import ControlConfig, PoliciesConfig
from ems.dispatcher import dispatch
from ems.model.decision import Decision
from ems.model.snapshot import SiteSnapshot
from policies import arbitrage, battery_limits, idle, operator_force, peak_shaving, reserve


@dataclass(frozen=True, slots=True)
class PolicyParams:
    limits: battery_limits.BatteryLimitsParams
    peak: peak_shaving.PeakShavingParams | None = None
    reserve: reserve.ReserveParams | None = None
    arbitrage: arbitrage.ArbitrageParams | None = None
    force: operator_force.ForceParams | None = None  # an operator's forced mode (ems/operator/controls.py)


@dataclass(frozen=True, slots=True)
class PolicyStates:
    peak: peak_shaving.PeakShavingState = field(default_factory=peak_shaving.PeakShavingState)
    arbitrage: arbitrage.ArbitrageState = field(default_factory=arbitrage.ArbitrageState)


@dataclass(frozen=True, slots=True)
class Outcome:
    decisions: tuple[Decision, ...]
    arbitration: Arbitration
    unit_setpoints_w: dict[str, float]
    grid_import_cap_w: float | None  # the cap peak shaving held this period, if any


def policy_params(policies: PoliciesConfig, control: ControlConfig) -> PolicyParams:
    """The policies a site file configures, as the pure policies' parameters."""
    b = policies.battery
    ps = policies.peak_shaving
    a = policies.arbitrage
    arb = None if a is None or not a.enabled else a
    return PolicyParams(
        limits=battery_limits.BatteryLimitsParams(b.soc_min, b.soc_max, b.ramp_w_per_s),
        peak=None if ps is None or not ps.enabled else peak_shaving.PeakShavingParams(
            ps.grid_import_cap_w, ps.recharge_below_w, ps.peak_hold_s, control.meter_invalid_hold_s),
        reserve=None if arb is None or arb.reserve_soc <= 0 else reserve.ReserveParams(
            arb.reserve_soc, arb.discharge_efficiency),
        arbitrage=None if arb is None else arbitrage.ArbitrageParams(
            arb.max_plan_age_s, arb.charge_efficiency, arb.discharge_efficiency),
    )


def peak_params_now(snap: SiteSnapshot, params: PolicyParams,
                    states: PolicyStates) -> peak_shaving.PeakShavingParams | None:
    """Peak shaving's parameters for this period (see the module docstring)."""
    configured = params.peak
    if params.arbitrage is None:
        return configured
    current = arbitrage.fresh_plan(snap, params.arbitrage, states.arbitrage)
    if current is None:
        return configured
    plan, k = current
    cap_w = plan.import_cap_w[k]
    if not math.isfinite(cap_w):
        return None
    hold_s = 0.0 if configured is None else configured.peak_hold_s
    invalid_hold_s = 0.0 if configured is None else configured.meter_invalid_hold_s
    return peak_shaving.PeakShavingParams(cap_w, 0.0, hold_s, invalid_hold_s)


def decide(snap: SiteSnapshot, params: PolicyParams,
           states: PolicyStates) -> tuple[Outcome, PolicyStates]:
    limits = battery_limits.site_unit_limits(snap, params.limits)  # once: the dispatcher needs them too
    decisions = [battery_limits.decide(snap, params.limits, limits)]
    if params.reserve is not None and (r := reserve.decide(snap, params.reserve)) is not None:
        decisions.append(r)
    peak_state, arb_state = states.peak, states.arbitrage
    peak = None
    if params.force is not None:  # the operator has taken over: peak shaving and arbitrage stand down
        decisions.append(operator_force.decide(params.force))
    else:
        peak = peak_params_now(snap, params, states)
        if peak is not None:
            d, peak_state = peak_shaving.decide(snap, peak, peak_state)
            decisions.append(d)
        if params.arbitrage is not None:
            d, arb_state = arbitrage.decide(snap, params.arbitrage, arb_state)
            decisions.append(d)
    decisions.append(idle.decide())
    arb = arbitrate(decisions)
    shares = dispatch(arb.setpoint_w, limits, params.limits.soc_min, params.limits.soc_max)
    for u in snap.units:
        shares.setdefault(u.unit_id, 0.0)
    cap = None if peak is None else peak.grid_import_cap_w
    return Outcome(tuple(decisions), arb, shares, cap), PolicyStates(peak_state, arb_state)
