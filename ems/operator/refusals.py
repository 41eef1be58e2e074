"""Refused operator actions in the event log, without letting anyone flood it.

Every accepted action is an `operator_action` event; a refused one (no or a wrong token,
a malformed body, a value out of bounds) is an `operator_refused` event, so the audit
trail shows attempts as well as changes. Events are written with an fsync each, and a
refusal needs no token, so at most `per_minute` are recorded a minute; the others are
counted, and the count rides on the next refusal that is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ems.events import EventLog

KIND = "operator_refused"


class RefusalAudit:
    def __init__(self, events: EventLog, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, per_minute: int = 20) -> None:
        self.events = events
        self.wall = wall
        self.monotonic = monotonic
        self.per_minute = per_minute
        self._window_start_s = -float("inf")
        self._in_window = 0
        self.suppressed = 0  # not recorded since the last refusal that was

    def record(self, action: str, status: int, error: str, by: str | None, peer: str | None) -> bool:
        """Record one refusal; False when the minute's allowance is spent (counted only)."""
        now = self.monotonic()
        if now - self._window_start_s >= 60.0:
            self._window_start_s, self._in_window = now, 0
        if self._in_window >= self.per_minute:
            self.suppressed += 1
            return False
        self._in_window += 1
        self.events.record(KIND, self.wall(), None, action=action, status=status, error=error, by=by, peer=peer,
                           suppressed_before=self.suppressed)
        self.suppressed = 0
        return True
