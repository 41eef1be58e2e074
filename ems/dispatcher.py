"""Split the site battery setpoint across the available units.

Discharge is shared in proportion to each unit's available power weighted by the
energy it holds above soc_min; charge by the room it has below soc_max. This pulls
units' SoC together over time. A unit's share never exceeds its own limit: the excess
is redistributed (water-filling). Units not available get 0 W.
"""

from __future__ import annotations

from collections.abc import Sequence

from policies.battery_limits import UnitLimits

_EPS_SOC = 0.01  # keep a unit at the SoC limit from getting a zero weight when all are


def dispatch(setpoint_w: float, units: Sequence[UnitLimits], soc_min: float,
             soc_max: float) -> dict[str, float]:
    shares = {u.unit_id: 0.0 for u in units}
    if setpoint_w == 0 or not units:
        return shares
    discharging = setpoint_w > 0
    if discharging:
        cap = {u.unit_id: u.max_discharge_w for u in units}
        weight = {u.unit_id: u.max_discharge_w * (max(u.soc - soc_min, 0.0) + _EPS_SOC) for u in units}
    else:
        cap = {u.unit_id: u.max_charge_w for u in units}
        weight = {u.unit_id: u.max_charge_w * (max(soc_max - u.soc, 0.0) + _EPS_SOC) for u in units}
    remaining = abs(setpoint_w)
    open_units = {uid for uid, c in cap.items() if c > 0}
    while remaining > 1e-6 and open_units:
        total_w = sum(weight[uid] for uid in open_units)
        if total_w <= 0:
            break
        saturated = set()
        handed = 0.0
        for uid in open_units:
            want = remaining * weight[uid] / total_w
            room = cap[uid] - shares[uid]
            give = min(want, room)
            shares[uid] += give
            handed += give
            if give >= room - 1e-9:
                saturated.add(uid)
        remaining -= handed
        if not saturated:
            break
        open_units -= saturated
    sign = 1.0 if discharging else -1.0
    return {uid: sign * w for uid, w in shares.items()}
