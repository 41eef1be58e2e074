"""An OpenADR 3.0.1 event (the VTN's JSON, decoded) as the site's demand-response events.

Each interval of a payload the site can act on becomes one `DrEvent` (`{event id}:{interval
id}`): IMPORT_CAPACITY_LIMIT is an import target, SIMPLE a level whose configured share of
the baseline is cut, DISPATCH_SETPOINT_RELATIVE (negative) a reduction. Power comes in the
payload descriptor's `units` (KW, W, MW); without one, `power_scale_w` per unit. An event
whose payloads are all of other kinds (PRICE, EXPORT_CAPACITY_LIMIT, alerts) is
`Unsupported`; anything missing, out of range, too long, too many or too far off is
`Malformed`. An event targeted at other sites (`for_this_site`) is not the site's. Pure: the
VEN hands in the decoded JSON and the wall clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from drivers.json_numbers import finite
from ems.model.dr import DrEvent
from ems.openadr_events import MAX_INTERVALS, MAX_W, Malformed, Unsupported, check_interval

MAX_ID = 128  # the spec's objectID limit
_UNIT_W = {"W": 1.0, "KW": 1e3, "MW": 1e6, "GW": 1e9}
ACTED_ON = ("IMPORT_CAPACITY_LIMIT", "SIMPLE", "DISPATCH_SETPOINT_RELATIVE")
_TIME = TypeAdapter(datetime)
_DURATION = TypeAdapter(timedelta)

__all__ = ["ACTED_ON", "Malformed", "Unsupported", "dr_events3", "for_this_site", "id_text"]


def id_text(value: object, max_len: int = MAX_ID) -> str | None:
    """An id or version from the VTN as text, or None: a string or integer (not a bool) of 1 to
    `max_len` characters; never an id cut short (it would name another object), never str()
    of a container."""
    text = value if isinstance(value, str) else str(value) if isinstance(value, int) and not isinstance(value, bool) \
        else None
    return text if text is not None and 0 < len(text) <= max_len else None


def _id(value: object, what: str) -> str:
    text = id_text(value)
    if text is None:
        raise Malformed(f"{what}: not a string or integer of 1 to {MAX_ID} characters ({type(value).__name__})")
    return text


def _period(p: object, start: datetime | None, duration: timedelta | None) -> tuple[datetime, timedelta]:
    """An intervalPeriod's start and duration, each defaulting to the one given."""
    if p is None:
        if start is None or duration is None:
            raise Malformed("an interval without an intervalPeriod (and none on the event)")
        return start, duration
    if not isinstance(p, Mapping):
        raise Malformed("intervalPeriod is not an object")
    try:
        at = start if p.get("start") is None else _TIME.validate_python(p["start"])
        d = duration if p.get("duration") is None else _DURATION.validate_python(p["duration"])
    except ValidationError:
        raise Malformed("intervalPeriod start or duration is not ISO 8601") from None
    if at is None or d is None:
        raise Malformed("an intervalPeriod without a start or a duration")
    if at.tzinfo is None:
        raise Malformed("an interval start without a time zone")
    return at, d


def _unit_w(descriptors: object, kind: str, power_scale_w: float) -> float:
    if not isinstance(descriptors, list):
        return power_scale_w
    for d in descriptors[:32]:
        if isinstance(d, Mapping) and d.get("payloadType") == kind and d.get("units") is not None:
            unit = str(d["units"]).upper()
            if unit not in _UNIT_W:
                raise Unsupported(f"{kind} in {unit[:20]!r}")
            return _UNIT_W[unit]
    return power_scale_w


def _ask(kind: str, value: float, unit_w: float, levels: Mapping[int, float]) -> dict[str, float] | None:
    """What one interval's payload asks (None: nothing, e.g. SIMPLE level 0)."""
    if kind == "SIMPLE":
        level = int(value)
        if level != value or level < 0:
            raise Malformed(f"SIMPLE level {value}")
        if level == 0:
            return None
        if level not in levels:
            raise Unsupported(f"SIMPLE level {level} has no configured cut")
        return {"reduction_fraction": levels[level]}
    if kind == "IMPORT_CAPACITY_LIMIT":
        w = value * unit_w
        if not 0 <= w <= MAX_W:
            raise Malformed(f"import limit {w} W out of range")
        return {"target_import_w": w}
    if value >= 0:  # DISPATCH_SETPOINT_RELATIVE
        raise Unsupported("a load increase")
    return {"reduction_w": min(-value * unit_w, MAX_W)}


