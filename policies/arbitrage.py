"""Tariff arbitrage: follow the planner's state-of-charge trajectory.

The planner (ems/planning) solves a dispatch LP over a horizon and hands over a
`PlanView`: the SoC it wants at the end of each step. Each period this policy asks for
the power that brings the site's SoC to the plan's SoC at the end of the current step,
given the time left in that step. Following SoC (not the planned power) corrects for
forecast error and for what higher priorities did: if peak shaving had to discharge
more than planned, arbitrage does not also discharge the planned amount on top.

Where the plan discharges only to hold its import cap (a step whose planned import sits
at the cap), the discharge is peak shaving, sized on a forecast: there the policy asks
only for what keeps the actual import at the cap, never for the planned SoC. Following
SoC there would spend energy on load the forecast expected but the site did not draw,
energy the rest of the peak may need.

A missing plan, a plan older than `max_plan_age_s`, or a time outside the plan is
PLAN_STALE: the policy stands down (no bound, no target) and the rest of the stack runs
as if arbitrage were not configured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ems.model.decision import Decision
from ems.model.plan import PlanView
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot, site_soc

NAME = "arbitrage"


@dataclass(frozen=True, slots=True)
class ArbitrageParams:
    max_plan_age_s: float
    charge_efficiency: float
    discharge_efficiency: float
    hold_band_w: float = 1000.0  # below this the target is 0 W (no chasing rounding noise)
    at_cap_w: float = 1000.0  # planned import this close to the cap is the cap


def fresh_plan(snap: SiteSnapshot, p: ArbitrageParams, plan: PlanView | None) -> tuple[PlanView, int] | None:
    """The plan and the current step index, if the plan may be acted on now."""
    if plan is None or snap.now_s - plan.made_at_s > p.max_plan_age_s:
        return None
    k = plan.step_at(snap.now_s)
    return None if k is None else (plan, k)


def decide(snap: SiteSnapshot, p: ArbitrageParams, plan: PlanView | None) -> Decision:
    current = fresh_plan(snap, p, plan)
    soc_cap = site_soc(snap)
    if current is None or soc_cap is None:
        return Decision(NAME, Reason.PLAN_STALE)
    plan, k = current
    soc, capacity_wh = soc_cap
    load_w = snap.site_load_avg_w
    holds_cap = plan.battery_w[k] > p.hold_band_w and plan.grid_w[k] >= plan.import_cap_w[k] - p.at_cap_w
    if holds_cap and load_w is not None:
        need_w = max(load_w - plan.import_cap_w[k], 0.0)
        if need_w <= p.hold_band_w:
            return Decision(NAME, Reason.ARBITRAGE_HOLD, target_w=0.0)
        return Decision(NAME, Reason.ARBITRAGE_DISCHARGE, target_w=need_w)
    step_end_s = plan.start_s + (k + 1) * plan.step_s
    # at least one period: asking to close the gap in less time than we can act overshoots
    left_h = max(step_end_s - snap.now_s, snap.period_s) / 3600.0
    stored_delta_wh = (plan.soc[k + 1] - soc) * capacity_wh
    if stored_delta_wh > 0:
        target_w = -stored_delta_wh / p.charge_efficiency / left_h
        if load_w is not None:
            # catching up on charge never lifts the import above what the plan imports in
            # this step: the plan's cap rests on a forecast, and filling up to it would
            # make a forecast peak real; a plan left behind is re-planned instead
            target_w = max(target_w, min(load_w - plan.grid_w[k], 0.0))
    else:
        target_w = -stored_delta_wh * p.discharge_efficiency / left_h
    if math.isclose(target_w, 0.0, abs_tol=p.hold_band_w):
        return Decision(NAME, Reason.ARBITRAGE_HOLD, target_w=0.0)
    reason = Reason.ARBITRAGE_DISCHARGE if target_w > 0 else Reason.ARBITRAGE_CHARGE
    return Decision(NAME, reason, target_w=target_w)
