"""The event log: mode changes, failovers, faults, operator actions. Persisted, queryable.

Events are rare and must survive a crash or power cut once recorded, so each is written
to SQLite in WAL mode with `synchronous=FULL` before `record` returns. Without a path
the log lives in memory (tests, demos).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ems.sqlite_db import open_db

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
        self._db, self.path = open_db(path)
        self._lock = threading.Lock()
        self._db.executescript(_SCHEMA)
        self._listeners: list[Callable[[Event], None]] = []

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call `listener` with each event once it is durable (from the recording thread;
        it must be quick and must not raise). Returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def record(self, kind: str, wall_s: float, reason: str | None = None, **data: Any) -> Event:
        """Append an event; durable when this returns."""
        body = json.dumps(data, default=str, separators=(",", ":"))
        with self._lock:
            cur = self._db.execute("INSERT INTO events (wall_s, kind, reason, data) VALUES (?, ?, ?, ?)",
                                   (wall_s, kind, reason, body))
            event_id = int(cur.lastrowid or 0)
        event = Event(event_id, wall_s, kind, reason, data)
        for listener in tuple(self._listeners):
            listener(event)
        return event

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
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [Event(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                row = self._db.execute("SELECT COUNT(*) FROM events").fetchone()
            else:
                row = self._db.execute("SELECT COUNT(*) FROM events WHERE kind = ?", (kind,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
