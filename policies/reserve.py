"""Reserve floor: keep energy in the battery for an outage, whatever earns money.

Ranks right after the battery's own limits: the site-wide stored energy (available
units) may not be discharged below the floor. The floor is the higher of a fixed share
(`reserve_soc`, arbitrage's reserve) and the outage reserve: the critical load for the
bridge time until the genset carries it, on top of the hardware floor. The bound allows
what can be discharged in one period without crossing the floor, so a long period (a
backtest at 15 min) does not overshoot it either. Below the floor (after an outage, or
a floor raised at run time) the battery charges back to it, within `recovery_s`, with a
target of its own that lower-priority bounds (an import cap) still limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from ems.model.decision import Decision
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot, site_soc

NAME = "reserve"


@dataclass(frozen=True, slots=True)
class OutageReserve:
    critical_load_w: float
    bridge_s: float
    discharge_efficiency: float
    soc_floor: float  # the hardware floor the reserve sits on


@dataclass(frozen=True, slots=True)
class ReserveParams:
    reserve_soc: float = 0.0
    outage: OutageReserve | None = None
    charge_efficiency: float = 0.96
    discharge_efficiency: float = 0.96
    recovery_s: float = 3600.0  # below the floor: back to it within this
    recovery_deadband: float = 0.01  # SoC under the floor before a recovery charge starts


def floor_soc(p: ReserveParams, capacity_wh: float) -> float:
    """The floor as a share of `capacity_wh` (the available units' capacity)."""
    floor = p.reserve_soc
    o = p.outage
    if o is not None and capacity_wh > 0:
        energy_wh = o.critical_load_w * o.bridge_s / 3600.0 / o.discharge_efficiency
        floor = max(floor, min(1.0, o.soc_floor + energy_wh / capacity_wh))
    return floor


def decide(snap: SiteSnapshot, p: ReserveParams) -> tuple[Decision, float] | None:
    """The decision and the floor in force; None when no unit is available (battery_limits
    holds 0 W then) or no floor is configured."""
    soc_cap = site_soc(snap)
    if soc_cap is None:
        return None
    soc, capacity_wh = soc_cap
    floor = floor_soc(p, capacity_wh)
    if floor <= 0:
        return None
    if soc < floor - p.recovery_deadband:
        deficit_wh = (floor - soc) * capacity_wh
        target_w = -deficit_wh / p.charge_efficiency / (p.recovery_s / 3600.0)
        return Decision(NAME, Reason.RESERVE_RECOVERY, max_w=0.0, target_w=target_w), floor
    above_wh = max(soc - floor, 0.0) * capacity_wh
    max_w = above_wh * p.discharge_efficiency / (snap.period_s / 3600.0)
    return Decision(NAME, Reason.RESERVE_FLOOR, max_w=max_w), floor
