"""The plan's import cap: the highest grid import the arbitrage plan allows in this step.

While a plan is fresh it takes peak shaving's place (the period step leaves the
configured cap out): the planner sized this cap knowing the energy a long peak takes,
whereas a fixed cap the battery cannot hold through that peak empties it early and the
peak then goes through unshaved. Like peak shaving it is a hard bound on the held
load (`peak_hold_s`), never a target: when and how much to charge is the plan's SoC
trajectory (policies/arbitrage.py), which this bound keeps from setting a new peak.
"""

from __future__ import annotations

import math

from ems.model.decision import Decision
from ems.model.reasons import Reason

NAME = "plan_cap"


def decide(cap_w: float, held_load_w: float) -> Decision:
    """`held_load_w`: the site load peak shaving would hold (policies/peak_shaving.held_load)."""
    if not math.isfinite(cap_w):  # the plan sets no cap in this step (no demand charge)
        return Decision(NAME, Reason.PLAN_CAP)
    need_w = held_load_w - cap_w
    if need_w > 0:
        return Decision(NAME, Reason.PEAK_SHAVING_ACTIVE, min_w=need_w)
    return Decision(NAME, Reason.PLAN_CAP, min_w=need_w)
