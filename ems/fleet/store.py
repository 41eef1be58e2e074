"""The fleet's history in PostgreSQL (psycopg 3): time-partitioned tables, one day a partition.

`fleet_status`, `fleet_events`, `fleet_history` are partitioned by range on `ts`; their key
(site, source, seq, ts) makes a message stored twice (a replay after the stream's duplicate
window, a redelivery after a crash between commit and ack) a no-op, and an event's origin
(site, origin, ts) makes an event sent by an old active and again by the new one it was
handed over to one row. `fleet_sites` holds
each site's latest status for the fleet page, only ever moved forward in time.
`fleet_rejected` keeps what could not be read (malformed messages), for an operator to see.
Where TimescaleDB is installed, the three tables could be hypertables instead (docs/fleet.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ems.model.errors import EmsError

TABLES = ("fleet_status", "fleet_events", "fleet_history")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_status (
    site text NOT NULL, source text NOT NULL, seq bigint NOT NULL, ts timestamptz NOT NULL,
    grid_w double precision, soc double precision, mode text, reason text, flex_w double precision,
    body jsonb NOT NULL, stored_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (site, source, seq, ts)) PARTITION BY RANGE (ts);
CREATE TABLE IF NOT EXISTS fleet_events (
    site text NOT NULL, source text NOT NULL, seq bigint NOT NULL, ts timestamptz NOT NULL,
    kind text NOT NULL, reason text, data jsonb NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (site, source, seq, ts)) PARTITION BY RANGE (ts);
CREATE TABLE IF NOT EXISTS fleet_history (
    site text NOT NULL, source text NOT NULL, seq bigint NOT NULL, ts timestamptz NOT NULL,
    grid_avg_w double precision, grid_max_w double precision, soc_avg double precision,
    battery_avg_w double precision, samples integer, reason text,
    stored_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (site, source, seq, ts)) PARTITION BY RANGE (ts);
ALTER TABLE fleet_events ADD COLUMN IF NOT EXISTS origin text;
CREATE UNIQUE INDEX IF NOT EXISTS fleet_events_origin ON fleet_events (site, origin, ts);
CREATE TABLE IF NOT EXISTS fleet_sites (
    site text PRIMARY KEY, ts timestamptz NOT NULL, grid_w double precision, soc double precision, mode text,
    reason text, alarms jsonb NOT NULL, flex_w double precision, body jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS fleet_rejected (
    id bigserial PRIMARY KEY, subject text NOT NULL, error text NOT NULL, raw bytea NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
"""


class FleetStoreError(EmsError):
    """PostgreSQL cannot be reached or refused a write: messages stay unacknowledged in the stream."""


class MalformedMessage(EmsError):
    """A fleet message that is not what a site sends (bad JSON, missing or mistyped fields)."""


@dataclass(frozen=True, slots=True)
class Row:
    kind: str
    site: str
    source: str
    seq: int
    ts: dt.datetime
    body: dict[str, Any]


