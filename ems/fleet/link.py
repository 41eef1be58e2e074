"""The site's link to the fleet: status, events and 1-minute history into JetStream.

The control loop only appends to the outbox (ems/fleet/outbox.py), from its period observer
and the event log's listener; this task sends what the outbox holds, oldest first, in
batches, each message with its id in `Nats-Msg-Id` (JetStream drops a duplicate within its
window; `ems fleet` drops any later one by its key), and deletes a batch once JetStream has
acknowledged all of it. While NATS cannot be reached the outbox grows, and the link says
so once (an event); when it is back, the backlog goes out in order before anything newer.
How many messages are in flight adapts (additive increase, multiplicative decrease, as TCP):
a batch that times out halves the window, a whole batch acknowledged widens it, so a hundred
sites replaying at once after an outage do not time each other out for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats.errors
import structlog
from nats.aio.client import Client

from ems import nats_conn
from ems.events import Event, EventLog
from ems.fleet.outbox import Outbox, Pending
from ems.fleet.settings import FleetLinkConfig
from ems.fleet.subjects import ensure_stream, msg_id, subject
from ems.fleet.summary import MinuteHistory, status_summary
from ems.model.cancel_guard import checkpoint
from ems.model.errors import EmsError
from ems.nats_conn import connect
from ems.published import PeriodResult

log = structlog.get_logger("ems.fleet")


class FleetLinkDown(EmsError):
    """NATS cannot be reached or did not acknowledge in time: the outbox keeps the messages."""


class FleetLink:
    def __init__(self, cfg: FleetLinkConfig, site: str, outbox_path: Path | None, events: EventLog,
                 wall: Callable[[], float], may_publish: Callable[[], bool] = lambda: True) -> None:
        self.cfg, self.site, self.events, self.wall = cfg, site, events, wall
        self.outbox = Outbox(outbox_path, cfg.outbox_max)
        self.may_publish = may_publish  # active/standby: only the active speaks for the site
        self.history = MinuteHistory()
        self._last_status_s: float | None = None
        self._nc: Client | None = None
        self.up: bool | None = None
        self.sent = 0
        self.window = min(cfg.batch, 32)  # messages in flight, between 1 and cfg.batch
        self._wake = asyncio.Event()
        events.subscribe(self._on_event)

    # --- from the control loop (cheap: one SQLite insert) ----------------------------------
    def observe(self, r: PeriodResult) -> None:
        if not self.may_publish():
            return
        snap = r.snapshot
        summary = status_summary(r)
        closed = self.history.add(snap.wall_s, summary)
        if closed is not None:
            self.outbox.append("history", float(closed["minute_s"]), closed)
        if self._last_status_s is None or snap.now_s - self._last_status_s >= self.cfg.status_every_s - 1e-9:
            self._last_status_s = snap.now_s
            self.outbox.append("status", snap.wall_s, summary)
        self._wake.set()

    def _on_event(self, e: Event) -> None:
        if e.kind.startswith("fleet_link_") or not self.may_publish():
            return  # the link's own state goes in the status, not back through itself
        self.outbox.append("events", e.wall_s, {"id": e.id, "kind": e.kind, "reason": e.reason, "data": e.data})

    # --- the task ------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            while True:
                checkpoint()  # a stop a library swallowed (ems/model/cancel_guard)
                try:
                    await self._connect()
                    if await self._send_batch() == 0:
                        self._wake.clear()
                        await _wait(self._wake, 1.0)
                    self._state(True, None)
                except FleetLinkDown as exc:
                    self._state(False, str(exc))
                    await asyncio.sleep(0.5)
        finally:
            await self._flush(2.0)
            await self.close()

    async def _flush(self, within_s: float) -> None:
        """At a stop: what the outbox holds (the controller's last events), if the link is up;
        what does not go now stays in the outbox for the next start."""
        if self._nc is None or not self._nc.is_connected:
            return
        with contextlib.suppress(FleetLinkDown, TimeoutError):
            async with asyncio.timeout(within_s):
                while await self._send_batch():
                    pass

    async def _connect(self) -> None:
        if self._nc is not None and self._nc.is_connected:
            return
        if self._nc is None:
            try:
                self._nc = await connect(self.cfg.nats_url, f"ems-fleet-{self.site}", self.cfg.request_timeout_s,
                                         0.5)
                await ensure_stream(self._nc.jetstream(), self.cfg.stream, self.cfg.subject_prefix,
                                    self.cfg.retention_days, self.cfg.request_timeout_s)
            except (TimeoutError, nats.errors.Error, OSError) as exc:
                if self._nc is not None:
                    await self.close()
                raise FleetLinkDown(f"cannot reach {self.cfg.nats_url}: {exc}") from exc
        if not self._nc.is_connected:
            raise FleetLinkDown("reconnecting")

    def message(self, p: Pending) -> tuple[str, bytes, dict[str, str]]:
        mid = msg_id(self.site, self.outbox.source, p.seq)
        body = {"site": self.site, "source": self.outbox.source, "seq": p.seq, "kind": p.kind, "ts": p.ts,
                "body": p.body}
        return (subject(self.cfg.subject_prefix, self.site, p.kind), json.dumps(body, separators=(",", ":")).encode(),
                {"Nats-Msg-Id": mid})

    async def _send_batch(self) -> int:
        """One batch from the head of the outbox; the number acknowledged."""
        pending = self.outbox.head(self.window)
        if not pending:
            return 0
        assert self._nc is not None
        js = self._nc.jetstream(timeout=self.cfg.request_timeout_s)
        msgs = [self.message(p) for p in pending]
        # issued in order on one connection, so the stream stores them in order
        results = await asyncio.gather(*(js.publish(s, b, headers=h) for s, b, h in msgs), return_exceptions=True)
        acked = 0
        for p, res in zip(pending, results, strict=True):
            if isinstance(res, BaseException):
                break
            acked = p.seq
        if acked:
            self.outbox.acknowledged(acked)
            self.sent += sum(1 for p in pending if p.seq <= acked)
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            self.window = max(1, self.window // 2)
            raise FleetLinkDown(f"{type(failed).__name__}: {failed}")
        if len(pending) == self.window:
            self.window = min(self.cfg.batch, self.window + 8)
        return len(pending)

    def _state(self, up: bool, why: str | None) -> None:
        if up == self.up:
            return
        self.up = up
        self.events.record("fleet_link_up" if up else "fleet_link_down", self.wall(), None, why=why,
                           backlog=len(self.outbox))
        if up:
            log.info("fleet link up", backlog=len(self.outbox))
        else:
            log.warning("fleet link down: buffering in the outbox", why=why, backlog=len(self.outbox))

    def describe(self) -> dict[str, Any]:
        return {"up": self.up, "backlog": len(self.outbox), "sent": self.sent, "dropped": self.outbox.dropped,
                "dropped_events": self.outbox.dropped_events}

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not await nats_conn.close(nc):
            log.debug("fleet link: close did not finish")


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)
