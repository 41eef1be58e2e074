"""The scheduler's job announcements, kept, and the job-ramp lever decided each period.

`JobBook` takes announcements off `PREFIX/scheduler/jobs` (drivers/scheduler_protocol.py):
each is checked against the site's racks, its time moved onto the controller's clock, and
kept until an hour after its step (a later announcement of the same job and event
replaces it). A malformed one is rejected, counted and logged once until a valid one comes.
`JobRamps` runs the pure policy (policies/job_ramp.py) on what the period step left the
battery: its room to discharge and to charge around this period's setpoint.
"""

from __future__ import annotations

import structlog

from drivers import scheduler_protocol as sp
from drivers.errors import MalformedData
from ems.config import SiteConfig
from ems.model.racks import SmoothingProfile
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot
from ems.period import StepResult
from policies import job_ramp

log = structlog.get_logger("ems.jobs")

KEEP_AFTER_S = 3600.0  # an announcement is kept this long after its step
EARLIEST_S = -60.0  # a step announced this far in the past is still taken (a late epilog)
LATEST_S = 86_400.0  # and at most this far ahead: a schedule, not a calendar
MAX_PENDING = 1000  # announcements held at once: a flood cannot grow the book


class JobBook:
    def __init__(self, rack_ids: tuple[str, ...], nameplate_w: float) -> None:
        self.rack_ids = rack_ids
        self.nameplate_w = nameplate_w
        self._steps: dict[tuple[str, str], job_ramp.JobStep] = {}
        self.received = self.malformed = self.refused_full = 0
        self._bad = False  # the last message was malformed (log once)

    def ingest(self, payload: bytes, now_s: float, wall_s: float) -> bool:
        """Take one announcement. Returns False (and counts it) if rejected."""
        try:
            a = sp.decode(payload, self.rack_ids, self.nameplate_w)
            ahead_s = a.at_wall_s - wall_s
            if not EARLIEST_S <= ahead_s <= LATEST_S:
                raise MalformedData(f"at is {ahead_s:+.0f} s from now: outside {EARLIEST_S:g}..{LATEST_S:g} s")
        except MalformedData as exc:
            self.malformed += 1
            if not self._bad:
                self._bad = True
                log.warning("job announcement rejected", error=str(exc))
            return False
        if self._bad:
            self._bad = False
            log.info("job announcements valid again")
        self._expire(now_s)
        key = (a.job, a.event)
        step = job_ramp.JobStep(a.job, a.event, a.rack_ids, now_s + ahead_s, a.step_w)
        if key not in self._steps and len(self._steps) >= MAX_PENDING:
            # full: the announcement furthest ahead gives way (a flood of far-off ones cannot lock out the next)
            furthest = max(self._steps, key=lambda k: self._steps[k].at_s)
            if self._steps[furthest].at_s <= step.at_s:
                self.refused_full += 1
                return False
            del self._steps[furthest]
            self.refused_full += 1
        self._steps[key] = step
        self.received += 1
        return True

    def add(self, step: job_ramp.JobStep) -> None:
        """An announcement already on the controller's clock (the fast simulation's scheduler)."""
        self._steps[(step.job, step.event)] = step

    def steps(self, now_s: float) -> list[job_ramp.JobStep]:
        self._expire(now_s)
        return list(self._steps.values())

    def _expire(self, now_s: float) -> None:
        for key in [k for k, s in self._steps.items() if now_s > s.at_s + KEEP_AFTER_S]:
            del self._steps[key]


class JobRamps:
    def __init__(self, book: JobBook, params: job_ramp.JobRampParams) -> None:
        self.book = book
        self.params = params
        self.state = job_ramp.JobRampState()
        self.reason: Reason | None = None

    def decide(self, snap: SiteSnapshot, result: StepResult, swing_w: float
               ) -> tuple[dict[str, SmoothingProfile | None], list[job_ramp.Ramp]]:
        lo = sum(b[0] for b in result.unit_bounds_w.values())
        hi = sum(b[1] for b in result.unit_bounds_w.values())
        base = result.setpoint_w
        profiles, self.reason, began, self.state = job_ramp.decide(
            snap.now_s, self.book.steps(snap.now_s), snap.racks, hi - base, base - lo, swing_w, self.params,
            self.state)
        return profiles, began

    @property
    def ramping(self) -> list[str]:
        return sorted(f"{r.job}/{r.event}:{r.lever}" for r in self.state.ramps.values())


def job_ramps(cfg: SiteConfig) -> JobRamps | None:
    """The job-ramp lever where the site file allows GPU levers and the connection has a ramp limit."""
    sm, g = cfg.policies.smoothing, cfg.grid_connection
    if sm is None or not sm.enabled or not sm.gpu or sm.job_ramp_share <= 0 or g.ramp_limit_w is None:
        return None
    rate = sm.job_ramp_share * g.ramp_limit_w / g.ramp_window_s
    return JobRamps(JobBook(tuple(cfg.racks.rack_ids()), cfg.racks.nameplate_w),
                    job_ramp.JobRampParams(rate, sm.job_ramp_lead_s,
                                           critical_rows=frozenset(cfg.racks.critical_rows),
                                           period_s=cfg.control.period_s))
