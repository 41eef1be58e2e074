"""Job starts and stops ramped so that neither breaks the grid's ramp limit.

A training job that starts or stops moves its racks' power by hundreds of kW within
seconds. The scheduler announces it (drivers/scheduler_protocol.py); when the step comes,
the battery takes it first (the cheapest lever: the fast loop and the ramp constraint
let the grid follow at the connection's rate while the battery covers the difference).
Where the battery has not the room for it this period (its headroom that way, less half
the swing it also holds), the job's racks (never those of a critical row) are told to ramp (a smoothing profile with no
floor and a ramp rate: their share of `rate_w_per_s`) from `lead_s` before the step
(the racks' response time) until the step has had time to complete at that rate. The
choice is made once per announcement, when its lead time begins, and kept until it ends.
Pure: the caller supplies the time, the announcements and the battery's room.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ems.model.racks import RacksReading, SmoothingProfile
from ems.model.reasons import Reason


@dataclass(frozen=True, slots=True)
class JobStep:
    """An announced step, in the controller's clock."""

    job: str
    event: str  # "start" or "stop"
    rack_ids: tuple[str, ...]
    at_s: float
    step_w: float | None  # announced; else estimated from the racks' power and nameplate


@dataclass(frozen=True, slots=True)
class JobRampParams:
    rate_w_per_s: float  # what a job's step may move the grid by, per second (its share of the ramp limit)
    lead_s: float = 5.0  # the profile goes out this long before the step: the racks' response time
    settle_s: float = 10.0  # kept this long after the ramp should be done
    critical_rows: frozenset[str] = frozenset()  # never ramped: their steps are the battery's alone


@dataclass(frozen=True, slots=True)
class Ramp:
    job: str
    event: str
    lever: str  # "battery" or "gpu"
    rack_ids: tuple[str, ...]
    step_w: float
    until_s: float
    rack_rate_w_per_s: float | None  # per rack, where the GPUs ramp


@dataclass(frozen=True, slots=True)
class JobRampState:
    ramps: dict[tuple[str, str], Ramp] = field(default_factory=dict)  # by (job, event)


def estimated_step_w(s: JobStep, racks: RacksReading) -> float:
    """What the job will move: as announced, else a start lifts its racks to nameplate and a stop
    drops them to nothing (from what they draw now; a rack that never reported, its nameplate)."""
    if s.step_w is not None:
        return s.step_w
    idx = [racks.rack_ids.index(r) for r in s.rack_ids if r in racks.rack_ids]
    nameplate = float(racks.nameplate_w[idx].sum())
    drawn = float(np.nan_to_num(racks.power_w[idx], nan=0.0).sum())
    return max(nameplate - drawn, 0.0) if s.event == "start" else drawn


def decide(now_s: float, steps: list[JobStep], racks: RacksReading, discharge_room_w: float,
           charge_room_w: float, swing_w: float, p: JobRampParams, state: JobRampState
           ) -> tuple[dict[str, SmoothingProfile | None], Reason | None, list[Ramp], JobRampState]:
    """Each announced job's racks' profile (only racks of jobs the GPUs ramp are listed), the
    reason when any is ramped, the ramps that began this period (for the event log), the state."""
    ramps = {key: r for key, r in state.ramps.items() if now_s <= r.until_s}
    began: list[Ramp] = []
    for s in steps:
        if (s.job, s.event) in ramps or not s.at_s - p.lead_s <= now_s <= s.at_s + p.settle_s:
            continue
        step_w = estimated_step_w(s, racks)
        room_w = (discharge_room_w if s.event == "start" else charge_room_w) - swing_w / 2
        duration_s = step_w / p.rate_w_per_s
        rampable = tuple(r for r in s.rack_ids if r.split("-", 1)[0] not in p.critical_rows)
        if step_w <= room_w or not rampable:
            ramp = Ramp(s.job, s.event, "battery", s.rack_ids, step_w, s.at_s + duration_s + p.settle_s, None)
        else:
            # the racks that may ramp carry the whole step's rate between them (the critical ones step at once)
            ramp = Ramp(s.job, s.event, "gpu", rampable, step_w, s.at_s + duration_s + p.settle_s,
                        p.rate_w_per_s / len(rampable))
        ramps[(s.job, s.event)] = ramp
        began.append(ramp)
    profiles: dict[str, SmoothingProfile | None] = {}
    for r in ramps.values():
        if r.rack_rate_w_per_s is not None:
            for rid in r.rack_ids:
                profiles[rid] = combine(profiles.get(rid), SmoothingProfile(0.0, r.rack_rate_w_per_s))
    reason = Reason.JOB_RAMP if profiles else None
    return profiles, reason, began, JobRampState(ramps)


def combine(a: SmoothingProfile | None, b: SmoothingProfile | None) -> SmoothingProfile | None:
    """Two levers' profiles on one rack: the higher floor and the slower ramp."""
    if a is None or b is None:
        return a if b is None else b
    return SmoothingProfile(max(a.floor_w, b.floor_w), min(a.ramp_w_per_s, b.ramp_w_per_s))
