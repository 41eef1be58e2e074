"""Opening the controller's small SQLite databases the one way they must be opened.

WAL (readers never block the writer, a crash never corrupts the file) and
`synchronous=FULL` (what a commit returned is on disk, even across a power cut). Without a
path, an in-memory database (tests, demos).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_db(path: Path | str | None) -> tuple[sqlite3.Connection, Path | None]:
    where = None if path is None else Path(path)
    if where is not None:
        where.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(":memory:" if where is None else str(where), check_same_thread=False, isolation_level=None)
    if where is not None:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db, where
