"""Opening the controller's small SQLite databases the one way they must be opened.

WAL (readers never block the writer, a crash never corrupts the file) and
`synchronous=FULL` (what a commit returned is on disk, even across a power cut). Without a
path, an in-memory database (tests, demos). Readers in other threads open their own
read-only connection to the file (`open_reader`), so a long query never holds the
writer's connection.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote


def open_db(path: Path | str | None, durable: bool = True) -> tuple[sqlite3.Connection, Path | None]:
    """`durable=False` (a scratch file nobody keeps) skips the fsync of each commit."""
    where = None if path is None else Path(path)
    if where is not None:
        where.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(":memory:" if where is None else str(where), check_same_thread=False, isolation_level=None)
    if where is not None:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
    return db, where


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection to a WAL database: it reads the last commit while the writer goes on."""
    db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, check_same_thread=False,
                         isolation_level=None, timeout=1.0)
    db.execute("PRAGMA query_only=ON")
    return db