def _payload(interval: Mapping[str, Any]) -> tuple[str, float] | None:
    """The interval's payload the site acts on (type, value), else None."""
    payloads = interval.get("payloads")
    if not isinstance(payloads, list) or not payloads:
        raise Malformed("an interval without payloads")
    for p in payloads[:16]:
        if not isinstance(p, Mapping):
            raise Malformed("a payload is not an object")
        kind = p.get("type")
        if kind in ACTED_ON:
            values = p.get("values")
            if not isinstance(values, list) or not values:
                raise Malformed(f"{kind} without values")
            v = finite(values[0])
            if v is None:
                raise Malformed(f"{kind} value {str(values[0])[:40]!r} is not a finite number")
            return str(kind), v
    return None


MAX_TARGETS = 32  # target entries of one event
MAX_TARGET_VALUES = 1000  # values of one entry (a program of many VENs names them all)


def for_this_site(targets: object, identity: Mapping[str, frozenset[str]]) -> bool:
    """Whether an event with these `targets` is the site's. The targets name the event's
    recipients, any of them (as a VTN filters by target: values OR'd): none, everyone's; one
    of a type the site names itself by (`identity`: VEN_NAME and the configured types) that
    lists one of its values, the site's; entries of such types that all name others, not the
    site's; only types the site does not know, the VTN's to judge (it listed the event to these
    credentials). 3.0.1 targets are {type, values} objects; 3.1's plain strings are matched
    against all the site's values (their type is the VEN's own business there). Raises
    `Malformed` on another shape."""
    if targets is None:
        return True
    if not isinstance(targets, list) or len(targets) > MAX_TARGETS:
        raise Malformed(f"targets: a list of at most {MAX_TARGETS}")
    every = frozenset().union(*identity.values())
    known = False  # an entry of a type the site names itself by (that did not name it)
    for entry in targets:
        if isinstance(entry, str):  # 3.1
            if entry in every:
                return True
            known = True
            continue
        values = entry.get("values") if isinstance(entry, Mapping) else None
        kind = entry.get("type") if isinstance(entry, Mapping) else None
        if not isinstance(kind, str) or not isinstance(values, list) or len(values) > MAX_TARGET_VALUES:
            raise Malformed("a target that is not {type, values} (3.0.1) or a string (3.1)")
        mine = identity.get(kind)
        if mine is not None:
            if not mine.isdisjoint(str(v) for v in values if isinstance(v, str | int)):
                return True
            known = True
    return not known


def dr_events3(event: object, levels: Mapping[int, float], power_scale_w: float, now_s: float,
               source: str = "openadr3") -> list[DrEvent]:
    """The site's events for one OpenADR 3 event (empty: it asks nothing). Raises `Unsupported`
    or `Malformed`; never anything else, whatever the JSON."""
    if not isinstance(event, Mapping):
        raise Malformed("an event is not an object")
    event_id = _id(event.get("id"), "event id")
    intervals = event.get("intervals")
    if not isinstance(intervals, list) or not intervals:
        raise Malformed("an event without intervals")
    if len(intervals) > MAX_INTERVALS:
        raise Malformed(f"{len(intervals)} intervals (at most {MAX_INTERVALS})")
    priority = finite(event.get("priority"))  # OpenADR: 0 is the highest; in the book the higher number wins
    rank = 0 if priority is None else -int(min(max(priority, 0.0), 1e6))
    start: datetime | None = None
    duration: timedelta | None = None
    if event.get("intervalPeriod") is not None:
        start, duration = _period(event["intervalPeriod"], None, None)
    out: list[DrEvent] = []
    acted = 0
    for interval in intervals:
        if not isinstance(interval, Mapping):
            raise Malformed("an interval is not an object")
        uid = _id(interval.get("id"), "interval id")
        at, d = _period(interval.get("intervalPeriod"), start, duration)
        check_interval(at, d, now_s)  # PT0S (open-ended) included: a window must end
        begin_s = at.timestamp()
        what = _payload(interval)
        start, duration = at + d, d  # the next interval without a period follows this one
        if what is None:
            continue
        kind, value = what
        ask = _ask(kind, value, _unit_w(event.get("payloadDescriptors"), kind, power_scale_w), levels)
        acted += 1
        if ask is not None:
            out.append(DrEvent(f"{event_id}:{uid}", begin_s, begin_s + d.total_seconds(),
                               target_import_w=ask.get("target_import_w"), reduction_w=ask.get("reduction_w"),
                               reduction_fraction=ask.get("reduction_fraction"), source=source, priority=rank))
    if not acted:
        raise Unsupported("no payload the site can act on")
    return out
