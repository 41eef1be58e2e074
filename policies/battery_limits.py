"""Safety: what the available units can do now, as bounds on the site battery power.

Per unit: the BMS's allowed power, the PCS rating, and the controller's SoC window
(no discharge at or under soc_min, no charge at or over soc_max). Units that are not
available contribute nothing. The optional site ramp limit bounds the change from the
previous setpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from ems.model.decision import Decision
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot, UnitSnapshot

NAME = "battery_limits"


@dataclass(frozen=True, slots=True)
class BatteryLimitsParams:
    soc_min: float
    soc_max: float
    ramp_w_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class UnitLimits:
    unit_id: str
    max_charge_w: float  # >= 0
    max_discharge_w: float  # >= 0
    soc: float
    capacity_wh: float
    ramp_bound: bool = False  # the unit's ramp limit narrowed what it may do this period


def unit_limits(unit: UnitSnapshot, p: BatteryLimitsParams) -> UnitLimits | None:
    """Limits of one unit, or None if it cannot take a setpoint."""
    if not unit.available or unit.bms is None or unit.pcs is None:
        return None
    bms, pcs = unit.bms, unit.pcs
    discharge = min(bms.max_discharge_w, pcs.rated_power_w) if bms.soc > p.soc_min else 0.0
    charge = min(bms.max_charge_w, pcs.rated_power_w) if bms.soc < p.soc_max else 0.0
    return UnitLimits(unit.unit_id, max(charge, 0.0), max(discharge, 0.0), bms.soc, bms.capacity_wh)


def site_unit_limits(snap: SiteSnapshot, p: BatteryLimitsParams) -> list[UnitLimits]:
    return [lim for u in snap.units if (lim := unit_limits(u, p)) is not None]


def decide(snap: SiteSnapshot, p: BatteryLimitsParams, limits: list[UnitLimits] | None = None,
           reserve_soc: float = 0.0) -> Decision:
    """`limits`: `site_unit_limits(snap, p)` when the caller has it already, or the units'
    safety envelopes (ems/envelope.py), which also keep each unit above `reserve_soc`."""
    if limits is None:
        limits = site_unit_limits(snap, p)
    if not limits:
        return Decision(NAME, Reason.NO_UNIT_AVAILABLE, 0.0, 0.0)
    lo = -sum(lim.max_charge_w for lim in limits)
    hi = sum(lim.max_discharge_w for lim in limits)
    reason = Reason.UNIT_POWER_LIMIT
    if hi == 0.0 and all(lim.soc <= p.soc_min for lim in limits):
        reason = Reason.SOC_MIN_LIMIT
    elif hi == 0.0 and all(lim.soc <= reserve_soc for lim in limits):
        reason = Reason.RESERVE_FLOOR
    elif any(lim.ramp_bound for lim in limits):
        reason = Reason.RAMP_LIMIT
    elif lo == 0.0 and all(lim.soc >= p.soc_max for lim in limits):
        reason = Reason.SOC_MAX_LIMIT
    if p.ramp_w_per_s is not None:
        step = p.ramp_w_per_s * snap.period_s
        ramp_lo, ramp_hi = snap.last_setpoint_w - step, snap.last_setpoint_w + step
        if ramp_lo > lo or ramp_hi < hi:
            # keep 0 W reachable: stopping is always allowed, whatever the ramp
            lo = max(lo, min(ramp_lo, 0.0))
            hi = min(hi, max(ramp_hi, 0.0))
            reason = Reason.RAMP_LIMIT
    return Decision(NAME, reason, lo, hi)
