"""What a policy returns: hard bounds and an optional soft target on site battery power.

Power is the site's total BESS AC power, > 0 discharge. The arbiter narrows the
feasible interval with each policy's bounds in priority order, so a lower priority can
never undo a higher one; the final setpoint is the highest-priority target inside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ems.model.reasons import Reason


@dataclass(frozen=True, slots=True)
class Decision:
    policy: str
    reason: Reason
    min_w: float = -math.inf
    max_w: float = math.inf
    target_w: float | None = None
