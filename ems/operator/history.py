"""What the dashboard's charts show: decimated samples of the site, and the month's peak import.

The control loop may run a period every few milliseconds (100 ms on a site, ~28 ms in the
720x demo); a browser needs a few points a second. Each sample covers the periods since
the previous one and keeps their extremes (grid import max, rack load min and max), so a
swing between two samples still shows. The highest import of any period this month (months
of the tariff zone's wall clock, ems/tariff/calendar.py, as the controller's billing demand in
ems/demand.py and the bill) is tracked on every period; it is kept in memory and starts again
with the process, unlike the billing demand, which the controller persists.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import TYPE_CHECKING, Any

from ems.tariff.calendar import local_seconds, month_label, month_of

if TYPE_CHECKING:
    from ems.published import PeriodResult


def _r(x: float | None, nd: int = 1) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


@dataclass
class MonthPeak:
    month: str = ""
    peak_w: float | None = None  # highest grid import of any period
    peak_at_wall_s: float | None = None
    zone: tzinfo = UTC  # the tariff's: the month is the one the bill and the demand meter name

    def observe(self, wall_s: float, grid_w: float | None) -> None:
        month = month_label(month_of(local_seconds(wall_s, self.zone)))
        if month != self.month:
            self.month, self.peak_w, self.peak_at_wall_s = month, None, None
        if grid_w is not None and (self.peak_w is None or grid_w > self.peak_w):
            self.peak_w, self.peak_at_wall_s = grid_w, wall_s


@dataclass
class _Window:
    grid_max_w: float = -math.inf
    racks_min_w: float = math.inf
    racks_max_w: float = -math.inf
    periods: int = 0


@dataclass
class History:
    """Samples at most every `sample_every_s` real seconds, the last `keep` of them."""

    sample_every_s: float = 0.25
    keep: int = 2400
    zone: tzinfo = UTC  # the tariff's, for the month's peak
    samples: deque[dict[str, Any]] = field(default_factory=deque)
    seq: int = 0
    _window: _Window = field(default_factory=_Window)
    _next_real_s: float = 0.0

    def __post_init__(self) -> None:
        self.samples = deque(maxlen=self.keep)
        self.peak = MonthPeak(zone=self.zone)

    def on_period(self, r: PeriodResult, cap_w: float | None) -> None:
        s = r.snapshot
        grid = None if s.meter is None else s.meter.grid_power_w
        self.peak.observe(s.wall_s, grid)
        w = self._window
        w.periods += 1
        if grid is not None:
            w.grid_max_w = max(w.grid_max_w, grid)
        racks = s.racks.reported_power_w
        w.racks_min_w, w.racks_max_w = min(w.racks_min_w, racks), max(w.racks_max_w, racks)
        now = time.monotonic()
        if now < self._next_real_s:
            return
        self._next_real_s = now + self.sample_every_s
        self.seq += 1
        self.samples.append({
            "seq": self.seq, "ts": round(s.wall_s, 3),
            "grid_w": _r(grid), "grid_max_w": _r(w.grid_max_w), "cap_w": _r(cap_w),
            "site_load_w": _r(s.site_load_w),
            "racks_w": _r(racks), "racks_min_w": _r(w.racks_min_w), "racks_max_w": _r(w.racks_max_w),
            "battery_w": _r(s.battery_power_w), "setpoint_w": _r(r.setpoint_w),
            "units": {u.unit_id: {"soc": None if u.bms is None else round(u.bms.soc, 4),
                                  "power_w": None if u.pcs is None else _r(u.pcs.power_w)} for u in s.units},
            "reason": r.step.reason.code, "periods": w.periods,
        })
        self._window = _Window()

    def since(self, seq: int) -> list[dict[str, Any]]:
        return [x for x in self.samples if x["seq"] > seq]
