"""Billing demand: average import per wall-clock interval (15 min) and this month's peak.

Energy is integrated over the monotonic clock (control time never jumps); the wall clock
only says which interval and month a sample belongs to. An NTP step backwards keeps
filling the current interval (a closed interval is never reopened, nothing is counted
twice); a step forwards closes it. Months are UTC calendar months.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any


def month_key(wall_s: float) -> str:
    t = time.gmtime(wall_s)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}"


@dataclass
class DemandMeter:
    interval_s: float = 900.0
    month: str = ""
    month_peak_w: float = 0.0
    interval_index: int | None = None
    energy_ws: float = 0.0
    clock_steps_back: int = 0

    def add(self, import_w: float, dt_s: float, wall_s: float) -> None:
        """`import_w` averaged over the last `dt_s` monotonic seconds, ending at `wall_s`."""
        idx = math.ceil(wall_s / self.interval_s) - 1  # a sample ending on a boundary closes that interval
        if self.interval_index is None:
            self.interval_index = idx
            self.month = self.month or month_key(wall_s)
        elif idx > self.interval_index:
            self._close()
            self.interval_index, self.energy_ws = idx, 0.0
            if month_key(wall_s) != self.month:
                self.month, self.month_peak_w = month_key(wall_s), 0.0
        elif idx < self.interval_index:
            self.clock_steps_back += 1  # wall clock went back: stay in the open interval
        self.energy_ws += max(import_w, 0.0) * max(dt_s, 0.0)

    def _close(self) -> None:
        self.month_peak_w = max(self.month_peak_w, self.energy_ws / self.interval_s)

    @property
    def current_average_w(self) -> float:
        return self.energy_ws / self.interval_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DemandMeter:
        return cls(**{k: d[k] for k in ("interval_s", "month", "month_peak_w", "interval_index", "energy_ws",
                                         "clock_steps_back") if k in d})
