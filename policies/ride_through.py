"""Ride-through: stay connected through a grid disturbance inside the curve, island beyond it.

A voltage or frequency excursion is judged against a ride-through curve (IEEE 1547-2018
category II by default, or a utility's curve from the site file): each region of the
signal (in per unit of nominal) says how long the site must stay connected while the
signal is in it; a signal in no region is beyond the curve at once. An excursion starts
when either signal leaves its continuous region and ends when both are back; it is beyond
the curve when its time so far exceeds what the signal's present region allows (a dip to
0.5 pu for 0.2 s and then at 0.8 pu is judged by 0.8 pu's allowance from the start).

While the site rides through, the period step holds the battery's setpoint where it was
(`RIDE_THROUGH`): the grid sees the site's load steady, which is what the utility asks.
A PCS that reports the grid gone is not a disturbance: that islands at once (the watcher).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ems.model.decision import Decision
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot

NAME = "ride_through"


@dataclass(frozen=True, slots=True)
class Region:
    """Signal in [low, high] (pu): stay connected for `ride_s` (None: indefinitely); with
    `ride_s_at_high`, the allowance runs linearly from `ride_s` at low to it at high."""

    low: float
    high: float
    ride_s: float | None = None
    ride_s_at_high: float | None = None

    def allowance_s(self, value: float) -> float | None:
        if self.ride_s is None:
            return None
        if self.ride_s_at_high is None or self.high <= self.low:
            return self.ride_s
        return self.ride_s + (self.ride_s_at_high - self.ride_s) * (value - self.low) / (self.high - self.low)


Curve = tuple[Region, ...]

# IEEE 1547-2018, category II, mandatory and permissive operation regions (per unit of nominal)
CATEGORY_II_VOLTAGE: Curve = (
    Region(0.88, 1.10),
    Region(0.65, 0.88, 3.0, 3.0 + 8.7 * 0.23),  # 3 s at 0.65 pu + 8.7 s/pu
    Region(0.45, 0.65, 0.32),
    Region(0.30, 0.45, 0.16),
    Region(1.10, 1.15, 1.0),
    Region(1.15, 1.175, 0.5),
    Region(1.175, 1.20, 0.2),
)
# 58.8-61.2 Hz continuous, 57.0-58.8 and 61.2-61.8 Hz for 299 s (60 Hz; the same pu at 50 Hz)
CATEGORY_II_FREQUENCY: Curve = (
    Region(0.98, 1.02),
    Region(0.95, 0.98, 299.0),
    Region(1.02, 1.03, 299.0),
)


def allowance_s(curve: Curve, value_pu: float) -> float | None:
    """How long the site must ride through at this value: None indefinitely, 0 not at all.
    Where regions overlap at a boundary, the more lenient one holds."""
    best: float | None = 0.0
    for r in curve:
        if r.low <= value_pu <= r.high:
            a = r.allowance_s(value_pu)
            if a is None:
                return None
            best = max(best or 0.0, a)
    return best


class Verdict(enum.Enum):
    IN_BAND = "in_band"
    RIDING = "riding"  # outside the continuous band, inside the curve: stay connected
    BEYOND = "beyond"  # past the curve: island


@dataclass(frozen=True, slots=True)
class Excursion:
    cause: str  # "voltage" or "frequency": the signal that left its band first
    since_s: float
    worst_voltage_pu: float | None = None  # the farthest from 1 pu seen so far
    worst_frequency_pu: float | None = None


def _worse(old: float | None, new: float | None) -> float | None:
    if new is None:
        return old
    return new if old is None or abs(new - 1.0) > abs(old - 1.0) else old


def judge(voltage: Curve, frequency: Curve, voltage_pu: float | None, frequency_pu: float | None,
          now_s: float, excursion: Excursion | None) -> tuple[Verdict, str, Excursion | None]:
    """One sample -> (verdict, cause, the excursion now). Unread signals (None) are ignored."""
    allowed: list[tuple[str, float]] = []
    for cause, curve, value in (("voltage", voltage, voltage_pu), ("frequency", frequency, frequency_pu)):
        if value is not None and (a := allowance_s(curve, value)) is not None:
            allowed.append((cause, a))
    if not allowed:
        return Verdict.IN_BAND, "in_band", None
    if excursion is None:
        excursion = Excursion(allowed[0][0], now_s)
    excursion = Excursion(excursion.cause, excursion.since_s, _worse(excursion.worst_voltage_pu, voltage_pu),
                          _worse(excursion.worst_frequency_pu, frequency_pu))
    elapsed_s = now_s - excursion.since_s
    for cause, a in allowed:
        if a <= 0.0 or elapsed_s > a:
            return Verdict.BEYOND, cause, excursion
    return Verdict.RIDING, excursion.cause, excursion


def decide(snap: SiteSnapshot) -> Decision | None:
    """While riding through: the battery holds the setpoint it had, so the grid sees no step."""
    if snap.riding_through is None:
        return None
    w = snap.last_setpoint_w
    return Decision(NAME, Reason.RIDE_THROUGH, w, w, w)
