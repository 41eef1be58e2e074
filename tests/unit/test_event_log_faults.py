"""The event log and the state store against what goes wrong with their files: data that cannot
be written, a second writer on one file, pages found broken at start, a file locked by another."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from ems.events import EventLog
from ems.state_store import StateStore


def test_an_event_whose_data_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    with pytest.raises(TypeError):
        log.record("bad", 1.0, None, by_key={(1, 2): 3})  # a tuple key: JSON cannot write it
    good = log.record("good", 2.0, None)  # the next one is not held behind the bad one
    assert log.unwritten == 0 and [e.kind for e in log.query()] == ["good"] and good.id == 1
    log.close()


def test_two_writers_on_one_file_both_keep_recording(tmp_path: Path) -> None:
    a, b = EventLog(tmp_path / "events.db"), EventLog(tmp_path / "events.db")
    a.record("a", 1.0)
    b.record("b", 2.0)  # its own next id was taken by a: renumbered, not raised
    b.record("b", 3.0)
    a.record("a", 4.0)
    assert a.unwritten == 0 and b.unwritten == 0
    a.close()
    b.close()
    again = EventLog(tmp_path / "events.db")
    got = again.query()
    assert sorted(e.wall_s for e in got) == [1.0, 2.0, 3.0, 4.0] and len({e.id for e in got}) == 4
    again.close()


def _break_pages(path: Path, first_page: int) -> None:
    with open(path, "r+b") as f:
        f.seek(4096 * first_page)
        f.write(b"\xff" * 4096 * 3)


@pytest.mark.parametrize("first_page", [1, 10])
def test_a_log_with_a_good_header_and_broken_pages_is_set_aside(tmp_path: Path, first_page: int) -> None:
    path = tmp_path / "events.db"
    log = EventLog(path)
    log.record_many([("k", float(i), None, {"pad": "x" * 200}) for i in range(3000)])
    log.close()
    _break_pages(path, first_page)
    log = EventLog(path)  # neither a crash at start nor an error at each later record
    assert log.set_aside == tmp_path / "events.db.corrupt-1"
    log.record("after", 1.0)
    assert log.count() == 1 and log.unwritten == 0
    log.close()


def test_a_state_file_with_broken_pages_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    assert store.save({f"k{i}": "v" * 500 for i in range(400)}, 1.0)
    store.close()
    _break_pages(path, 2)
    store = StateStore(path)
    assert store.set_aside == tmp_path / "state.db.corrupt-1"
    assert store.save({"k": 1}, 2.0) and store.load() == {"k": 1}
    store.close()


def test_a_file_locked_by_another_is_not_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    assert store.save({"month_peak_w": 1.0e6}, 1.0)
    store.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError):
            StateStore(path)  # busy: an error to see, never the month's peak moved out of the way
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not any(n.startswith("state.db.corrupt") for n in os.listdir(tmp_path))
    assert StateStore(path).load() == {"month_peak_w": 1.0e6}


def test_ems_events_beside_a_controller_never_sets_its_log_aside(tmp_path: Path) -> None:
    """`ems events` reads the log a running controller writes: a file it finds broken is reported
    and left where it is (moving it would split the controller's log in two)."""
    import subprocess
    import sys

    path = tmp_path / "events.db"
    path.write_bytes(b"this is not a database" * 300)
    run = [sys.executable, "-m", "ems.cli", "events", "--state-dir", str(tmp_path)]
    done = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot be read" in done.stderr and "Traceback" not in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["events.db"]


@pytest.mark.parametrize("body", ["{\"why\": \"fir\x00", "[1, 2]", "7", "[" * 5000 + "]" * 5000])
def test_a_stored_event_whose_data_is_no_json_object_is_shown_unreadable(tmp_path: Path, body: str) -> None:
    """A row changed on disk (a hand edit, a flipped byte that quick_check does not see) raised
    from every query that reached it: the operator API's history, `ems events`, and a standby's
    start, which reads the last 1000 events' data for their origin."""
    path = tmp_path / "events.db"
    log = EventLog(path)
    log.record("before", 1.0, None, origin="a:1")
    log.record("bad", 2.0, None)
    log.record("after", 3.0, None, origin="a:3")
    log.close()
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE events SET data = ? WHERE kind = 'bad'", (body,))
    db.close()
    log = EventLog(path)
    got = log.query(limit=10)
    assert [e.kind for e in got] == ["after", "bad", "before"]
    assert [str(e.data.get("origin")) for e in got] == ["a:3", "None", "a:1"]  # what ems/ha/role.py reads
    assert "unreadable" in got[1].data
    log.close()