def parse(data: bytes) -> Row:
    """A message as a site sends it (ems/fleet/link.py), or MalformedMessage saying why."""
    try:
        m = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None
    if not isinstance(m, dict):
        raise MalformedMessage("not a JSON object")
    try:
        kind, site, source, seq, ts, body = m["kind"], m["site"], m["source"], m["seq"], m["ts"], m["body"]
    except KeyError as exc:
        raise MalformedMessage(f"missing field {exc}") from None
    if kind not in ("status", "events", "history"):
        raise MalformedMessage(f"unknown kind {kind!r}")
    if not (isinstance(site, str) and site and isinstance(source, str) and isinstance(seq, int)
            and not isinstance(seq, bool) and isinstance(ts, int | float) and not isinstance(ts, bool)
            and isinstance(body, dict)):
        raise MalformedMessage("a field has the wrong type")
    try:
        when = dt.datetime.fromtimestamp(float(ts), dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise MalformedMessage(f"ts out of range: {exc}") from None
    return Row(kind, site, source, seq, when, body)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


_INSERT = {
    "status": "INSERT INTO fleet_status (site, source, seq, ts, grid_w, soc, mode, reason, flex_w, body) "
              "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
    "events": "INSERT INTO fleet_events (site, source, seq, ts, kind, reason, data, origin) "
              "VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
    "history": "INSERT INTO fleet_history (site, source, seq, ts, grid_avg_w, grid_max_w, soc_avg, battery_avg_w, "
               "samples, reason) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
}
_LATEST = ("INSERT INTO fleet_sites AS s (site, ts, grid_w, soc, mode, reason, alarms, flex_w, body) "
           "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (site) DO UPDATE SET ts=EXCLUDED.ts, "
           "grid_w=EXCLUDED.grid_w, soc=EXCLUDED.soc, mode=EXCLUDED.mode, reason=EXCLUDED.reason, "
           "alarms=EXCLUDED.alarms, flex_w=EXCLUDED.flex_w, body=EXCLUDED.body, updated_at=clock_timestamp() "
           "WHERE s.ts < EXCLUDED.ts")


def _params(r: Row) -> tuple[Any, ...]:
    b, key = r.body, (r.site, r.source, r.seq, r.ts)
    if r.kind == "status":
        return (*key, _num(b.get("grid_w")), _num(b.get("soc")), _text(b.get("mode")), _text(b.get("reason")),
                _num(b.get("flex_w")), Jsonb(b))
    if r.kind == "events":
        raw = b.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        return (*key, str(b.get("kind", "?")), _text(b.get("reason")), Jsonb(data), event_origin(b.get("id"), data))
    return (*key, _num(b.get("grid_avg_w")), _num(b.get("grid_max_w")), _num(b.get("soc_avg")),
            _num(b.get("battery_avg_w")), int(_num(b.get("samples")) or 0), _text(b.get("reason")))


def event_origin(event_id: Any, data: dict[str, Any]) -> str | None:
    """Who recorded an event first, as ems/ha names it (`holder:id`): an event a new active was
    handed over (data.origin) and the one its old active sent are one row, not two. None for
    a site without active/standby (no holder): its events are unique by their key already."""
    origin = data.get("origin")
    if isinstance(origin, str):
        return origin
    holder = data.get("ha_holder")
    if isinstance(holder, str) and isinstance(event_id, int) and not isinstance(event_id, bool):
        return f"{holder}:{event_id}"
    return None


def _latest(r: Row) -> tuple[Any, ...]:
    b = r.body
    alarms = b.get("alarms") if isinstance(b.get("alarms"), list) else []
    return (r.site, r.ts, _num(b.get("grid_w")), _num(b.get("soc")), _text(b.get("mode")), _text(b.get("reason")),
            Jsonb(alarms), _num(b.get("flex_w")), Jsonb(b))


class FleetStore:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self._partitions: set[tuple[str, dt.date]] = set()

    @classmethod
    async def connect(cls, dsn: str) -> FleetStore:
        try:
            conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=5, autocommit=False)
            store = cls(conn)
            async with conn.transaction():
                await conn.execute(_SCHEMA)
        except psycopg.Error as exc:
            raise FleetStoreError(f"PostgreSQL: {exc}") from exc
        return store

    async def _ensure_partition(self, table: str, day: dt.date) -> None:
        if (table, day) in self._partitions:
            return
        name = f"{table}_p{day:%Y%m%d}"
        nxt = day + dt.timedelta(days=1)
        try:
            async with self.conn.transaction():
                await self.conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
                    f"FOR VALUES FROM ('{day.isoformat()}') TO ('{nxt.isoformat()}')")
        except (psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation):
            pass  # another replica made it meanwhile
        self._partitions.add((table, day))

    async def store(self, rows: list[Row]) -> int:
        """Insert a batch in one transaction (one statement per kind, pipelined); rows already
        stored are skipped; each site's latest status moves `fleet_sites`. Returns the new rows."""
        try:
            for r in rows:
                await self._ensure_partition(f"fleet_{r.kind}", r.ts.date())
            new = 0
            latest: dict[str, Row] = {}
            async with self.conn.transaction(), self.conn.cursor() as cur:
                for kind in ("status", "events", "history"):
                    batch = [r for r in rows if r.kind == kind]
                    if batch:
                        await cur.executemany(_INSERT[kind], [_params(r) for r in batch])
                        new += max(cur.rowcount, 0)
                for r in rows:
                    if r.kind == "status" and (r.site not in latest or latest[r.site].ts < r.ts):
                        latest[r.site] = r
                if latest:
                    await cur.executemany(_LATEST, [_latest(r) for r in latest.values()])
            return new
        except psycopg.Error as exc:
            raise FleetStoreError(f"PostgreSQL: {exc}") from exc

    async def reject(self, subject: str, error: str, raw: bytes) -> None:
        try:
            async with self.conn.transaction():
                await self.conn.execute("INSERT INTO fleet_rejected (subject, error, raw) VALUES (%s, %s, %s)",
                                        (subject, error, raw[:65536]))
        except psycopg.Error as exc:
            raise FleetStoreError(f"PostgreSQL: {exc}") from exc

    async def close(self) -> None:
        with contextlib.suppress(psycopg.Error, OSError):  # a broken connection may fail to close
            await self.conn.close()
