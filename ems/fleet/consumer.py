"""One replica of `ems fleet`'s consumer group: JetStream -> PostgreSQL, at least once.

All replicas bind the same durable pull consumer, so JetStream shares the messages among
them (add replicas to go faster). Each fetch of up to `batch` messages is stored in one
transaction, then acknowledged: a replica that dies between the two gets its batch
redelivered (to itself or another), and the table keys make the second insert a no-op.
A message that cannot be read is kept in `fleet_rejected` and terminated (never
redelivered); PostgreSQL down leaves the batch unacknowledged and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from ems import nats_conn
from ems.fleet.settings import FleetServiceConfig
from ems.fleet.store import FleetStore, FleetStoreError, MalformedMessage, Row, parse
from ems.fleet.subjects import ensure_stream
from ems.model.cancel_guard import checkpoint
from ems.nats_conn import connect

log = structlog.get_logger("ems.fleet")


@dataclass
class ConsumerStats:
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    store_failures: int = 0
    started_at_s: float = field(default_factory=time.monotonic)


class FleetConsumer:
    def __init__(self, cfg: FleetServiceConfig, store: FleetStore) -> None:
        self.cfg, self.store = cfg, store
        self.stats = ConsumerStats()
        self._nc: Client | None = None

    async def connect(self) -> None:
        self._nc = await connect(self.cfg.nats_url, "ems-fleet", 5.0, 0.5)
        js = self._nc.jetstream(timeout=5.0)
        await ensure_stream(js, self.cfg.stream, self.cfg.subject_prefix, self.cfg.retention_days, 5.0)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        if self._nc is None:
            await self.connect()
        assert self._nc is not None
        js = self._nc.jetstream(timeout=5.0)
        sub = await js.pull_subscribe(
            f"{self.cfg.subject_prefix}.>", durable=self.cfg.consumer, stream=self.cfg.stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=30.0,
                                  max_ack_pending=max(10_000, 4 * self.cfg.batch)))
        while stop is None or not stop.is_set():
            checkpoint()  # a cancel nats-py's fetch swallowed: without a stop event nothing else ends this
            try:
                msgs = await sub.fetch(self.cfg.batch, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except nats.errors.Error as exc:
                log.warning("fleet: fetch failed, retrying", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            await self.handle(msgs)

    async def handle(self, msgs: list[Msg]) -> None:
        rows: list[Row] = []
        good: list[Msg] = []
        for m in msgs:
            try:
                rows.append(parse(m.data))
                good.append(m)
            except MalformedMessage as exc:
                await self._reject(m, str(exc))
        if rows:
            while True:
                checkpoint()  # a stop a library swallowed (ems/model/cancel_guard)
                try:
                    new = await self.store.store(rows)
                    break
                except FleetStoreError as exc:
                    self.stats.store_failures += 1
                    log.warning("fleet: PostgreSQL refused the batch; it stays unacknowledged", error=str(exc))
                    await self._reconnect_store()
            self.stats.stored += new
            self.stats.duplicates += len(rows) - new
        for m in good:
            with contextlib.suppress(nats.errors.Error):
                await m.ack()
        self.stats.batches += 1

    async def _reject(self, m: Msg, why: str) -> None:
        self.stats.rejected += 1
        try:
            await self.store.reject(m.subject, why, m.data)
        except FleetStoreError:
            await self._reconnect_store()
            return  # not terminated: it comes again and is rejected then
        with contextlib.suppress(nats.errors.Error):
            await m.term()

    async def _reconnect_store(self) -> None:
        await asyncio.sleep(1.0)
        await self.store.close()
        with contextlib.suppress(FleetStoreError):
            self.store = await FleetStore.connect(self.cfg.postgres_dsn)

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            await nats_conn.close(nc)
