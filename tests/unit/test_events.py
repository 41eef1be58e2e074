"""The event log persists across reopen and pages newest first."""

from __future__ import annotations

from ems.events import EventLog


def test_events_survive_reopen(tmp_path) -> None:
    path = tmp_path / "state" / "events.db"
    log = EventLog(path)
    log.record("failover", 100.0, "GRID_LOSS", latency_ms=3.2)
    log.record("operator_action", 101.0, None, user="ops", action="maintenance")
    log.close()
    again = EventLog(path)
    events = again.query()
    assert [e.kind for e in events] == ["operator_action", "failover"]
    assert events[1].data == {"latency_ms": 3.2} and events[1].reason == "GRID_LOSS"
    assert again.count("failover") == 1


def test_paging_and_filter() -> None:
    log = EventLog()
    for i in range(25):
        log.record("fault" if i % 2 else "mode", float(i), n=i)
    first = log.query(limit=10)
    second = log.query(limit=10, before_id=first[-1].id)
    assert [e.data["n"] for e in first] == list(range(24, 14, -1))
    assert [e.data["n"] for e in second] == list(range(14, 4, -1))
    assert all(e.kind == "fault" for e in log.query(kind="fault"))
    assert log.count() == 25


def test_listeners_see_each_durable_event_until_unsubscribed(tmp_path) -> None:
    log = EventLog(tmp_path / "events.db")
    seen = []
    unsubscribe = log.subscribe(seen.append)
    first = log.record("operator_action", 1.0, None, by="ops")
    unsubscribe()
    log.record("operator_action", 2.0, None, by="ops")
    assert seen == [first]
    # what the listener got is already on disk
    assert EventLog(tmp_path / "events.db").query(limit=5)[-1].id == first.id


def test_ems_events_cli_shows_the_persisted_log(tmp_path) -> None:
    import json
    import subprocess
    import sys

    log = EventLog(tmp_path / "events.db")
    log.record("failover", 1_767_225_600.0, "FAILOVER_SHED", last_ack_ms=3.1, timeline=[{"device": "bess-1.pcs"}])
    log.record("device_lost", 1_767_225_601.0, "DeviceTimeout", device="bess-2.bms")
    log.close()
    run = [sys.executable, "-m", "ems.cli", "events", "--state-dir", str(tmp_path)]
    text = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert "device_lost" in lines[0] and "failover" in lines[1] and "2026-01-01 00:00:00Z" in lines[1]
    js = subprocess.run([*run, "--json", "--kind", "failover"], capture_output=True, text=True, timeout=60)
    assert [json.loads(x)["data"]["last_ack_ms"] for x in js.stdout.splitlines()] == [3.1]
    missing = subprocess.run([sys.executable, "-m", "ems.cli", "events", "--state-dir", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no event log" in missing.stderr and "Traceback" not in missing.stderr


def test_queries_never_wait_for_the_recording_lock(tmp_path) -> None:
    """A reader pages on its own connection: a record in progress (its fsync) does not hold it
    up, and what it reads is the last committed state, in memory as on disk."""
    import threading

    for log in (EventLog(tmp_path / "events.db"), EventLog()):
        for i in range(30):
            log.record("fault", float(i), n=i)
        pages: list[int] = []
        with log._lock:  # the recording thread is mid-commit
            reader = threading.Thread(target=lambda log=log, pages=pages: pages.append(len(log.query(limit=20))))
            reader.start()
            reader.join(timeout=10)
            assert not reader.is_alive() and pages == [20]
        assert log.count() == 30
        log.close()
