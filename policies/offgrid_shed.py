"""Off-grid, when no genset can come: every non-critical rack to its minimum cap.

Pure, each period. While the site needs its genset (the battery is running low: the
dispatch's recharge latch, or the load is not served) and the genset reports a failed start,
no relief is coming. As the failover island does (docs/failover.md), every rack outside the
critical rows is capped at `min_cap_fraction` of its nameplate to stretch the battery's
energy; critical rows keep their load. Otherwise every cap is released (None).
"""

from __future__ import annotations

from ems.model.racks import RacksReading

NAME = "offgrid_shed"


def caps(racks: RacksReading, critical_rows: frozenset[str], min_cap_fraction: float,
         shed: bool) -> dict[str, float | None]:
    """Each rack's cap (None: released)."""
    if not shed:
        return dict.fromkeys(racks.rack_ids)
    return {rid: None if row in critical_rows else float(min_cap_fraction * nameplate)
            for rid, row, nameplate in zip(racks.rack_ids, racks.row_of_rack, racks.nameplate_w, strict=True)}
