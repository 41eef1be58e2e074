"""The event log: mode changes, failovers, faults, operator actions. Persisted, queryable.

Events are rare and must survive a crash or power cut once recorded, so each is written
to SQLite in WAL mode with `synchronous=FULL` before `record` returns. Queries run on a
read-only connection of the calling thread's own: a reader (the operator server's
thread paging a thousand events) never holds the lock the recording thread needs, and
WAL lets it read while the writer commits. Without a path the log lives in a scratch
file removed on close (tests, demos): an in-memory database could not be shared by the
readers' connections, and one connection shared under a lock would let a query delay a
recording control period.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from ems.sqlite_db import DiskRefusals, open_db_checked, open_reader, write_rows

log = structlog.get_logger("ems.events")

MAX_UNWRITTEN = 100_000  # events held in memory while the disk refuses them (~30 MB at most)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    wall_s REAL NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, id);
"""


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    wall_s: float
    kind: str  # e.g. "failover", "grid_return", "device_lost", "operator_action"
    reason: str | None
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "wall_s": self.wall_s, "kind": self.kind, "reason": self.reason, "data": self.data}


@dataclass(frozen=True, slots=True)
class _Held:
    event: Event
    body: str  # the data as written


class EventLog:
    def __init__(self, path: Path | str | None = None, *, read_only: bool = False) -> None:
        """`read_only`: a reader beside the controller that writes the file (`ems events`): it
        never creates, changes or sets aside the controller's log."""
        self._scratch = None if path is not None else tempfile.TemporaryDirectory(prefix="ems-events-")
        file = Path(self._scratch.name) / "events.db" if self._scratch is not None else Path(path or "")
        moved = None
        if read_only and self._scratch is None:
            self._db = open_reader(file)
        else:
            self._db, _, moved = open_db_checked(file, durable=self._scratch is None, schema=_SCHEMA,
                                                 probe="SELECT id, wall_s, kind, reason, data FROM events LIMIT 0")
        self._file = file
        self.path = None if self._scratch is not None else file  # None: not kept
        self._lock = threading.Lock()  # the writer's connection: record() from any thread
        self.set_aside = moved  # a corrupt log found at start, moved out of the way (recorded below)
        # ids are given here, not by SQLite, so an event the disk refused keeps its place: it is held
        # in memory (in order, and seen by queries) and written before the next one that can be
        self._next_id = int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]) + 1
        self._unwritten: list[_Held] = []
        self.unwritten_dropped = 0
        self.disk = DiskRefusals("event log")
        self._readers = threading.local()
        self._open_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._listeners: list[Callable[[Event], None]] = []
        # added to the data of each event recorded (not of a batch handed over): the active's lease
        # epoch while it writes (ems/ha), so every write it records carries the epoch it was made in
        self.context: dict[str, Any] = {}

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call `listener` with each event once it is durable (from the recording thread;
        it must be quick and must not raise). Returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def record(self, kind: str, wall_s: float, reason: str | None = None, **data: Any) -> Event:
        """Append an event; durable when this returns, unless the disk refuses it (full): then it
        is held in memory and written, in order, as soon as the disk takes writes again."""
        if self.context:
            data = {**self.context, **data}
        return self.record_many([(kind, wall_s, reason, data)])[0]

    def record_many(self, items: list[tuple[str, float, str | None, dict[str, Any]]]) -> list[Event]:
        """Append several events (kind, wall_s, reason, data) in one transaction: one commit, durable
        when this returns (a handover of a few hundred events must not take a commit each)."""
        if not items:
            return []
        # serialised before it is held: data that cannot be written raises here, to its caller only,
        # never staying at the head of what is held to fail every later record
        bodies = [json.dumps(data, default=str, separators=(",", ":")) for _, _, _, data in items]
        with self._lock:
            for (kind, wall_s, reason, data), body in zip(items, bodies, strict=True):
                self._unwritten.append(_Held(Event(self._next_id, wall_s, kind, reason, data), body))
                self._next_id += 1
            # while the disk refuses writes, held only: `flush` (each period) tries the backlog again,
            # not every record on the control loop's path
            held = self._unwritten if self.disk.failing else self._write_unwritten()
            events = [h.event for h in held[-len(items):]]
        for event in events:
            for listener in tuple(self._listeners):
                listener(event)
        return events

    def _write_unwritten(self) -> list[_Held]:
        """Write what is held, oldest first, in one transaction (under the lock); returns what it
        wrote or holds still (renumbered where another writer took those ids)."""
        held = self._unwritten
        try:
            refused = self._insert(held)
        except sqlite3.IntegrityError as exc:
            # another writer on this file took these ids (two logs opened on one file): the held
            # events move past what is on disk now, rather than failing every record from here on
            self._next_id = int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]) + 1
            log.error("event log: ids taken by another writer, held events renumbered", error=str(exc),
                      first_id=self._next_id)
            held = []
            for h in self._unwritten:
                held.append(_Held(replace(h.event, id=self._next_id), h.body))
                self._next_id += 1
            self._unwritten = held  # one assignment: a reader's copy is the old list or the new
            refused = self._insert(held)
        if refused is not None:
            self.disk.refused(refused, path=str(self._file), held=len(held))
            if len(held) > MAX_UNWRITTEN:  # bounded: the oldest go, counted
                gone = len(held) - MAX_UNWRITTEN
                del held[:gone]
                self.unwritten_dropped += gone
            return held
        self.disk.taken(path=str(self._file), written=len(held))
        self._unwritten = []
        return held

    def _insert(self, held: list[_Held]) -> sqlite3.Error | None:
        rows = [(h.event.id, h.event.wall_s, h.event.kind, h.event.reason, h.body) for h in held]
        return write_rows(self._db, "INSERT INTO events (id, wall_s, kind, reason, data) VALUES (?, ?, ?, ?, ?)",
                          rows)

    def flush(self) -> int:
        """Try again to write what the disk refused (each period); how many are still held."""
        with self._lock:
            if self._unwritten:
                self._write_unwritten()
            return len(self._unwritten)

    @property
    def unwritten(self) -> int:
        return len(self._unwritten)

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._readers, "db", None)
        if db is None:
            db = open_reader(self._file)
            self._readers.db = db
            with self._readers_lock:
                self._open_readers.append(db)
        return db

    def query(self, limit: int = 50, before_id: int | None = None, kind: str | None = None) -> list[Event]:
        """Newest first; page with `before_id` (the smallest id of the previous page)."""
        sql = "SELECT id, wall_s, kind, reason, data FROM events WHERE 1=1"
        args: list[int | str] = []
        if before_id is not None:
            sql += " AND id < ?"
            args.append(before_id)
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        n = max(1, min(limit, 1000))
        # what is held is newer than anything on disk; a copy taken first, then the disk read only
        # below its oldest id: an event written between the two is counted once, not twice
        snapshot = self._held()
        if snapshot:
            sql += " AND id < ?"
            args.append(snapshot[0].id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(n)
        held = [e for e in reversed(snapshot) if (before_id is None or e.id < before_id)
                and (kind is None or e.kind == kind)][:n]
        rows = self._reader().execute(sql, args).fetchall()
        return held + [Event(r[0], r[1], r[2], r[3], _stored_data(r[4])) for r in rows][:n - len(held)]

    def count(self, kind: str | None = None) -> int:
        snapshot = self._held()
        held = sum(1 for e in snapshot if kind is None or e.kind == kind)
        sql, args = "SELECT COUNT(*) FROM events WHERE 1=1", list[int | str]()
        if snapshot:  # as in query: the disk below the oldest held, so none is counted twice
            sql += " AND id < ?"
            args.append(snapshot[0].id)
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        row = self._reader().execute(sql, args).fetchone()
        return int(row[0]) + held

    def _held(self) -> list[Event]:
        # a copy without the writer's lock (the list is replaced, never changed in place, once
        # written; a list copy is atomic under the GIL): a reader never waits for a commit
        return [h.event for h in list(self._unwritten)]

    def close_reader(self) -> None:
        """Close the calling thread's read connection (a reader thread that ends)."""
        db: sqlite3.Connection | None = getattr(self._readers, "db", None)
        if db is None:
            return
        self._readers.db = None
        with self._readers_lock:
            self._open_readers.remove(db)
        db.close()

    def close(self) -> None:
        with self._readers_lock:
            for db in self._open_readers:
                db.close()
            self._open_readers.clear()
        with self._lock:
            if self._unwritten:  # a last try; what the disk still refuses is lost with the process
                self._write_unwritten()
                if self._unwritten:
                    log.error("event log: closed with events the disk refused", lost=len(self._unwritten),
                              first_id=self._unwritten[0].event.id)
            self._db.close()
        if self._scratch is not None:
            self._scratch.cleanup()


def _stored_data(body: str) -> dict[str, Any]:
    """An event's data as read back. A row that is not a JSON object (a hand edit, a byte flipped
    on disk: SQLite checks its pages, not the values) is shown as unreadable, never raised into a
    reader (a standby's start reads the log, the operator API pages it)."""
    try:
        value = json.loads(body)
    except (ValueError, TypeError, RecursionError) as exc:
        return {"unreadable": f"{type(exc).__name__}: {exc}"[:200]}
    return value if isinstance(value, dict) else {"unreadable": f"not a JSON object: {type(value).__name__}"}
