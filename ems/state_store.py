"""The controller's state that must survive a restart: small JSON values in SQLite (WAL).

Written every few seconds and at shutdown (and at once when the month's peak moves), read
once at start-up. Without a state directory it is kept in memory only.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import structlog

from ems.sqlite_db import DiskRefusals, open_db_checked, write_rows

log = structlog.get_logger("ems.state")

_SCHEMA = "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL, wall_s REAL NOT NULL);"
_PROBE = "SELECT key, value, wall_s FROM state LIMIT 0"


class StateStore:
    def __init__(self, path: Path | str | None) -> None:
        # set_aside: a corrupt file moved away
        self._db, self.path, self.set_aside = open_db_checked(path, schema=_SCHEMA, probe=_PROBE)
        self._lock = threading.Lock()
        self.disk = DiskRefusals("state")

    def save(self, values: dict[str, Any], wall_s: float) -> bool:
        """Write several keys in one transaction: durable when this returns True. False: the disk
        refused it (full); the caller's next save writes the values of then (logged once)."""
        rows = [(k, json.dumps(v, separators=(",", ":")), wall_s) for k, v in values.items()]
        with self._lock:
            refused = write_rows(self._db, "INSERT INTO state (key, value, wall_s) VALUES (?, ?, ?) ON CONFLICT(key) "
                                           "DO UPDATE SET value=excluded.value, wall_s=excluded.wall_s", rows)
        if refused is not None:
            self.disk.refused(refused, path=str(self.path))
            return False
        self.disk.taken(path=str(self.path))
        return True

    def load(self) -> dict[str, Any]:
        """The values by key; a value that is not JSON (or nested past the parser's depth: a
        crafted row) is left out and logged, naming its key: its owner starts without it."""
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM state").fetchall()
        out: dict[str, Any] = {}
        for k, v in rows:
            try:
                out[k] = json.loads(v)
            except (ValueError, TypeError, RecursionError) as exc:
                log.warning("state value unreadable, not restored", key=k, error=f"{type(exc).__name__}: {exc}"[:200])
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
