"""An OpenADR 2.0b event (as openleadr parses it) as the site's demand-response events.

Each interval of a supported signal becomes one `DrEvent` (`{event_id}:{uid}`): SIMPLE
levels cut a configured share of the baseline; LOAD_DISPATCH `setpoint` is an import target
and `delta` a reduction; LOAD_CONTROL `x-loadControlSetpoint` a target,
`x-loadControlCapacity` the share of normal load allowed, `x-loadControlPercentOffset` a
percentage cut. Anything else the site cannot act on: `Unsupported`, and the VEN opts out.
Pure: the VEN hands in what openleadr parsed and gets events or a typed error.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from drivers.json_numbers import finite
from ems.model.dr import MAX_AHEAD_S, DrEvent
from ems.model.errors import EmsError

MAX_W = 1e10
_SCALE = {"none": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}


class Unsupported(EmsError):
    """A well-formed event the site cannot act on (a price signal, a load increase)."""


class Malformed(EmsError):
    """An event whose fields are missing or out of range."""


def _scale_w(signal: Mapping[str, Any], default_w: float) -> float:
    m = signal.get("measurement")
    if not isinstance(m, Mapping):
        return default_w
    scale = m.get("scale", "none")
    if scale not in _SCALE:
        raise Malformed(f"power scale {scale!r}")
    return _SCALE[str(scale)]


def _number(value: object) -> float:
    f = finite(value)
    if f is None:
        raise Malformed(f"payload {str(value)[:40]!r} is not a finite number")
    return f


def _ask(name: str, kind: str, payload: float, scale_w: float,
         levels: Mapping[int, float]) -> dict[str, float] | None:
    """What one interval asks (None: nothing, e.g. SIMPLE level 0)."""
    if name.upper() == "SIMPLE" and kind == "level":
        level = int(payload)
        if level == 0:
            return None
        if level not in levels:
            raise Unsupported(f"SIMPLE level {level} has no configured cut")
        return {"reduction_fraction": levels[level]}
    if name in ("LOAD_DISPATCH", "LOAD_CONTROL") and kind in ("setpoint", "x-loadControlSetpoint"):
        w = payload * scale_w
        if not 0 <= w <= MAX_W:
            raise Malformed(f"target {w} W out of range")
        return {"target_import_w": w}
    if name == "LOAD_DISPATCH" and kind == "delta":
        if payload >= 0:
            raise Unsupported("a load increase")
        return {"reduction_w": min(-payload * scale_w, MAX_W)}
    if name == "LOAD_CONTROL" and kind == "x-loadControlCapacity":
        if not 0 <= payload <= 1:
            raise Malformed(f"capacity {payload} outside 0..1")
        return {"reduction_fraction": 1.0 - payload}
    if name == "LOAD_CONTROL" and kind == "x-loadControlPercentOffset":
        if not -100 <= payload <= 0:
            raise Unsupported(f"a percent offset of {payload}")
        return {"reduction_fraction": -payload / 100.0}
    raise Unsupported(f"signal {name}/{kind}")


MAX_INTERVALS = 96  # a day of quarter hours: more is a hostile VTN, not a program
MAX_INTERVAL_S = 86400.0


def check_interval(at: datetime, d: timedelta, now_s: float) -> None:
    """An interval a program could mean: one that ends (0 < d <= a day) and lies within a year
    of now. An event to the year 9999 is no program's, and its local times overflow the planner's
    calendar (OverflowError in a zone east of UTC ended the controller). Raises `Malformed`."""
    if not 0 < d.total_seconds() <= MAX_INTERVAL_S:
        raise Malformed(f"an interval of {d.total_seconds()} s (0 < d <= {MAX_INTERVAL_S:.0f})")
    begin_s = at.timestamp()
    if begin_s > now_s + MAX_AHEAD_S or begin_s + d.total_seconds() < now_s - MAX_AHEAD_S:
        raise Malformed(f"an interval at {at.isoformat()} is too far from now")


def dr_events(event: Mapping[str, Any], levels: Mapping[int, float], power_scale_w: float,
              now_s: float) -> list[DrEvent]:
    """The site's events for one OpenADR event (empty: it asks nothing now); `now_s`: wall
    time, which each interval must lie within a year of. Raises `Unsupported` or `Malformed`."""
    try:
        desc = event["event_descriptor"]
        event_id = str(desc["event_id"])
        active = event["active_period"]
        start: datetime = active["dtstart"]
        signals = event["event_signals"]
        if isinstance(signals, Mapping):
            signals = signals["event_signals"]
        if not isinstance(start, datetime) or start.tzinfo is None:
            raise Malformed("dtstart without a time zone")
        out: list[DrEvent] = []
        supported = 0
        for signal in signals:
            name, kind = str(signal["signal_name"]), str(signal["signal_type"])
            at = start
            if len(signal["intervals"]) > MAX_INTERVALS:
                raise Malformed(f"{len(signal['intervals'])} intervals (at most {MAX_INTERVALS})")
            for k, interval in enumerate(signal["intervals"]):
                at = interval.get("dtstart") or at
                duration: timedelta = interval["duration"]
                if not isinstance(duration, timedelta) or not isinstance(at, datetime) or at.tzinfo is None:
                    raise Malformed("an interval without a duration or a zoned start")
                check_interval(at, duration, now_s)
                try:
                    ask = _ask(name, kind, _number(interval["signal_payload"]), _scale_w(signal, power_scale_w),
                               levels)
                except Unsupported:
                    if name.upper() in ("SIMPLE", "LOAD_DISPATCH", "LOAD_CONTROL"):
                        raise
                    break  # a price signal beside a dispatch: not ours to act on
                supported += 1
                end = at + duration
                if ask is not None:
                    uid = interval.get("uid", k)
                    out.append(DrEvent(f"{event_id}:{uid}", at.timestamp(), end.timestamp(),
                                       target_import_w=ask.get("target_import_w"), reduction_w=ask.get("reduction_w"),
                                       reduction_fraction=ask.get("reduction_fraction"), source="openadr"))
                at = end
        if not supported:
            raise Unsupported("no signal the site can act on")
        return out
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Malformed(f"{type(exc).__name__}: {exc}") from None
