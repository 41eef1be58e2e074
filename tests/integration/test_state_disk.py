"""The state directory's databases on a disk that fills up, and files found corrupt at start:
a real (tiny) tmpfs, filled by a file, then freed. Nothing is lost, nothing stops the loop."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ems.clock import ScaledClock
from ems.events import EventLog
from ems.fleet.outbox import Outbox
from ems.state_store import StateStore
from sim_devices import disk
from tests.conftest import running_controller, running_site, shaving_site, wait_for

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def small_disk(where: Path, size: str = "2m") -> Iterator[Path]:
    try:
        with disk.small_disk(where, size) as mounted:
            yield mounted
    except disk.NoSmallDisk as exc:
        pytest.skip(str(exc))


def test_events_state_and_outbox_held_while_the_disk_is_full_then_written(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as root:
        log = EventLog(root / "events.db")
        store = StateStore(root / "state.db")
        outbox = Outbox(root / "outbox.db", max_rows=10_000)
        first = [log.record("before", float(i), None, i=i) for i in range(5)]
        assert store.save({"k": 1}, 0.0)
        outbox.append("events", 0.0, {"n": 0})
        filler = disk.fill(root)

        during = [log.record("during", float(i), None, i=i, pad="x" * 2000) for i in range(200)]
        assert log.unwritten > 0  # the disk refused them: held, not raised into the caller
        assert log.count("during") == 200 and log.query(limit=1)[0].id == during[-1].id  # seen by queries
        assert [e.id for e in during] == list(range(first[-1].id + 1, first[-1].id + 201))
        saved = [store.save({"k": i, "pad": "y" * 5000}, 1.0) for i in range(50)]
        assert not all(saved) and store.disk.failing
        for i in range(200):
            outbox.append("events", 1.0, {"n": i + 1, "pad": "z" * 2000})
        assert len(outbox) == 201

        filler.unlink()  # space again
        assert log.flush() == 0
        assert store.save({"k": 99}, 2.0) and not store.disk.failing
        assert [p.body["n"] for p in outbox.head(1000)] == list(range(201))  # in order, none lost
        log.close()
        store.close()
        outbox.close()

        again = EventLog(root / "events.db")  # what is on disk: every event, in order, once
        stored = list(reversed(again.query(limit=1000)))
        assert [e.id for e in stored] == [e.id for e in first + during]
        assert [e.data["i"] for e in stored if e.kind == "during"] == list(range(200))
        assert StateStore(root / "state.db").load()["k"] == 99
        again.close()


def test_a_corrupt_database_is_set_aside_and_a_new_one_begun(tmp_path: Path) -> None:
    (tmp_path / "events.db").write_bytes(b"this is not a database" * 100)
    (tmp_path / "state.db").write_bytes(os.urandom(8192))
    log = EventLog(tmp_path / "events.db")
    store = StateStore(tmp_path / "state.db")
    assert log.set_aside == tmp_path / "events.db.corrupt-1" and log.set_aside.exists()
    assert store.set_aside == tmp_path / "state.db.corrupt-1"
    assert log.record("x", 0.0).id == 1 and store.load() == {}
    log.close()
    store.close()


async def test_a_controller_starts_on_a_corrupt_state_file_and_runs_through_a_full_disk(
        broker, make_site, tmp_path: Path) -> None:
    with small_disk(tmp_path / "state", size="4m") as state:
        cfg = shaving_site(make_site, broker.url, state={"dir": str(state), "persist_every_s": 0.2})
        (state / "state.db").write_bytes(b"\x00garbage" * 512)
        clock = ScaledClock(1.0)
        async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
            await wait_for(lambda: ctl.events.count("state_file_set_aside") == 1)  # recorded as it starts
            set_aside = ctl.events.query(kind="state_file_set_aside")
            assert set_aside and set_aside[0].data["file"] == "state.db"
            await wait_for(lambda: site.plant.battery_power_w > 300_000)  # shaving
            filler = disk.fill(state)
            periods = ctl.stats.periods
            for i in range(30):
                ctl.events.record("probe", clock.wall(), None, i=i, pad="p" * 4000)
            await wait_for(lambda: ctl.stats.periods > periods + 20)  # the loop goes on
            assert ctl.events.unwritten > 0 and ctl.persisted.store.disk.failing
            assert site.plant.battery_power_w > 300_000  # still shaving
            filler.unlink()
            await wait_for(lambda: ctl.events.unwritten == 0 and not ctl.persisted.store.disk.failing)
            assert ctl.events.count("probe") == 30
        again = EventLog(state / "events.db")
        assert again.count("probe") == 30 and again.count("controller_stopped") == 1
        again.close()


def test_the_outbox_takes_acknowledgements_while_the_disk_is_full(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as root:
        outbox = Outbox(root / "outbox.db", max_rows=10_000)
        for i in range(100):
            outbox.append("events", 0.0, {"n": i})
        assert len(outbox) == 100 and not outbox.disk.failing
        filler = disk.fill(root)
        outbox.acknowledged(outbox.head(50)[-1].seq)  # the stream has them: never raised into the link
        assert [p.body["n"] for p in outbox.head(3)] == [50, 51, 52]  # and not sent again
        filler.unlink()
        outbox.acknowledged(outbox.head(10)[-1].seq)
        assert len(outbox) == 40 and [p.body["n"] for p in outbox.head(1)] == [60]
        outbox.close()


def test_held_outbox_messages_stay_bounded_while_the_disk_stays_full(tmp_path: Path) -> None:
    """Memory is bounded like the table: statuses go first, then the oldest events, counted."""
    with small_disk(tmp_path / "disk") as root:
        outbox = Outbox(root / "outbox.db", max_rows=50)
        filler = disk.fill(root)
        for i in range(40):
            outbox.append("status", float(i), {"i": i, "pad": "s" * 2000})
        for i in range(80):
            outbox.append("events", float(i), {"n": i, "pad": "e" * 2000})
        assert outbox.disk.failing
        assert len(outbox) == 50 and outbox.dropped == 70 and outbox.dropped_events == 30
        filler.unlink()
        assert [p.body["n"] for p in outbox.head(100)] == list(range(30, 80))  # the newest, in order
        outbox.close()


def test_a_query_while_held_events_are_written_sees_each_once(tmp_path: Path) -> None:
    """The operator server's thread pages the log while the loop's thread writes what the disk
    held: the copy of what is held and the disk's rows must not both hold an event."""
    import sys
    import threading

    with small_disk(tmp_path / "disk") as root:
        log = EventLog(root / "events.db")
        stop, seen_twice, queries = threading.Event(), [], [0]

        def reader() -> None:
            while not stop.is_set():
                ids = [e.id for e in log.query(limit=1000)]
                queries[0] += 1
                if len(ids) != len(set(ids)) or log.count() > len(log.query(limit=1000)):
                    seen_twice.append(ids)

        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # the threads interleave often: the window is a few bytecodes wide
        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for _ in range(30):
                filler = disk.fill(root)
                for _ in range(20):
                    log.record("k", 1.0, None, pad="x" * 300)
                filler.unlink()
                log.flush()
        finally:
            stop.set()
            thread.join()
            sys.setswitchinterval(switch)
        assert queries[0] > 0 and not seen_twice and log.count() == 600
        log.close()


