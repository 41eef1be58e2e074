"""Opening the controller's small SQLite databases the one way they must be opened.

WAL (readers never block the writer, a crash never corrupts the file) and
`synchronous=FULL` (what a commit returned is on disk, even across a power cut). A file
that is not a database is set aside at open, never fatal. Without a
path, an in-memory database (tests, demos). Readers in other threads open their own
read-only connection to the file (`open_reader`), so a long query never holds the
writer's connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import structlog

from ems.model.errors import EmsError

log = structlog.get_logger("ems.state")


class CorruptDatabase(sqlite3.DatabaseError):
    """The file opens as a database but its pages do not check."""


class StateFileUnavailable(EmsError, sqlite3.OperationalError):
    """A state file that cannot be opened now (locked by another process, a directory that
    cannot be written): left as it is, and the message names it (`ems run` says it in one line)."""


def _connect(where: Path | None, durable: bool, schema: str = "", probe: str = "") -> sqlite3.Connection:
    db = sqlite3.connect(":memory:" if where is None else str(where), check_same_thread=False, isolation_level=None)
    try:
        if where is not None:
            db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a file that is not a database fails here
        if where is not None:  # a good header on broken pages: found now, not by a later write in the loop
            problems = [str(r[0]) for r in db.execute("PRAGMA quick_check(3)").fetchall()]
            if problems != ["ok"]:
                raise CorruptDatabase("; ".join(problems))
        # at open, not at the first write in the loop: a file of another shape (a table of that
        # name with other columns) or one that takes no write (a read-only file, /dev/null)
        db.executescript(schema)
        if probe:
            db.execute(probe).fetchall()
        # opening may wait out another's lock (above, sqlite3's 5 s); a write in the control loop
        # must not: a lock held by another process (a person's sqlite3 shell, a backup tool) is
        # refused at once, held and tried again next period like a full disk (`write_failed`)
        db.execute("PRAGMA busy_timeout=0")
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def set_aside(path: Path) -> Path:
    """Move a database that cannot be opened (and its WAL) out of the way, kept for a person to
    look at: `NAME.corrupt-N`. Returns where it went."""
    n = 1
    while (target := path.with_name(f"{path.name}.corrupt-{n}")).exists():
        n += 1
    path.rename(target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    return target


def open_db(path: Path | str | None, durable: bool = True, schema: str = "",
            probe: str = "") -> tuple[sqlite3.Connection, Path | None]:
    """`durable=False` (a scratch file nobody keeps) skips the fsync of each commit. A file that
    is not a database (corrupt, or something else) is set aside and a new one started: a
    controller must come up after a bad shutdown (`open_db_checked` says where it went)."""
    db, where, _ = open_db_checked(path, durable, schema, probe)
    return db, where


def open_db_checked(path: Path | str | None, durable: bool = True, schema: str = "",
                    probe: str = "") -> tuple[sqlite3.Connection, Path | None, Path | None]:
    """As `open_db`, and where a corrupt file was set aside (None: it opened as it was). `schema`
    is run and `probe` (a query naming the columns used) read at open: a file they fail on for
    want of disk or shape is a `StateFileUnavailable`, left as it is."""
    where = None if path is None else Path(path)
    if where is None:
        return _connect(where, durable, schema), where, None
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        try:
            return _connect(where, durable, schema, probe), where, None
        except sqlite3.OperationalError:
            raise  # locked, busy, cannot open, I/O: the file may be fine, never set aside for that
        except sqlite3.DatabaseError as exc:
            if not where.exists():
                raise
            moved = set_aside(where)
            log.error("database file could not be opened: set aside, a new one started", path=str(where),
                      set_aside=str(moved), error=str(exc))
            return _connect(where, durable, schema, probe), where, moved
    except (sqlite3.OperationalError, OSError) as exc:
        raise StateFileUnavailable(f"{where}: {exc}") from None


class DiskRefusals:
    """Whether a store's disk refuses its writes now, logged once per outage (a nearly full disk
    may take some writes and not others) and again when it takes them."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing = False
        self.failures = 0

    def refused(self, exc: sqlite3.Error, **about: object) -> None:
        self.failures += 1
        if not self.failing:
            log.error(f"{self.what}: the disk refuses writes; held in memory until it takes them",
                      error=str(exc), **about)
        self.failing = True

    def taken(self, **about: object) -> None:
        if self.failing:
            log.warning(f"{self.what}: the disk takes writes again", **about)
        self.failing = False


def write_rows(db: sqlite3.Connection, sql: str, rows: Sequence[Sequence[object]]) -> sqlite3.Error | None:
    """`rows` through `sql` in one transaction, durable when it returns None. The disk's refusal
    (full, I/O) is returned, not raised, for the caller to hold and try again; any other error
    (a bug) is raised."""
    try:
        db.execute("BEGIN")
        try:
            db.executemany(sql, rows)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back itself (disk full)
                db.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        if not write_failed(exc):
            raise
        return exc
    return None


def write_failed(exc: sqlite3.Error) -> bool:
    """A write that failed for want of disk (full, I/O error, read-only) or locked by another
    process: held and tried again, not a bug. Anything else (a malformed query) is raised."""
    text = str(exc).lower()
    if isinstance(exc, sqlite3.DatabaseError) and "malformed" in text:
        return True  # pages broken while running: held like a full disk, never raised into the loop
    return isinstance(exc, sqlite3.OperationalError) and any(
        s in text for s in ("full", "disk i/o", "readonly", "read-only", "unable to open", "locked", "busy"))


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection to a WAL database: it reads the last commit while the writer goes on."""
    db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, check_same_thread=False,
                         isolation_level=None, timeout=1.0)
    db.execute("PRAGMA query_only=ON")
    return db
