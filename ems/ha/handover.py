"""What the active hands over through the bucket, and how the new active takes it.

The month's billing demand so far (the peak it held down: a standby that missed an
interval of it must not think the month's peak lower), the operators' decisions in force
(parameter overrides, units in maintenance, a forced mode: the new active holds them as the
old one did), and the recent events (ems/ha/role.py adds them). The standby runs its own
planner on the same readings, so it has a plan of its own at takeover; the old active's plan
summary rides along for the audit only (a plan is in the process's monotonic time, which
means nothing on another machine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from ems.demand import DemandMeter, DemandMeterError
from ems.operator.overrides import OverrideError

if TYPE_CHECKING:
    from ems.control_loop import Controller

log = structlog.get_logger("ems.ha")


def state_of(ctl: Controller) -> dict[str, Any]:
    now_s = ctl.clock.monotonic()
    plan = None
    if ctl.planner is not None:
        from ems.tariff.calendar import local_seconds

        plan = ctl.planner.runner.summary(now_s, local_seconds(ctl.clock.wall(), ctl.planner.zone))
    return {"demand": ctl.demand.to_dict(), "plan": plan, "setpoint_w": ctl.last_setpoint_w,
            "operator": ctl.controls.state()}


def take_over(ctl: Controller, state: dict[str, Any] | None) -> None:
    """Adopt the handed-over operator decisions, and the demand where it is the same month and a
    higher peak than ours."""
    if state is None:
        return
    operator = state.get("operator")
    if isinstance(operator, dict):
        try:
            refused = ctl.controls.adopt(operator)  # each entry checked: what is refused is named
        except (OverrideError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
            log.warning("handover: operator state unusable, keeping ours", error=str(exc))
        else:
            c = ctl.controls
            ctl.events.record("operator_state_taken_over", ctl.clock.wall(), None, params=sorted(c.params),
                              maintenance=sorted(c.maintenance), force=None if c.force is None else c.force.mode,
                              refused=refused)
    if not isinstance(state.get("demand"), dict):
        return
    try:
        theirs = DemandMeter.from_dict(state["demand"], ctl.demand.tariff, ctl.demand.zone, ctl.demand.interval_s)
    except (DemandMeterError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
        log.warning("handover: demand state unusable, keeping ours", error=str(exc))
        return
    ours = ctl.demand
    # finite but beyond what the meter can read: a hostile or broken handover, not a peak to defend
    limit_w = ctl.reader.validity.p.meter_max_abs_w
    if max((theirs.month_peak_w, *theirs.tou_peaks_w)) > limit_w:
        log.warning("handover: month peak beyond what the meter can read, keeping ours",
                    month_peak_w=theirs.month_peak_w, meter_max_abs_w=limit_w)
        ctl.events.record("handover_demand_refused", ctl.clock.wall(), None, month_peak_w=theirs.month_peak_w,
                          meter_max_abs_w=limit_w)
        return
    if ours.month_key in (None, theirs.month_key) and theirs.month_peak_w > ours.month_peak_w:
        ctl.demand = theirs
        if ctl.planner is not None:
            ctl.planner.runner.peaks = theirs
        log.info("handover: month peak taken over", month_peak_w=round(theirs.month_peak_w))