def test_operator_decisions_on_a_full_disk_hold_and_the_override_file_catches_up(tmp_path: Path) -> None:
    """A forced mode that ends while the state disk is full (the override file cannot be
    rewritten) used to raise OSError out of the period: the controller stopped."""
    import json

    from ems.clock import ManualClock
    from ems.operator.controls import OperatorControls
    from tests.snapshots import snapshot, unit
    from tests.unit.test_operator_controls import EPOCH, _cfg

    with small_disk(tmp_path / "disk") as root:
        clock = ManualClock(epoch_wall=EPOCH)
        controls = OperatorControls(_cfg(), EventLog(), clock, root / "overrides.json")
        filler = disk.fill(root)
        controls.force_mode("zero", 0.0, 60.0, "dave", "firmware")  # taken, in force, file behind
        assert controls.force is not None and controls.unsaved
        clock.advance(61.0)
        controls.apply(snapshot(now_s=clock.now_s, units=(unit("bess-1"), unit("bess-2"))))  # its timeout
        assert controls.force is None and not controls.view.force_active
        filler.unlink()
        controls.apply(snapshot(now_s=clock.now_s, units=(unit("bess-1"), unit("bess-2"))))
        assert not controls.unsaved
        assert json.loads((root / "overrides.json").read_text())["force"] is None


_HOLD_WRITE_LOCK = """
import sqlite3, sys
for path in sys.argv[1:]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")  # a writer's lock, as a person's sqlite3 shell or a backup tool takes
    globals().setdefault("held", []).append(db)
print("held", flush=True)
sys.stdin.readline()
"""


async def test_a_state_file_locked_by_another_process_neither_stalls_nor_ends_the_loop(
        broker, make_site, tmp_path: Path) -> None:
    """Another process holding the write lock on state.db and events.db used to stall each save
    and event for sqlite3's 5 s busy timeout, then raise 'database is locked' out of the period:
    the controller stopped. Now the write is refused at once, held and written once it can be."""
    import asyncio
    import sys

    state = tmp_path / "state"
    cfg = shaving_site(make_site, broker.url, state={"dir": str(state), "persist_every_s": 0.2})
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await wait_for(lambda: site.plant.battery_power_w > 300_000)  # shaving, state saved
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _HOLD_WRITE_LOCK, str(state / "state.db"), str(state / "events.db"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        try:
            assert holder.stdout is not None and await holder.stdout.readline() == b"held\n"
            periods = ctl.stats.periods
            ctl.events.record("probe", clock.wall(), None)
            await wait_for(lambda: ctl.stats.periods > periods + 20, timeout_s=10)  # the loop goes on, on time
            assert ctl.persisted.store.disk.failing and ctl.events.unwritten > 0
            assert ctl.background_failure is None and site.plant.battery_power_w > 300_000  # still shaving
        finally:
            assert holder.stdin is not None
            holder.stdin.write(b"\n")
            await holder.stdin.drain()
            await asyncio.wait_for(holder.wait(), 10)
        await wait_for(lambda: ctl.events.unwritten == 0 and not ctl.persisted.store.disk.failing)
        assert ctl.events.count("probe") == 1
    assert StateStore(state / "state.db").load()["periods"] > periods
