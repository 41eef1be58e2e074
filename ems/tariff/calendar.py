"""Tariff time: the tariff zone's wall clock, its calendar fields and the TOU schedule lookups.

Tariff time is naive wall-clock time in the tariff's zone (DST included: the clock on the
wall, not standard time) as seconds since 1970-01-01T00:00. The bill, the planner's signals,
the demand meter and the dashboard convert epoch seconds with `local_seconds` and read the
month, hour, weekday and TOU period from `Calendar`, so that for one instant they all name
the same billing month and period.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

import numpy as np
import numpy.typing as npt

from ems.tariff.model import Schedule, Tariff

__all__ = [
    "EPOCH",
    "Calendar",
    "MonthKey",
    "TouKey",
    "calendar",
    "calendar_at",
    "demand_period",
    "energy_period",
    "local_datetime",
    "local_seconds",
    "local_seconds_array",
    "month_label",
    "month_of",
    "period_at",
    "tariff_seconds",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MonthKey = tuple[int, int]  # (year, month 1-12)
TouKey = tuple[int, int, int]  # (year, month 1-12, TOU demand period)

EPOCH = datetime(1970, 1, 1)
_DAY_S = 86_400


# --- wall clock -> tariff time -------------------------------------------------------------


def _offset_s(wall_s: float, zone: tzinfo) -> float:
    offset = datetime.fromtimestamp(wall_s, UTC).astimezone(zone).utcoffset()
    return 0.0 if offset is None else offset.total_seconds()


def local_seconds(wall_s: float, zone: tzinfo) -> float:
    """Epoch seconds -> the zone's naive wall-clock time as seconds since 1970-01-01T00:00."""
    return wall_s + _offset_s(wall_s, zone)


def local_seconds_array(wall_s: npt.ArrayLike, zone: tzinfo) -> FloatArray:
    """`local_seconds` of many instants. The zone is asked once per day, and per instant only
    on the days whose offset changes (a DST switch)."""
    w = np.asarray(wall_s, dtype=np.float64)
    days, inverse = np.unique(np.floor(w / _DAY_S).astype(np.int64), return_inverse=True)
    at_start = np.array([_offset_s(float(d * _DAY_S), zone) for d in days])
    at_end = np.array([_offset_s(float((d + 1) * _DAY_S), zone) for d in days])
    offset = at_start[inverse.reshape(w.shape)]
    switching = (at_start != at_end)[inverse.reshape(w.shape)]
    if switching.any():
        offset[switching] = [_offset_s(float(x), zone) for x in w[switching]]
    return np.asarray(w + offset, dtype=np.float64)


def local_datetime(local_s: float) -> datetime:
    """Tariff time in seconds -> a naive datetime."""
    return EPOCH + timedelta(seconds=local_s)


def tariff_seconds(local: datetime | np.datetime64) -> int:
    """A naive datetime (tariff time) -> seconds since 1970-01-01T00:00."""
    if isinstance(local, datetime):
        return (local - EPOCH) // timedelta(seconds=1)
    return int(local.astype("datetime64[s]").astype(np.int64))


def month_of(local_s: float) -> MonthKey:
    """The (year, month) that tariff time `local_s` falls in."""
    t = local_datetime(local_s)
    return t.year, t.month


def month_label(key: MonthKey) -> str:
    return f"{key[0]:04d}-{key[1]:02d}"


# --- calendar fields -----------------------------------------------------------------------


@dataclass(frozen=True)
class Calendar:
    """Calendar fields of instants in tariff time (any order, any spacing)."""

    t_s: IntArray  # seconds since 1970-01-01T00:00, tariff wall clock
    day: IntArray  # days since 1970-01-01
    year: IntArray
    month: IntArray  # 1-12
    hour: IntArray  # 0-23
    weekend: npt.NDArray[np.bool_]

    @property
    def months(self) -> IntArray:
        """Months since 1970-01: one sortable number per (year, month)."""
        return (self.year - 1970) * 12 + self.month - 1


def calendar_at(local_s: npt.ArrayLike) -> Calendar:
    """Calendar fields of tariff-time instants (seconds; fractions round down)."""
    t_s = np.floor(np.asarray(local_s, dtype=np.float64)).astype(np.int64)
    months = t_s.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
    days = t_s // _DAY_S
    return Calendar(t_s=t_s, day=days, year=1970 + months // 12, month=months % 12 + 1,
                    hour=(t_s - days * _DAY_S) // 3600,
                    weekend=((days + 3) % 7) >= 5)  # 1970-01-01 was a Thursday: (days + 3) % 7 == 0 on Mondays


def calendar(start: datetime | np.datetime64, step_s: float, n_steps: int) -> Calendar:
    """Calendar of a regular series: `n_steps` of `step_s` from `start` (tariff time)."""
    return calendar_at(tariff_seconds(start) + (np.arange(n_steps) * step_s).astype(np.int64))


# --- schedules -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _schedule_array(schedule: Schedule) -> IntArray:
    """A 12x24 schedule as an array, once per schedule (a planner asks every period)."""
    out = np.asarray(schedule, dtype=np.int64)
    out.setflags(write=False)
    return out


def period_at(weekday: Schedule, weekend: Schedule, cal: Calendar) -> IntArray:
    """Period index per instant from 12x24 [month][hour] weekday/weekend schedules."""
    wd = _schedule_array(weekday)
    we = _schedule_array(weekend)
    return np.where(cal.weekend, we[cal.month - 1, cal.hour], wd[cal.month - 1, cal.hour])


def energy_period(tariff: Tariff, cal: Calendar) -> IntArray:
    """TOU energy period per instant (index into `tariff.energy_periods`)."""
    return period_at(tariff.energy_weekday_schedule, tariff.energy_weekend_schedule, cal)


def demand_period(tariff: Tariff, cal: Calendar) -> IntArray:
    """TOU demand period per instant (index into `tariff.demand_periods`)."""
    return period_at(tariff.demand_weekday_schedule, tariff.demand_weekend_schedule, cal)
