"""The grid connection's limits: import no more than its rating, export no more than allowed.

With the site load P (grid + battery) the grid carries P - B for a battery power B, so
an import limit I asks B >= P - I (discharge at least the excess) and an export limit E
asks B <= P + E (0 W: the battery never exports, and absorbs what PV would export when it
can). They rank right after the battery's own limits: a breaker or a connection contract
outranks the reserve and every money-making policy. Without a trusted meter the load is
unknown: an export limit then allows no more discharge than the setpoint held (the meter
safe action's hold), and none after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ems.model.decision import Decision
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot

IMPORT = "import_limit"
EXPORT = "export_limit"


@dataclass(frozen=True, slots=True)
class GridLimitsParams:
    import_limit_w: float | None = None
    export_limit_w: float | None = None  # 0: no export
    meter_invalid_hold_s: float = 0.0

    @property
    def configured(self) -> bool:
        return self.import_limit_w is not None or self.export_limit_w is not None


def decide(snap: SiteSnapshot, p: GridLimitsParams) -> list[Decision]:
    load_w = snap.site_load_w
    out: list[Decision] = []
    if load_w is None:
        if p.export_limit_w is not None:
            since = snap.meter_invalid_since_s
            holding = since is not None and snap.now_s - since < p.meter_invalid_hold_s
            why = snap.meter_invalid or Reason.STALE_METER
            out.append(Decision(EXPORT, why, max_w=max(snap.last_setpoint_w, 0.0) if holding else 0.0))
        return out
    if p.import_limit_w is not None:
        out.append(Decision(IMPORT, Reason.IMPORT_LIMIT, min_w=load_w - p.import_limit_w))
    if p.export_limit_w is not None:
        out.append(Decision(EXPORT, Reason.EXPORT_LIMIT, max_w=load_w + p.export_limit_w))
    return out


def site_bounds(snap: SiteSnapshot, p: GridLimitsParams) -> tuple[float, float]:
    """(lowest, highest) site battery power the connection allows, for the envelope's last
    word: the decisions' bounds, widened to contain 0 (stopping is never blocked)."""
    lo, hi = -math.inf, math.inf
    for d in decide(snap, p):
        lo, hi = max(lo, d.min_w), min(hi, d.max_w)
    return min(lo, 0.0), max(hi, 0.0)
