"""Transitions, logged once: one observer compares consecutive period results.

What it watches: the site's reason, each unit's availability, the meter's validity, the
island, each device's link, the broker, the planner, and each genset start and stop. Each change is logged once and
recorded in the event log with a `Reason` (the state entered, or for a recovery the one
that cleared). A site reason that flaps (peak shaving starting and standing down with
every training swing) is recorded at most `max_reason_events_per_min` times a minute;
the rest are counted in the next one recorded.
"""

from __future__ import annotations

from typing import Any

import structlog

from ems.events import EventLog
from ems.model.reasons import Reason
from ems.published import PeriodResult

log = structlog.get_logger("ems.transitions")


class TransitionObserver:
    def __init__(self, events: EventLog, max_reason_events_per_min: int = 30) -> None:
        self.events = events
        self.max_reason_events_per_min = max_reason_events_per_min
        self.last: PeriodResult | None = None
        self._reason_window: list[float] = []
        self.reason_changes_suppressed = 0

    def _record(self, kind: str, reason: Reason, wall_s: float, bad: bool, **data: Any) -> None:
        (log.warning if bad else log.info)(kind.replace("_", " "), reason=reason.code, **data)
        self.events.record(kind, wall_s, reason.code, **data)

    def __call__(self, cur: PeriodResult) -> None:
        prev, self.last = self.last, cur
        wall = cur.snapshot.wall_s
        if (mg := cur.step.microgrid) is not None:  # each genset start and stop, with its reason
            for e in mg.dispatch.events:
                self._record(f"genset_{e.action}", e.reason, wall, False, genset=e.genset_id)
        if prev is None:
            self._first(cur)
            return
        self._site_reason(prev, cur, wall)
        was = {u.unit_id: u.unavailable for u in prev.snapshot.units}
        for u in cur.snapshot.units:
            before = was.get(u.unit_id)
            if u.unavailable is not before:
                if u.unavailable is not None:
                    self._record("unit_unavailable", u.unavailable, wall, True, unit=u.unit_id)
                elif before is not None:
                    self._record("unit_available", before, wall, False, unit=u.unit_id)
        m0, m1 = prev.snapshot.meter_invalid, cur.snapshot.meter_invalid
        if m1 is not m0:
            if m1 is not None:
                self._record("meter_invalid", m1, wall, True)
            elif m0 is not None:
                self._record("meter_valid", m0, wall, False)
        if cur.islanded != prev.islanded:
            self._record("island_entered" if cur.islanded else "island_left",
                         Reason.ISLANDED if cur.islanded else Reason.RECONNECT_WAIT, wall, cur.islanded)
        self._devices(set(prev.devices_down), cur, wall)
        if cur.broker_connected != prev.broker_connected:
            self._record("broker_back" if cur.broker_connected else "broker_lost", Reason.BROKER_LOST, wall,
                         not cur.broker_connected)
        if cur.plan_error != prev.plan_error:
            if cur.plan_error is not None:
                self._record("plan_failed", Reason.NO_PLAN, wall, True, error=cur.plan_error)
            else:
                self._record("plan_recovered", Reason.NO_PLAN, wall, False, was=prev.plan_error)

    def _first(self, cur: PeriodResult) -> None:
        """The first period: what is already wrong is a transition from not knowing."""
        wall = cur.snapshot.wall_s
        for u in cur.snapshot.units:
            if u.unavailable is not None:
                self._record("unit_unavailable", u.unavailable, wall, True, unit=u.unit_id)
        if cur.snapshot.meter_invalid is not None:
            self._record("meter_invalid", cur.snapshot.meter_invalid, wall, True)
        self._devices(set(), cur, wall)
        if cur.plan_error is not None:
            self._record("plan_failed", Reason.NO_PLAN, wall, True, error=cur.plan_error)

    def _devices(self, before: set[str], cur: PeriodResult, wall: float) -> None:
        now = set(cur.devices_down)
        for device in sorted(now - before):
            self._record("device_lost", Reason.DEVICE_LOST, wall, True, device=device, error=cur.devices_down[device])
        for device in sorted(before - now):
            self._record("device_recovered", Reason.DEVICE_LOST, wall, False, device=device)

    def _site_reason(self, prev: PeriodResult, cur: PeriodResult, wall: float) -> None:
        if cur.step.reason is prev.step.reason:
            return
        self._reason_window = [t for t in self._reason_window if wall - t < 60.0]
        if len(self._reason_window) >= self.max_reason_events_per_min:
            self.reason_changes_suppressed += 1
            return
        self._reason_window.append(wall)
        suppressed, self.reason_changes_suppressed = self.reason_changes_suppressed, 0
        data: dict[str, Any] = {"previous": prev.step.reason.code, "decided_by": cur.step.decided_by}
        if suppressed:
            data["not_recorded_since_last"] = suppressed
        log.info("site reason changed", reason=cur.step.reason.code, **data)
        self.events.record("reason_changed", wall, cur.step.reason.code, **data)
