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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ems.sqlite_db import open_db, open_reader

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


class EventLog:
    def __init__(self, path: Path | str | None = None) -> None:
        self._scratch = None if path is not None else tempfile.TemporaryDirectory(prefix="ems-events-")
        file = Path(self._scratch.name) / "events.db" if self._scratch is not None else Path(path or "")
        self._db, _ = open_db(file, durable=self._scratch is None)
        self._file = file
        self.path = None if self._scratch is not None else file  # None: not kept
        self._lock = threading.Lock()  # the writer's connection: record() from any thread
        self._db.executescript(_SCHEMA)
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
        """Append an event; durable when this returns."""
        if self.context:
            data = {**self.context, **data}
        body = json.dumps(data, default=str, separators=(",", ":"))
        with self._lock:
            cur = self._db.execute("INSERT INTO events (wall_s, kind, reason, data) VALUES (?, ?, ?, ?)",
                                   (wall_s, kind, reason, body))
            event_id = int(cur.lastrowid or 0)
        event = Event(event_id, wall_s, kind, reason, data)
        for listener in tuple(self._listeners):
            listener(event)
        return event

    def record_many(self, items: list[tuple[str, float, str | None, dict[str, Any]]]) -> list[Event]:
        """Append several events (kind, wall_s, reason, data) in one transaction: one commit, durable
        when this returns (a handover of a few hundred events must not take a commit each)."""
        if not items:
            return []
        rows = [(kind, wall_s, reason, json.dumps(data, default=str, separators=(",", ":")))
                for kind, wall_s, reason, data in items]
        events = []
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for (kind, wall_s, reason, data), (_, _, _, body) in zip(items, rows, strict=True):
                    cur = self._db.execute("INSERT INTO events (wall_s, kind, reason, data) VALUES (?, ?, ?, ?)",
                                           (wall_s, kind, reason, body))
                    events.append(Event(int(cur.lastrowid or 0), wall_s, kind, reason, data))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        for event in events:
            for listener in tuple(self._listeners):
                listener(event)
        return events

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
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(1, min(limit, 1000)))
        rows = self._reader().execute(sql, args).fetchall()
        return [Event(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            row = self._reader().execute("SELECT COUNT(*) FROM events").fetchone()
        else:
            row = self._reader().execute("SELECT COUNT(*) FROM events WHERE kind = ?", (kind,)).fetchone()
        return int(row[0])

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
            self._db.close()
        if self._scratch is not None:
            self._scratch.cleanup()
