"""The site's fleet outbox: every message to the fleet is kept here (SQLite, WAL) until
JetStream has acknowledged it, so a link that is down for hours loses nothing and the
replay goes out in the order it was made.

Each outbox has its own random `source` id, so the message ids (`SITE:SOURCE:SEQ`) of a site
that lost its disk never collide with the ones it sent before. Bounded: beyond `max_rows`
the oldest status messages go first (events and history are kept), and the count says so.
A message the disk refuses (full) is held in memory, in order, and written before the next;
held, it is bounded by `max_rows` too: statuses go first, then (a disk full for that long) the
oldest events, counted in `dropped_events` and logged once per outage.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ems.sqlite_db import DiskRefusals, open_db, write_failed, write_rows

log = structlog.get_logger("ems.fleet")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, ts REAL NOT NULL,
                                   body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# the columns used, read at open: a file of another shape is named at start, not raised by an append in the loop
_PROBE = "SELECT o.seq, o.kind, o.ts, o.body, m.key, m.value FROM outbox o, meta m LIMIT 0"


@dataclass(frozen=True, slots=True)
class Pending:
    seq: int
    kind: str
    ts: float
    body: dict[str, Any]


class Outbox:
    def __init__(self, path: Path | None, max_rows: int) -> None:
        self._db, self.path = open_db(path, schema=_SCHEMA, probe=_PROBE)
        # WAL with NORMAL: a commit survives the process dying (kill -9), not a power cut; it keeps an
        # fsync out of every control period (the observer appends from the loop)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.Lock()
        self.max_rows = max_rows
        self.dropped = 0
        self.dropped_events = 0  # events and history lost while the disk refused them past the bound
        self.unreadable = 0  # stored messages found changed on disk (not JSON objects), dropped
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'source'").fetchone()
            if row is None:
                row = (uuid.uuid4().hex[:12],)
                self._db.execute("INSERT INTO meta (key, value) VALUES ('source', ?)", row)
        self.source: str = row[0]
        self._rows = self._count()
        self._held: list[tuple[str, float, str]] = []  # refused by the disk, oldest first
        self._dropping = False  # events dropped in this outage (logged once)
        self._acked_seq = 0  # acknowledged by the stream; their delete the disk may refuse (full)
        self.disk = DiskRefusals("fleet outbox")

    def _count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def __len__(self) -> int:
        return self._rows + len(self._held)

    def append(self, kind: str, ts: float, body: dict[str, Any]) -> None:
        text = json.dumps(body, default=str, separators=(",", ":"))
        with self._lock:
            self._held.append((kind, ts, text))
            if not self.disk.failing:  # while it refuses, `head` (the sender's next batch) tries again
                self._write_held()
            else:
                self._bound_held()

    def _write_held(self) -> None:
        """Write what is held, oldest first, in one transaction (under the lock)."""
        refused = write_rows(self._db, "INSERT INTO outbox (kind, ts, body) VALUES (?, ?, ?)", self._held)
        if refused is not None:
            self.disk.refused(refused, held=len(self._held))
            self._bound_held()
            return
        self.disk.taken()
        self._dropping = False
        self._rows += len(self._held)
        self._held.clear()
        if self._rows > self.max_rows:
            cur = self._delete("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE kind = 'status' "
                               "ORDER BY seq LIMIT ?)", self._rows - self.max_rows)
            if cur is not None:
                self._rows -= cur.rowcount
                self.dropped += cur.rowcount

    def _bound_held(self) -> None:
        """Bounded like the table: the oldest statuses go first; memory is not the disk, so past
        the bound with no status left to drop, the oldest events go too."""
        over = len(self._held) - self.max_rows
        if over <= 0:
            return
        statuses = [i for i, h in enumerate(self._held) if h[0] == "status"]
        gone = set(statuses[:over])
        if gone:
            self._held = [h for i, h in enumerate(self._held) if i not in gone]
            self.dropped += len(gone)
        over = len(self._held) - self.max_rows
        if over <= 0:
            return
        if not self._dropping:
            log.warning("fleet outbox: the disk has refused writes past the bound; the oldest events are dropped",
                        held=len(self._held), bound=self.max_rows)
        self._dropping = True
        del self._held[:over]
        self.dropped += over
        self.dropped_events += over

    def _delete(self, sql: str, arg: int) -> sqlite3.Cursor | None:
        """A delete needs disk too (its WAL frames): refused, it is tried again at the next one."""
        try:
            return self._db.execute(sql, (arg,))
        except sqlite3.Error as exc:
            if not write_failed(exc):
                raise
            self.disk.refused(exc, held=len(self._held))
            return None

    def head(self, limit: int) -> list[Pending]:
        """The oldest messages not yet acknowledged, in order (those the disk still refuses wait)."""
        with self._lock:
            if self._held:
                self._write_held()
            rows = self._db.execute("SELECT seq, kind, ts, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (self._acked_seq, limit)).fetchall()
            out = []
            for seq, kind, ts, text in rows:
                try:
                    body = json.loads(text)
                    if not isinstance(body, dict):
                        raise ValueError(f"not a JSON object: {type(body).__name__}")
                except (ValueError, TypeError, RecursionError) as exc:
                    # changed on disk (a hand edit, a flipped byte): raised here, it ended the link's
                    # task and with it the controller, at every start; it can never be sent: dropped
                    self.unreadable += 1
                    log.error("fleet outbox: a stored message is unreadable, dropped", seq=seq, kind=str(kind)[:40],
                              error=f"{type(exc).__name__}: {exc}"[:200])
                    if (cur := self._delete("DELETE FROM outbox WHERE seq = ?", seq)) is not None:
                        self._rows -= cur.rowcount
                    continue
                out.append(Pending(seq, kind, ts, body))
        return out

    def acknowledged(self, up_to_seq: int) -> None:
        with self._lock:
            self._acked_seq = max(self._acked_seq, up_to_seq)  # not sent again, even if not yet deleted
            cur = self._delete("DELETE FROM outbox WHERE seq <= ?", self._acked_seq)
            if cur is not None:
                self._rows -= cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
