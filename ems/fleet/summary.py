"""What a site tells the fleet, from one published period result (pure).

The status is small on purpose (a fleet page of 1,000 sites reads it every second): grid
import, mean SoC, mode, reason, alarms and the flexibility the site could give now, that is
the battery discharge it could add at once (each available unit's limit less what it gives
now, and what it is charging counts too: it could stop). The 1-minute history aggregates
the periods of each wall-clock minute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ems.published import PeriodResult


def status_summary(r: PeriodResult) -> dict[str, Any]:
    snap = r.snapshot
    socs = [u.bms.soc for u in snap.units if u.bms is not None]
    flex = 0.0
    for u in snap.units:
        if u.available and u.bms is not None:
            power = 0.0 if u.pcs is None else u.pcs.power_w
            flex += max(0.0, u.bms.max_discharge_w - power)
    alarms = sorted({*r.devices_down, *(f"{u.unit_id}:{u.unavailable.code}" for u in snap.units
                                        if u.unavailable is not None)})
    return {
        "grid_w": None if snap.meter is None else round(snap.meter.grid_power_w, 1),
        "soc": None if not socs else round(sum(socs) / len(socs), 4),
        "mode": "island" if r.islanded else ("forced" if r.status.get("forced") else "grid"),
        "reason": r.step.reason.code,
        "battery_w": round(snap.battery_power_w, 1),
        "alarms": alarms,
        "flex_w": round(flex, 1),
        "ha": r.status.get("ha"),
    }


@dataclass
class _Minute:
    minute_s: int
    samples: int = 0
    grid_sum_w: float = 0.0
    grid_samples: int = 0
    grid_max_w: float = -math.inf
    soc_sum: float = 0.0
    soc_samples: int = 0
    battery_sum_w: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        n = self.samples
        return {"minute_s": self.minute_s, "samples": n,
                "grid_avg_w": None if not self.grid_samples else round(self.grid_sum_w / self.grid_samples, 1),
                "grid_max_w": None if not self.grid_samples else round(self.grid_max_w, 1),
                "soc_avg": None if not self.soc_samples else round(self.soc_sum / self.soc_samples, 4),
                "battery_avg_w": round(self.battery_sum_w / n, 1),
                "reason": max(self.reasons, key=lambda k: self.reasons[k]) if self.reasons else None}


class MinuteHistory:
    """Averages over each wall-clock minute; `add` returns the minute it closed, if any."""

    def __init__(self) -> None:
        self._open: _Minute | None = None

    def add(self, wall_s: float, summary: dict[str, Any]) -> dict[str, Any] | None:
        minute = int(wall_s // 60) * 60
        closed = None
        m = self._open
        if m is None or m.minute_s != minute:
            closed = None if m is None or not m.samples else m.row()
            m = self._open = _Minute(minute)
        m.samples += 1
        if summary["grid_w"] is not None:
            m.grid_sum_w += summary["grid_w"]
            m.grid_samples += 1
            m.grid_max_w = max(m.grid_max_w, summary["grid_w"])
        if summary["soc"] is not None:
            m.soc_sum += summary["soc"]
            m.soc_samples += 1
        m.battery_sum_w += summary["battery_w"]
        m.reasons[summary["reason"]] = m.reasons.get(summary["reason"], 0) + 1
        return closed
