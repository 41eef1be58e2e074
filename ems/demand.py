"""Billing demand: average import per demand interval, and this billing month's peaks.

One meter for the live loop, the planner, the backtest and the dashboard, reading time as
the bill does (ems/tariff/calendar.py): intervals of the tariff's `demand_interval_s`
aligned on the tariff zone's wall clock, billing months and TOU demand periods of that
clock. Without a tariff it keeps the flat month peak over 900 s intervals in its zone.

Energy is integrated over the dt the caller measures (the monotonic clock live: control
time never jumps); the wall clock only says which interval a sample belongs to, the one
holding the sample's end. An interval's demand is its energy over the time observed in it,
as the bill averages a partial interval over what is there: a restart or a stalled loop
does not read as zero import. An interval is known by its start in epoch seconds, so wall
time orders intervals even where the local clock repeats an hour (autumn's DST switch
makes two intervals of each local quarter hour, each in its local hour, as the bill of a
zoned series does). A wall-clock step backwards keeps filling the open interval (a closed
interval is never reopened, nothing is counted twice); a step forwards closes it. A
billing month only moves forwards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, tzinfo
from typing import Any

import numpy as np

from ems.model.errors import EmsError
from ems.tariff.calendar import MonthKey, TouKey, calendar_at, demand_period, local_seconds, month_label
from ems.tariff.model import Tariff

_FORMAT = 2  # to_dict's layout; the first (UTC months, no format key) is still read
_EPS = 1e-9  # of an interval: a sample ending on a boundary (give or take float noise) closes that interval
_DAY_S = 86_400


class DemandMeterError(EmsError):
    """The meter cannot use its settings or a persisted state (the message says which field)."""


@dataclass(frozen=True)
class MonthPeaks:
    """A billing month's peaks over its closed intervals (W)."""

    month: MonthKey
    peak_w: float
    tou_peaks_w: tuple[float, ...]  # per TOU demand period, 0 for one not met

    def to_dict(self) -> dict[str, Any]:
        return {"month": month_label(self.month), "peak_w": self.peak_w, "tou_peak_w": list(self.tou_peaks_w)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MonthPeaks:
        return cls(_month_key(d["month"]), float(d["peak_w"]), tuple(float(x) for x in d["tou_peak_w"]))


def _month_key(label: str) -> MonthKey:
    year, month = (int(x) for x in str(label).split("-"))
    if not 1 <= month <= 12:
        raise ValueError(f"month {label!r}")
    return year, month


def _zone_name(zone: tzinfo) -> str:
    return str(zone)  # ZoneInfo: its key; datetime.UTC: "UTC"


class DemandMeter:
    """Average import per clock-aligned demand interval and the billing month's peaks.

    `tariff`: its `demand_interval_s` and TOU demand schedules (None: flat peak only over
    `interval_s`). `zone`: the tariff's time zone; a series already in naive tariff time
    (the backtest, the planner) is fed with the zone left at UTC.
    """

    def __init__(self, tariff: Tariff | None = None, zone: tzinfo = UTC, interval_s: float = 900) -> None:
        self.tariff = tariff
        self.zone = zone
        interval = tariff.demand_interval_s if tariff is not None else interval_s
        if interval != int(interval) or int(interval) <= 0 or 3600 % int(interval):
            raise DemandMeterError(f"interval_s={interval} must be whole seconds dividing 3600 (months start on hours)")
        self.interval_s = int(interval)
        self._utc = _zone_name(zone) in ("UTC", "Etc/UTC")
        self._n_periods = 0 if tariff is None else len(tariff.demand_periods)
        self.clock_steps_back = 0
        self.previous: MonthPeaks | None = None  # the last billing month's final peaks
        self._month: MonthKey | None = None
        self._peak_w = 0.0
        self._tou_peak_w = [0.0] * self._n_periods
        self._start_s: int | None = None  # the open interval's start, epoch seconds
        self._period: int | None = None  # its TOU demand period
        self._energy_ws = 0.0
        self._observed_s = 0.0
        self._day: int | None = None  # the day _hours describes (tariff time, days since 1970-01-01)
        self.history_kw: dict[MonthKey, float] = {}  # closed billing months' peaks (kW)
        self._hours: list[tuple[MonthKey, int | None]] = []

    # --- feeding ---------------------------------------------------------------------------

    def add(self, import_w: float, dt_s: float, wall_s: float) -> None:
        """`import_w` averaged over the last `dt_s` seconds, ending at `wall_s` (epoch seconds).

        Export counts as no import. A non-finite power or a dt <= 0 adds nothing but still
        moves the meter to `wall_s`'s interval."""
        offset = self._offset_s(wall_s)
        start = (math.ceil((wall_s + offset) / self.interval_s - _EPS) - 1) * self.interval_s - round(offset)
        if self._start_s is None:
            self._open(start)
        elif start > self._start_s:
            self._close()
            self._open(start)
        elif start < self._start_s:
            self.clock_steps_back += 1  # wall clock went back: stay in the open interval
        if dt_s > 0 and math.isfinite(import_w):
            self._energy_ws += max(import_w, 0.0) * dt_s
            self._observed_s += dt_s

    def _offset_s(self, wall_s: float) -> float:
        return 0.0 if self._utc else local_seconds(wall_s, self.zone) - wall_s

    def _open(self, start_s: int) -> None:
        month, self._period = self._label(start_s)
        if self._month is None or month > self._month:
            self.previous = self.peaks()
            if self.previous is not None:  # a demand ratchet looks back on closed months (in memory)
                self.history_kw[self.previous.month] = self.previous.peak_w / 1000.0
            self._month, self._peak_w, self._tou_peak_w = month, 0.0, [0.0] * self._n_periods
        self._start_s, self._energy_ws, self._observed_s = start_s, 0.0, 0.0

    def _close(self) -> None:
        if self._observed_s <= 0:
            return
        avg_w = self._energy_ws / self._observed_s
        self._peak_w = max(self._peak_w, avg_w)
        if self._period is not None:
            self._tou_peak_w[self._period] = max(self._tou_peak_w[self._period], avg_w)

    def _label(self, start_s: int) -> tuple[MonthKey, int | None]:
        """Billing month and TOU demand period of the interval starting at `start_s` (epoch)."""
        local_s = start_s + round(self._offset_s(start_s))
        day = local_s // _DAY_S
        if day != self._day:  # the calendar once a day, for its 24 hours
            cal = calendar_at(day * _DAY_S + 3600 * np.arange(24))
            periods: list[int | None] = [None] * 24
            if self.tariff is not None and self._n_periods:
                periods = [int(p) for p in demand_period(self.tariff, cal)]
            self._day = day
            self._hours = [((int(cal.year[h]), int(cal.month[h])), periods[h]) for h in range(24)]
        return self._hours[(local_s - day * _DAY_S) // 3600]

    # --- reading ---------------------------------------------------------------------------

    @property
    def month_key(self) -> MonthKey | None:
        """The billing month (tariff time) of the open interval; None before the first sample."""
        return self._month

    @property
    def month(self) -> str:
        """The billing month as "YYYY-MM" ("" before the first sample)."""
        return "" if self._month is None else month_label(self._month)

    @property
    def month_peak_w(self) -> float:
        """The highest closed interval's average import this billing month."""
        return self._peak_w

    @property
    def tou_peaks_w(self) -> tuple[float, ...]:
        """This month's peak per TOU demand period (0 for a period not met yet)."""
        return tuple(self._tou_peak_w)

    def peaks(self) -> MonthPeaks | None:
        """This billing month's peaks so far (closed intervals); None before the first sample."""
        return None if self._month is None else MonthPeaks(self._month, self._peak_w, tuple(self._tou_peak_w))

    @property
    def current_average_w(self) -> float:
        """The open interval's average import so far."""
        return self._energy_ws / self._observed_s if self._observed_s > 0 else 0.0

    @property
    def interval_start_s(self) -> int | None:
        """Epoch seconds at which the open interval started."""
        return self._start_s

    def _month_peaks(self, key: MonthKey) -> MonthPeaks | None:
        if key == self._month:
            return self.peaks()
        return self.previous if self.previous is not None and key == self.previous.month else None

    def peak_kw(self, key: MonthKey) -> float:
        """Month peak so far in kW, for this billing month or the previous one; 0 for any
        other (a later month has none yet, an earlier one is not kept)."""
        peaks = self._month_peaks(key)
        return 0.0 if peaks is None else peaks.peak_w / 1000.0

    def past_peaks_kw(self) -> Mapping[MonthKey, float]:
        """The peaks of the billing months closed since the meter started (kW)."""
        return self.history_kw

    def tou_peak_kw(self, key: TouKey) -> float:
        """Peak so far in kW of TOU demand period `key[2]` in month `key[:2]` (0 as `peak_kw`)."""
        year, month, period = key
        peaks = self._month_peaks((year, month))
        if peaks is None or not 0 <= period < len(peaks.tou_peaks_w):
            return 0.0
        return peaks.tou_peaks_w[period] / 1000.0

    # --- persistence -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state; `from_dict` with the same tariff and zone restores it exactly."""
        return {"format": _FORMAT, "zone": _zone_name(self.zone), "interval_s": self.interval_s,
                "month": self.month, "month_peak_w": self._peak_w, "tou_peak_w": list(self._tou_peak_w),
                "interval_start_s": self._start_s, "energy_ws": self._energy_ws, "observed_s": self._observed_s,
                "clock_steps_back": self.clock_steps_back,
                "previous": None if self.previous is None else self.previous.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], tariff: Tariff | None = None, zone: tzinfo = UTC,
                  interval_s: float = 900) -> DemandMeter:
        """A meter set up by the caller (as configured now) holding a persisted state.

        The month's peaks are kept; the open interval only where the zone and interval are
        the ones it was measured in; TOU peaks only where the number of demand periods is
        the same. The first format (UTC months, no "format" key) gives its month and peak;
        its open interval is dropped (the time observed in it was not kept)."""
        meter = cls(tariff, zone, interval_s)
        try:
            fmt = int(d.get("format", 1))
            if fmt > _FORMAT:
                raise DemandMeterError(f"persisted demand state has format {fmt}; this version reads up to {_FORMAT}")
            meter.clock_steps_back = int(d.get("clock_steps_back", 0))
            if d.get("month"):
                meter._month, meter._peak_w = _month_key(d["month"]), float(d.get("month_peak_w", 0.0))
            if not math.isfinite(meter._peak_w):  # an inf peak would end peak shaving for the month
                raise ValueError(f"month_peak_w {meter._peak_w} is not a finite number")
            if fmt == 1:
                return meter
            tou = [float(x) for x in d.get("tou_peak_w", [])]
            if len(tou) == meter._n_periods:
                meter._tou_peak_w = tou
            if d.get("previous") is not None:
                prev = MonthPeaks.from_dict(d["previous"])
                meter.previous = prev if len(prev.tou_peaks_w) == meter._n_periods else replace(
                    prev, tou_peaks_w=(0.0,) * meter._n_periods)
            same_clock = d.get("zone") == _zone_name(zone) and d.get("interval_s") == meter.interval_s
            if d.get("interval_start_s") is not None and same_clock:
                meter._start_s = int(d["interval_start_s"])
                meter._period = meter._label(meter._start_s)[1]
                meter._energy_ws, meter._observed_s = float(d["energy_ws"]), float(d["observed_s"])
            peaks = [meter._peak_w, *meter._tou_peak_w, meter._energy_ws, meter._observed_s]
            if meter.previous is not None:
                peaks += [meter.previous.peak_w, *meter.previous.tou_peaks_w]
            if not all(math.isfinite(x) for x in peaks):
                raise ValueError("a peak or the open interval is not a finite number")
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:  # float(10**400), int(inf)
            raise DemandMeterError(f"persisted demand state unreadable: {exc!r}") from exc
        return meter

