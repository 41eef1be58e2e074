"""The job scheduler's announcements of job starts and stops (docs/topics.md).

A cluster scheduler (Slurm's prolog and epilog, a Kubernetes operator, the simulator's
stand-in) tells the controller ahead of time that a job starts or stops on some racks,
so the step it makes at the grid can be ramped (policies/job_ramp.py). One topic,
`PREFIX/scheduler/jobs`, QoS 1. Decoding is strict: a payload that is not the documented
shape, names a rack or row the site file does not have, or a time that is not finite
raises `MalformedData`; the caller counts and logs it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from drivers.errors import MalformedData
from drivers.json_numbers import finite
from drivers.rack_protocol import _load, _short

EVENTS = frozenset({"start", "stop"})
MAX_JOB_ID = 128  # characters: a job id is a label, not a document
MAX_PAYLOAD_BYTES = 256 * 1024  # a job on every rack of a large site fits; a 30 MB document is refused unread


def jobs_topic(prefix: str) -> str:
    return f"{prefix}/scheduler/jobs"


@dataclass(frozen=True, slots=True)
class JobAnnouncement:
    job: str
    event: str  # "start" or "stop"
    rack_ids: tuple[str, ...]
    at_wall_s: float  # when the step happens, seconds since the epoch
    step_w: float | None  # the power the job adds (start) or sheds (stop), if the scheduler knows it


def encode(a: JobAnnouncement, seq: int) -> bytes:
    body: dict[str, object] = {"job": a.job, "event": a.event, "racks": list(a.rack_ids),
                               "at": round(a.at_wall_s, 3), "seq": seq}
    if a.step_w is not None:
        body["step_w"] = round(a.step_w, 1)
    return json.dumps(body, separators=(",", ":")).encode()


def decode(payload: bytes, rack_ids: tuple[str, ...], nameplate_w: float) -> JobAnnouncement:
    """One announcement, its racks checked against the site's (`racks` or whole `rows`)."""
    obj = _load(payload, "job announcement", MAX_PAYLOAD_BYTES)  # refused unread past the bound
    if not isinstance(obj, dict):
        raise MalformedData("job announcement is not a JSON object")
    job = obj.get("job")
    if not isinstance(job, str) or not 0 < len(job) <= MAX_JOB_ID:
        raise MalformedData(f"job must be a non-empty string of at most {MAX_JOB_ID} characters")
    event = obj.get("event")
    if not isinstance(event, str) or event not in EVENTS:
        raise MalformedData(f"event must be 'start' or 'stop', got {_short(event)}")
    racks = _racks(obj, rack_ids)
    at = finite(obj.get("at"))
    if at is None:
        raise MalformedData(f"at must be a finite time in seconds since the epoch, got {_short(obj.get('at'))}")
    step = obj.get("step_w")
    step_w = finite(step)
    if step is not None and (step_w is None or not 0 < step_w <= nameplate_w * len(racks)):
        raise MalformedData(f"step_w must be > 0 and at most the racks' nameplate, got {_short(step)}")
    return JobAnnouncement(job, str(event), racks, at, step_w)




def _racks(obj: dict[str, object], rack_ids: tuple[str, ...]) -> tuple[str, ...]:
    racks, rows = obj.get("racks"), obj.get("rows")
    if (racks is None) == (rows is None):
        raise MalformedData("give exactly one of racks (rack ids) or rows (row ids)")
    names = racks if racks is not None else rows
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names) \
            or len(names) > len(rack_ids):
        raise MalformedData("racks or rows must be a non-empty list of ids, at most one per rack")
    wanted = set(names)
    if racks is not None:
        unknown = wanted.difference(rack_ids)
        if unknown:
            raise MalformedData(f"unknown rack {_short(sorted(unknown)[0])}")
        return tuple(dict.fromkeys(names))
    chosen = tuple(r for r in rack_ids if r.split("-", 1)[0] in wanted)
    unknown_rows = wanted - {r.split("-", 1)[0] for r in chosen}
    if unknown_rows:
        raise MalformedData(f"unknown row {_short(sorted(unknown_rows)[0])}")
    return chosen
