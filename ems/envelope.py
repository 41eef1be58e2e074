"""The final safety envelope: whatever the policies asked, each unit's setpoint stays inside.

Applied after dispatch, per unit: the PCS rating and the power the BMS allows now; no
discharge at or under soc_min or the reserve floor, no charge at or over soc_max;
temperature derating (full power up to `temp_derate_start_c`, none at `temp_max_c`); and
the unit ramp limit from the setpoint last written — except that moving toward 0 W is
always allowed, so stopping is never blocked. A unit that cannot take a setpoint gets 0 W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ems.model.snapshot import UnitSnapshot
from policies.battery_limits import UnitLimits


@dataclass(frozen=True, slots=True)
class EnvelopeParams:
    soc_min: float
    soc_max: float
    reserve_soc: float = 0.0
    unit_ramp_w_per_s: float | None = None
    temp_derate_start_c: float = 45.0
    temp_max_c: float = 55.0


def unit_bounds(u: UnitSnapshot, p: EnvelopeParams, last_w: float | None, period_s: float) -> tuple[float, float]:
    """(lowest, highest) setpoint allowed for this unit now; always contains 0."""
    if not u.available or u.bms is None or u.pcs is None:
        return 0.0, 0.0
    bms, pcs = u.bms, u.pcs
    hi = max(0.0, min(pcs.rated_power_w, bms.max_discharge_w))
    lo = -max(0.0, min(pcs.rated_power_w, bms.max_charge_w))
    if bms.soc <= max(p.soc_min, p.reserve_soc):
        hi = 0.0
    if bms.soc >= p.soc_max:
        lo = 0.0
    span = p.temp_max_c - p.temp_derate_start_c
    derate = 1.0 if span <= 0 else min(1.0, max(0.0, (p.temp_max_c - bms.temperature_c) / span))
    lo, hi = lo * derate, hi * derate
    if p.unit_ramp_w_per_s is not None and last_w is not None and math.isfinite(last_w):
        step = p.unit_ramp_w_per_s * period_s
        lo = max(lo, min(last_w - step, 0.0))
        hi = min(hi, max(last_w + step, 0.0))
    return min(lo, 0.0), max(hi, 0.0)


def unit_limits(units: tuple[UnitSnapshot, ...], p: EnvelopeParams, last_w: dict[str, float | None],
                period_s: float) -> list[UnitLimits]:
    """The envelope of each available unit as the limits the dispatcher splits within, so
    what the policies ask is feasible before the envelope has its last word."""
    out = []
    for u in units:
        if not u.available or u.bms is None:
            continue
        last = last_w.get(u.unit_id)
        lo, hi = unit_bounds(u, p, last, period_s)
        ramp_bound = False
        if p.unit_ramp_w_per_s is not None and last is not None:
            free_lo, free_hi = unit_bounds(u, replace(p, unit_ramp_w_per_s=None), None, period_s)
            ramp_bound = lo > free_lo or hi < free_hi
        out.append(UnitLimits(u.unit_id, -lo, hi, u.bms.soc, u.bms.capacity_wh, ramp_bound))
    return out


def clamp(shares_w: dict[str, float], units: tuple[UnitSnapshot, ...], p: EnvelopeParams,
          last_w: dict[str, float | None], period_s: float) -> tuple[dict[str, float], list[str]]:
    """Every unit's setpoint inside its envelope; also returns the units that were narrowed."""
    out: dict[str, float] = {}
    narrowed: list[str] = []
    for u in units:
        want = shares_w.get(u.unit_id, 0.0)
        if not math.isfinite(want):
            want = 0.0
        lo, hi = unit_bounds(u, p, last_w.get(u.unit_id), period_s)
        got = min(hi, max(lo, want))
        if abs(got - want) > 1e-6:
            narrowed.append(u.unit_id)
        out[u.unit_id] = got
    return out, narrowed
