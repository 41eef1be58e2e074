"""Reserve floor: keep energy in the battery for an outage, whatever earns money.

Ranks above peak shaving and arbitrage: the site-wide stored energy (available units)
may not be discharged below `reserve_soc` of their capacity. The bound allows what can
be discharged in one period without crossing the floor, so a long period (a backtest at
15 min) does not overshoot it either. Charging is never limited.
"""

from __future__ import annotations

from dataclasses import dataclass

from ems.model.decision import Decision
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot
from policies.arbitrage import site_soc

NAME = "reserve"


@dataclass(frozen=True, slots=True)
class ReserveParams:
    reserve_soc: float
    discharge_efficiency: float = 0.96


def decide(snap: SiteSnapshot, p: ReserveParams) -> Decision | None:
    """The discharge bound; None when no unit is available (battery_limits holds 0 W then)."""
    soc_cap = site_soc(snap)
    if soc_cap is None:
        return None
    soc, capacity_wh = soc_cap
    above_wh = max(soc - p.reserve_soc, 0.0) * capacity_wh
    max_w = above_wh * p.discharge_efficiency / (snap.period_s / 3600.0)
    return Decision(NAME, Reason.RESERVE_FLOOR, max_w=max_w)
