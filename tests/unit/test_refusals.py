"""Refused operator actions are audited, and a flood of them cannot flood the event log."""

from __future__ import annotations

from ems.events import EventLog
from ems.operator.refusals import KIND, RefusalAudit


def test_refusals_beyond_the_allowance_are_counted_and_reported_with_the_next_one() -> None:
    events = EventLog()
    now = [1000.0]
    audit = RefusalAudit(events, wall=lambda: 1.8e9 + now[0], monotonic=lambda: now[0], per_minute=3)
    recorded = [audit.record("/api/actions/set-param", 401, "missing or wrong operator token", None, "127.0.0.1")
                for _ in range(10)]
    assert recorded == [True] * 3 + [False] * 7
    assert events.count(KIND) == 3 and audit.suppressed == 7
    now[0] += 60.0  # a new minute
    assert audit.record("/api/actions/force-mode", 422, "refused: setpoint_w", "operator", "127.0.0.1")
    newest = events.query(limit=1, kind=KIND)[0]
    assert newest.data == {"action": "/api/actions/force-mode", "status": 422, "error": "refused: setpoint_w",
                           "by": "operator", "peer": "127.0.0.1", "suppressed_before": 7}
    assert audit.suppressed == 0
