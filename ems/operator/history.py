"""What the dashboard's charts show: decimated samples of the site, and the month's peak import.

The control loop may run a period every few milliseconds (100 ms on a site, ~28 ms in the
720x demo); a browser needs a few points a second. Each sample covers the periods since
the previous one and keeps their extremes (grid import max, rack load min and max), so a
swing between two samples still shows. Rack load is a gap (None) while any rack's
telemetry is stale (as when the controller starts, before every rack has reported): a
partial sum would read the stale racks as 0 W. The recent samples are kept as they are (`keep` of them, the live
stream's); every sample also goes into a coarse sample per `coarse_s` of site time
(`coarse_keep` of them, a day at one site second a second), so that the dashboard's longer
time ranges have data. A window of both, merged down to a number of points, is what the
page asks for when it loads or changes its range (`window`). The highest import of any period this month (months
of the tariff zone's wall clock, ems/tariff/calendar.py, as the controller's billing demand in
ems/demand.py and the bill) is tracked on every period; it is kept in memory and starts again
with the process, unlike the billing demand, which the controller persists.

Where the grid connection has a ramp limit, a sample carries the grid import the limit
allowed (`ramp_lo_w`, `ramp_hi_w`: the widest over its periods, so a grid outside it was
outside every period's) and the meter's average import, which is what the limit holds (an
instant reading catches a training swing mid-way). Where the site smooths, it carries the
band RMS the fast loop measures: the grid's, the site's without the battery, and the limit.
`riding_through` says the cause while any of its periods rode through a grid disturbance.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import TYPE_CHECKING, Any

from ems.tariff.calendar import local_seconds, month_label, month_of
from policies import grid_ramp

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
    ramp_lo_w: float = math.inf
    ramp_hi_w: float = -math.inf
    riding_through: str | None = None
    periods: int = 0


@dataclass
class History:
    """Samples at most every `sample_every_s` real seconds, the last `keep` of them; and one
    per `coarse_s` site seconds, the last `coarse_keep` of them."""

    sample_every_s: float = 0.25
    keep: int = 2400
    coarse_s: float = 30.0
    coarse_keep: int = 2880
    zone: tzinfo = UTC  # the tariff's, for the month's peak
    samples: deque[dict[str, Any]] = field(default_factory=deque)
    coarse: deque[dict[str, Any]] = field(default_factory=deque)
    seq: int = 0
    _window: _Window = field(default_factory=_Window)
    _next_real_s: float = 0.0
    _bucket: list[dict[str, Any]] = field(default_factory=list)  # the open coarse sample's members
    _bucket_id: int = 0

    def __post_init__(self) -> None:
        self.samples = deque(maxlen=self.keep)
        self.coarse = deque(maxlen=self.coarse_keep)
        self.peak = MonthPeak(zone=self.zone)

    def on_period(self, r: PeriodResult, cap_w: float | None) -> None:
        s = r.snapshot
        grid = None if s.meter is None else s.meter.grid_power_w
        self.peak.observe(s.wall_s, grid)
        w = self._window
        w.periods += 1
        if grid is not None:
            w.grid_max_w = max(w.grid_max_w, grid)
        # the racks' sum only when every rack's telemetry is fresh: a stale rack is never read as 0 W
        racks = s.racks.reported_power_w if s.racks.stale_count == 0 else None
        if racks is not None:
            w.racks_min_w, w.racks_max_w = min(w.racks_min_w, racks), max(w.racks_max_w, racks)
        if (allowed := grid_ramp.allowed_grid(s, r.step.decisions)) is not None:
            w.ramp_lo_w, w.ramp_hi_w = min(w.ramp_lo_w, allowed[0]), max(w.ramp_hi_w, allowed[1])
        w.riding_through = s.riding_through or w.riding_through
        now = time.monotonic()
        if now < self._next_real_s:
            return
        self._next_real_s = now + self.sample_every_s
        self.seq += 1
        sample = {
            "seq": self.seq, "ts": round(s.wall_s, 3),
            "grid_w": _r(grid), "grid_max_w": _r(w.grid_max_w), "cap_w": _r(cap_w),
            "site_load_w": _r(s.site_load_w),
            "racks_w": _r(racks), "racks_min_w": _r(w.racks_min_w), "racks_max_w": _r(w.racks_max_w),
            "battery_w": _r(s.battery_power_w), "setpoint_w": _r(r.setpoint_w),
            "units": {u.unit_id: {"soc": None if u.bms is None else round(u.bms.soc, 4),
                                  "power_w": None if u.pcs is None else _r(u.pcs.power_w)} for u in s.units},
            "reason": r.step.reason.code, "periods": w.periods,
            "grid_avg_w": None if s.meter is None else _r(s.meter.average_w),
            "ramp_lo_w": _r(w.ramp_lo_w), "ramp_hi_w": _r(w.ramp_hi_w),
            **_band_rms(r.status.get("smoothing")), "riding_through": w.riding_through,
        }
        self.samples.append(sample)
        self._coarse_add(sample)
        self._window = _Window()

    def since(self, seq: int) -> list[dict[str, Any]]:
        return [x for x in self.samples if x["seq"] > seq]

    def window(self, range_s: float | None = None, points: int | None = None) -> list[dict[str, Any]]:
        """The samples of the last `range_s` site seconds (all kept when None), oldest first:
        coarse ones up to where the recent ones begin, then the recent ones; merged in runs
        of consecutive samples down to at most `points`."""
        fine = list(self.samples)
        if not fine and not self.coarse:
            return []
        end = fine[-1]["ts"] if fine else self.coarse[-1]["ts"]
        start = -math.inf if range_s is None else end - range_s
        first_fine = fine[0]["ts"] if fine else math.inf
        out = [c for c in self.coarse if start <= c["ts"] < first_fine]
        out += [x for x in fine if x["ts"] >= start]
        if points is not None and len(out) > points:
            n = math.ceil(len(out) / points)
            out = [merge_samples(out[i:i + n]) for i in range(0, len(out), n)]
        return out

    def _coarse_add(self, sample: dict[str, Any]) -> None:
        bucket = math.floor(sample["ts"] / self.coarse_s)
        if self._bucket and bucket != self._bucket_id:
            self.coarse.append(merge_samples(self._bucket))
            self._bucket = []
        self._bucket_id = bucket
        self._bucket.append(sample)


def _band_rms(smoothing: dict[str, Any] | None) -> dict[str, float | None]:
    """The band RMS of the status's smoothing section (the fast loop's; None without one)."""
    sm = smoothing or {}
    return {"grid_rms_w": _r(sm.get("grid_band_rms_w")), "load_rms_w": _r(sm.get("load_band_rms_w")),
            "rms_limit_w": _r(sm.get("oscillation_limit_w_rms"))}


def _mean(xs: list[float | None], nd: int = 1) -> float | None:
    vals = [x for x in xs if x is not None]
    return None if not vals else round(sum(vals) / len(vals), nd)


def _ext(xs: list[float | None], pick: Callable[[list[float]], float]) -> float | None:
    vals = [x for x in xs if x is not None]
    return None if not vals else pick(vals)


def merge_samples(group: list[dict[str, Any]]) -> dict[str, Any]:
    """One sample for consecutive samples: at the last one's time and sequence number, means
    of the values, extremes of the extremes (the ramp's allowed range the widest), the last
    cap, reason and oscillation limit, the periods summed, the last ride-through's cause."""
    if len(group) == 1:
        return group[0]
    last = group[-1]

    def col(key: str) -> list[float | None]:
        return [x.get(key) for x in group]

    units: dict[str, dict[str, float | None]] = {}
    for uid in last["units"]:
        rows = [x["units"].get(uid) or {} for x in group]
        units[uid] = {"soc": _mean([r.get("soc") for r in rows], 4), "power_w": _mean([r.get("power_w") for r in rows])}
    return {
        "seq": last["seq"], "ts": last["ts"],
        "grid_w": _mean(col("grid_w")), "grid_max_w": _ext(col("grid_max_w"), max), "cap_w": last["cap_w"],
        "site_load_w": _mean(col("site_load_w")),
        "racks_w": _mean(col("racks_w")), "racks_min_w": _ext(col("racks_min_w"), min),
        "racks_max_w": _ext(col("racks_max_w"), max),
        "battery_w": _mean(col("battery_w")), "setpoint_w": _mean(col("setpoint_w")),
        "units": units, "reason": last["reason"], "periods": sum(int(x.get("periods") or 0) for x in group),
        "grid_avg_w": _mean(col("grid_avg_w")),
        "ramp_lo_w": _ext(col("ramp_lo_w"), min), "ramp_hi_w": _ext(col("ramp_hi_w"), max),
        "grid_rms_w": _mean(col("grid_rms_w")), "load_rms_w": _mean(col("load_rms_w")),
        "rms_limit_w": last.get("rms_limit_w"),
        "riding_through": next((x["riding_through"] for x in reversed(group) if x.get("riding_through")), None),
    }
