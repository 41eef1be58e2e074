"""The final safety envelope: whatever the policies asked, each unit's setpoint stays inside.

Per unit: the PCS rating and the power the BMS allows now; no more discharge than the
energy above soc_min or the reserve floor allows over one period, no more charge than
the room below soc_max allows (so a long period, a backtest step of 15 min, does not
overshoot the window); temperature derating (full power up to `temp_derate_start_c`,
none at `temp_max_c`); and the unit ramp limit from the setpoint last written. For the
site: the grid connection's import and export limits (policies/grid_limits.py) on the
units' sum. Moving toward 0 W is always allowed, so stopping is never blocked; a unit
that cannot take a setpoint gets 0 W. The period step dispatches within these bounds,
so the envelope's last word only changes a setpoint when something upstream is wrong.
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
    charge_efficiency: float = 1.0  # AC -> stored; 1.0 bounds the charge a little tighter than the battery does
    discharge_efficiency: float = 1.0  # stored -> AC


def unit_bounds(u: UnitSnapshot, p: EnvelopeParams, last_w: float | None, period_s: float) -> tuple[float, float]:
    """(lowest, highest) setpoint allowed for this unit now; always contains 0."""
    if not u.available or u.bms is None or u.pcs is None:
        return 0.0, 0.0
    bms, pcs = u.bms, u.pcs
    hi = max(0.0, min(pcs.rated_power_w, bms.max_discharge_w))
    lo = -max(0.0, min(pcs.rated_power_w, bms.max_charge_w))
    # the energy one period may move without crossing the window (h: W x h = Wh)
    period_h = max(period_s, 1e-9) / 3600.0
    floor = max(p.soc_min, p.reserve_soc)
    hi = min(hi, max(bms.soc - floor, 0.0) * bms.capacity_wh * p.discharge_efficiency / period_h)
    lo = max(lo, -max(p.soc_max - bms.soc, 0.0) * bms.capacity_wh / p.charge_efficiency / period_h)
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
          last_w: dict[str, float | None], period_s: float,
          site_w: tuple[float, float] = (-math.inf, math.inf)) -> tuple[dict[str, float], list[str]]:
    """Every unit's setpoint inside its envelope and their sum inside `site_w` (the grid
    connection's bounds, containing 0); also returns the units that were narrowed."""
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
    total = sum(out.values())
    site_lo, site_hi = site_w
    if total > site_hi or total < site_lo:
        # scale the units pushing past the bound toward 0 W (always allowed), the others stay
        over = total - site_hi if total > site_hi else total - site_lo
        pushing = {uid: w for uid, w in out.items() if w * over > 0}
        scale = max(0.0, 1.0 - over / sum(pushing.values()))
        for uid, w in pushing.items():
            out[uid] = w * scale
            if uid not in narrowed:
                narrowed.append(uid)
    return out, narrowed
