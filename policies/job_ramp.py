"""Job starts and stops ramped so that neither breaks the grid's ramp limit.

A training job that starts or stops moves its racks' power by hundreds of kW within
seconds. The scheduler announces it (drivers/scheduler_protocol.py); when the step comes,
the battery takes it first (the cheapest lever: the fast loop and the ramp constraint
let the grid follow at the connection's rate while the battery covers the difference).
Where the battery has not the room for it this period (its headroom that way, less half
the swing it also holds), the job's racks (never those of a critical row) are told to ramp (a smoothing profile with no
floor and a ramp rate: their share of `rate_w_per_s`) from `lead_s` before the step
(the racks' response time) until the step has had time to complete at that rate (at most
an hour). Jobs ramping at once share the rate; steps the battery already takes count against
its room. The choice is made once per announcement, when its lead time begins, and kept
until it ends.
Pure: the caller supplies the time, the announcements and the battery's room.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ems.model.racks import RacksReading, SmoothingProfile
from ems.model.reasons import Reason

MIN_RACK_RATE_W_PER_S = 1.0  # a rack told less is not ramping but stopped (and 0.1 W/s is the wire's resolution)
MAX_RAMP_S = 3600.0  # no ramp holds racks longer, whatever step was announced


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
    period_s: float = 1.0  # the control period: the window an announcement is taken in widens by it


@dataclass(frozen=True, slots=True)
class Ramp:
    job: str
    event: str
    lever: str  # "battery" or "gpu"
    rack_ids: tuple[str, ...]
    step_w: float
    until_s: float
    rack_rate_w_per_s: float | None  # per rack, where the GPUs ramp (when it began)
    at_s: float = 0.0  # the step's time


@dataclass(frozen=True, slots=True)
class JobRampState:
    ramps: dict[tuple[str, str], Ramp] = field(default_factory=dict)  # by (job, event)


def estimated_step_w(s: JobStep, racks: RacksReading, index: dict[str, int]) -> float:
    """What the job will move: a start lifts its racks to nameplate and a stop drops them to
    nothing, from what they draw now (a rack that never reported: nothing yet). An announced
    step counts where it is larger: a figure too small must not hand the battery a step it
    cannot take."""
    idx = [index[r] for r in s.rack_ids if r in index]
    nameplate = float(racks.nameplate_w[idx].sum())
    drawn = float(np.nan_to_num(racks.power_w[idx], nan=0.0).sum())
    estimate = max(nameplate - drawn, 0.0) if s.event == "start" else drawn
    return estimate if s.step_w is None else max(s.step_w, estimate)


def decide(now_s: float, steps: list[JobStep], racks: RacksReading, discharge_room_w: float,
           charge_room_w: float, swing_w: float, p: JobRampParams, state: JobRampState
           ) -> tuple[dict[str, SmoothingProfile | None], Reason | None, list[Ramp], JobRampState]:
    """Each announced job's racks' profile (only racks of jobs the GPUs ramp are listed), the
    reason when any is ramped, the ramps that began this period (for the event log), the state."""
    ramps = {key: r for key, r in state.ramps.items() if now_s <= r.until_s}
    index = {rid: i for i, rid in enumerate(racks.rack_ids)}
    began: list[Ramp] = []
    for s in steps:
        # a period longer than the lead must not step over the window
        if (s.job, s.event) in ramps or not s.at_s - p.lead_s - p.period_s <= now_s <= s.at_s + p.settle_s + p.period_s:
            continue
        step_w = estimated_step_w(s, racks, index)
        # the battery's room that way, less half the swing it holds and the steps it already takes
        taken_w = sum(r.step_w for r in ramps.values() if r.lever == "battery" and r.event == s.event)
        room_w = (discharge_room_w if s.event == "start" else charge_room_w) - swing_w / 2 - taken_w
        rampable = tuple(r for r in s.rack_ids if r.split("-", 1)[0] not in p.critical_rows)
        sharing = 1 + sum(r.lever == "gpu" for r in ramps.values())
        if step_w <= room_w or not rampable:
            until = s.at_s + min(step_w / p.rate_w_per_s, MAX_RAMP_S) + p.settle_s
            ramp = Ramp(s.job, s.event, "battery", s.rack_ids, step_w, until, None, s.at_s)
        else:
            until = s.at_s + min(step_w * sharing / p.rate_w_per_s, MAX_RAMP_S) + p.settle_s
            ramp = Ramp(s.job, s.event, "gpu", rampable, step_w, until, _rack_rate(p, sharing, len(rampable)), s.at_s)
        ramps[(s.job, s.event)] = ramp
        began.append(ramp)
    # jobs ramping at once share the rate: together they move the grid no faster than one; a ramp
    # that now shares it is held at least as long as its whole step takes at its share (never
    # shortened: racks let go before their step is done would jump at their own ramp)
    gpu = [key for key, r in ramps.items() if r.lever == "gpu"]
    profiles: dict[str, SmoothingProfile | None] = {}
    for key in gpu:
        r = ramps[key]
        until = r.at_s + min(r.step_w * len(gpu) / p.rate_w_per_s, MAX_RAMP_S) + p.settle_s
        ramps[key] = replace(r, until_s=max(r.until_s, until))
        profile = SmoothingProfile(0.0, _rack_rate(p, len(gpu), len(r.rack_ids)))
        for rid in r.rack_ids:
            profiles[rid] = combine(profiles.get(rid), profile)
    reason = Reason.JOB_RAMP if profiles else None
    return profiles, reason, began, JobRampState(ramps)


def _rack_rate(p: JobRampParams, sharing: int, racks: int) -> float:
    return max(p.rate_w_per_s / sharing / max(racks, 1), MIN_RACK_RATE_W_PER_S)


def combine(a: SmoothingProfile | None, b: SmoothingProfile | None) -> SmoothingProfile | None:
    """Two levers' profiles on one rack: the higher floor and the slower ramp."""
    if a is None or b is None:
        return a if b is None else b
    return SmoothingProfile(max(a.floor_w, b.floor_w), min(a.ramp_w_per_s, b.ramp_w_per_s))
