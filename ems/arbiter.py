"""Combine policy decisions, in priority order, into one site battery setpoint.

Each decision's bounds narrow the feasible interval; a bound that conflicts with the
higher priorities is overruled and the interval collapses to the feasible point nearest
to it (as close to the wish as the higher priorities allow). The setpoint is the first
(highest-priority) target, clamped into the final interval; 0 W if none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ems.model.decision import Decision
from ems.model.reasons import Reason


@dataclass(frozen=True, slots=True)
class Arbitration:
    setpoint_w: float
    lo_w: float
    hi_w: float
    reason: Reason  # why the setpoint is what it is
    decided_by: str  # the policy whose bound or target set it
    overruled: tuple[str, ...]  # policies whose bounds could not be met


def arbitrate(decisions: Sequence[Decision]) -> Arbitration:
    lo, hi = -math.inf, math.inf
    lo_by: Decision | None = None
    hi_by: Decision | None = None
    overruled: list[Decision] = []
    for d in decisions:
        new_lo, new_hi = max(lo, d.min_w), min(hi, d.max_w)
        if new_lo > new_hi:
            overruled.append(d)
            new_lo = new_hi = hi if d.min_w > hi else lo
        else:
            if new_lo > lo:
                lo_by = d
            if new_hi < hi:
                hi_by = d
        lo, hi = new_lo, new_hi
    wish = next((d for d in decisions if d.target_w is not None), None)
    target = 0.0 if wish is None or wish.target_w is None else wish.target_w
    setpoint = min(hi, max(lo, target))
    by: Decision | None = wish
    if setpoint > target and lo_by is not None:
        by = lo_by
    elif setpoint < target and hi_by is not None:
        by = hi_by
    reason = Reason.IDLE if by is None else by.reason
    # a cap overruled is news, unless a ride-through holds the battery on purpose (it says so)
    if reason is not Reason.RIDE_THROUGH and any(d.reason is Reason.PEAK_SHAVING_ACTIVE for d in overruled):
        reason = Reason.CAP_UNREACHABLE
    return Arbitration(
        setpoint_w=0.0 if setpoint == 0 else setpoint,
        lo_w=lo, hi_w=hi, reason=reason, decided_by="idle" if by is None else by.policy,
        overruled=tuple(d.policy for d in overruled),
    )
