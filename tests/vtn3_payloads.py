"""OpenADR 3.0.1 JSON as a VTN serves it, for the fake VTN of test_openadr3.py. Standard
library only: scripts/check_openadr3_shapes.py validates these with openadr3-client's own
models (Python 3.12), so the shapes are the spec's as that library reads them, not ours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

CREATED = "2026-01-01T00:00:00Z"


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def duration(d: timedelta) -> str:
    return f"PT{int(d.total_seconds())}S"


def program(pid: str, name: str, targets: dict[str, list[str]] | None = None,
            modified: str = CREATED) -> dict[str, Any]:
    """A program; `targets`: type -> values (its recipients, as an event's)."""
    out: dict[str, Any] = {"id": pid, "objectType": "PROGRAM", "createdDateTime": CREATED,
                           "modificationDateTime": modified, "programName": name,
                           "programLongName": f"{name} (test)", "retailerName": "test-dso"}
    if targets is not None:
        out["targets"] = [{"type": kind, "values": values} for kind, values in targets.items()]
    return out


def event(eid: str, pid: str, start: datetime, intervals: list[tuple[timedelta, str, float]],
          units: str | None = "KW", modified: str = CREATED, priority: int | None = None,
          targets: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """An event whose intervals follow one another from `start`: (duration, payload type, value);
    `targets`: type -> values."""
    out: dict[str, Any] = {
        "id": eid, "objectType": "EVENT", "createdDateTime": CREATED, "modificationDateTime": modified,
        "programID": pid, "eventName": f"event {eid}",
        "intervalPeriod": {"start": iso(start), "duration": duration(intervals[0][0])},
        "intervals": []}
    if priority is not None:
        out["priority"] = priority
    if targets is not None:
        out["targets"] = [{"type": kind, "values": values} for kind, values in targets.items()]
    if units is not None:
        out["payloadDescriptors"] = [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": kind, "units": units}
                                     for kind in sorted({k for _, k, _ in intervals})]
    at = start
    for k, (d, kind, value) in enumerate(intervals):
        out["intervals"].append({"id": k, "intervalPeriod": {"start": iso(at), "duration": duration(d)},
                                 "payloads": [{"type": kind, "values": [value]}]})
        at += d
    return out


def ven_object(vid: str, request: dict[str, Any]) -> dict[str, Any]:
    """The ven object a VTN keeps for a VEN's request (POST /vens) or its business logic's."""
    return {"id": vid, "objectType": "VEN", "createdDateTime": CREATED, "modificationDateTime": CREATED,
            **{k: v for k, v in request.items() if k != "objectType"}}
