"""An operator's forced mode: hold the site battery at a fixed power (0 W: standby).

Ranks below safety (battery limits) and the outage reserve, above peak shaving and
arbitrage, which stand down while it is in force: the operator has taken over, and a
forced 0 W is not reported as a cap the battery failed to hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from ems.model.decision import Decision
from ems.model.reasons import Reason

NAME = "operator_force"


@dataclass(frozen=True, slots=True)
class ForceParams:
    setpoint_w: float  # > 0 discharge; 0 holds the battery at rest


def decide(p: ForceParams) -> Decision:
    return Decision(NAME, Reason.OPERATOR_FORCED, min_w=p.setpoint_w, max_w=p.setpoint_w, target_w=p.setpoint_w)
