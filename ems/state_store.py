"""The controller's state that must survive a restart: small JSON values in SQLite (WAL).

Written every few seconds and at shutdown (and at once when the month's peak moves), read
once at start-up. Without a state directory it is kept in memory only.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from ems.sqlite_db import open_db

_SCHEMA = "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL, wall_s REAL NOT NULL)"


class StateStore:
    def __init__(self, path: Path | str | None) -> None:
        self._db, self.path = open_db(path)
        self._lock = threading.Lock()
        self._db.execute(_SCHEMA)

    def save(self, values: dict[str, Any], wall_s: float) -> None:
        """Write several keys in one transaction: durable when this returns."""
        rows = [(k, json.dumps(v, separators=(",", ":")), wall_s) for k, v in values.items()]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO state (key, value, wall_s) VALUES (?, ?, ?) "
                                 "ON CONFLICT(key) DO UPDATE SET value=excluded.value, wall_s=excluded.wall_s", rows)
            self._db.execute("COMMIT")

    def load(self) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM state").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()
