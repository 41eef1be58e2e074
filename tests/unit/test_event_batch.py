"""EventLog.record_many: several events in one commit, each to the listeners, ids in order."""

from __future__ import annotations

from pathlib import Path

from ems.events import Event, EventLog


def test_a_batch_is_recorded_in_order_and_heard_by_listeners(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    heard: list[Event] = []
    log.subscribe(heard.append)
    got = log.record_many([("a", 1.0, None, {"n": 1}), ("b", 2.0, "DEVICE_LOST", {"n": 2})])
    assert [e.kind for e in got] == ["a", "b"] and got[0].id < got[1].id
    assert heard == got
    log.close()
    again = EventLog(tmp_path / "events.db")
    assert [e.data["n"] for e in again.query()] == [2, 1]
    again.close()


def test_an_empty_batch_records_nothing() -> None:
    log = EventLog(None)
    assert log.record_many([]) == [] and log.count() == 0
    log.close()
