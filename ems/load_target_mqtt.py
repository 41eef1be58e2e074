"""The load-target channel over MQTT: requests in, status and breach alerts out.

`PREFIX/grid/loadtarget/set` (QoS 1) takes `grid.loadtarget.set.v1` requests
(ems/load_target.py); the broker's ACL confines who may publish there (the `ems-aggregator`
user in config/mosquitto/acl) and, where the site file names a secret, each request's data
must carry a valid HS256 signature. Every request gets a `grid.powerstate.status.v1` answer
on `PREFIX/grid/loadtarget/status` (accepted, rejected with why, cancelled), echoing its
correlation id; while an event runs (from any channel) a status every `status_every_s`
(import, target, the event's figures so far) and at the end of one of its own the result; a
minute whose average import was over the target raises a `grid.powerbreach.alert.v1` on `PREFIX/grid/powerbreach/alert`.
A malformed request is counted and logged once until a valid one comes. The outbox is
bounded; answers are published by this channel's own task, never by the period.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from ems.clock import Clock
from ems.dr_book import DrBook, DrBookFull
from ems.load_target import ALERT_TYPE, STATUS_TYPE, BadLoadTarget, LoadTargetDecoder, cloud_event
from ems.model.cancel_guard import checkpoint
from ems.mqtt_link import MqttLink, NotConnected
from ems.published import Published

log = structlog.get_logger("ems.loadtarget")
OUTBOX = 256


def set_topic(prefix: str) -> str:
    return f"{prefix}/grid/loadtarget/set"


def status_topic(prefix: str) -> str:
    return f"{prefix}/grid/loadtarget/status"


def alert_topic(prefix: str) -> str:
    return f"{prefix}/grid/powerbreach/alert"


class LoadTargetChannel:
    def __init__(self, decoder: LoadTargetDecoder, book: DrBook, clock: Clock, mqtt: MqttLink, published: Published,
                 site: str, prefix: str, status_every_s: float) -> None:
        self.decoder, self.book, self.clock, self.mqtt, self.published = decoder, book, clock, mqtt, published
        self.source = f"//grid/v1/site/{site}"
        self.prefix = prefix
        self.status_every_s = status_every_s
        self.outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(OUTBOX)
        self.accepted = self.rejected = self.dropped = 0
        self._bad = False
        self._minutes_over: dict[str, int] = {}
        book.listeners.append(self._finished)
        mqtt.commands[set_topic(prefix)] = self.ingest

    def _send(self, topic: str, kind: str, data: dict[str, Any], correlation_id: str | None) -> None:
        try:
            self.outbox.put_nowait((topic, cloud_event(kind, self.source, "loadtarget", data, self.clock.wall(),
                                                       correlation_id)))
        except asyncio.QueueFull:
            self.dropped += 1

    def ingest(self, payload: bytes) -> None:
        try:
            req = self.decoder.decode(payload, self.clock.wall(), "mqtt")
        except BadLoadTarget as exc:
            self.rejected += 1
            if not self._bad:
                self._bad = True
                log.warning("load target rejected", error=str(exc))
            self._send(status_topic(self.prefix), STATUS_TYPE, {"state": "rejected", "why": str(exc)}, None)
            return
        self._bad = False
        if req.event is None:
            gone = self.book.cancel(req.correlation_id)
            self._send(status_topic(self.prefix), STATUS_TYPE, {"state": "cancelled" if gone else "unknown"},
                       req.correlation_id)
            return
        try:
            self.book.add(req.event)
        except DrBookFull as exc:
            self.rejected += 1
            self._send(status_topic(self.prefix), STATUS_TYPE, {"state": "rejected", "why": str(exc)},
                       req.correlation_id)
            return
        self.accepted += 1
        log.info("load target accepted", correlation_id=req.correlation_id, target_w=req.event.target_import_w,
                 start=req.event.start_s, end=req.event.end_s, priority=req.priority)
        self._send(status_topic(self.prefix), STATUS_TYPE, {
            "state": "accepted", "target_w": req.event.target_import_w, "start_s": req.event.start_s,
            "end_s": req.event.end_s, "priority": req.priority}, req.correlation_id)

    def _finished(self, summary: dict[str, object]) -> None:
        if summary.get("source") == "mqtt":
            self._send(status_topic(self.prefix), STATUS_TYPE, {"state": "completed", "result": summary},
                       str(summary["event_id"]))

    def tick(self) -> None:
        """While an event runs: its status, and an alert for each minute over its target."""
        r = self.published.result
        dr = None if r is None else r.step.dr
        tally = None if r is None else r.step.state.dr.tally
        if r is None or dr is None or tally is None:  # whichever channel brought the event: the aggregator sees it
            return
        grid = None if r.snapshot.meter is None else r.snapshot.meter.grid_power_w
        self._send(status_topic(self.prefix), STATUS_TYPE, {
            "state": "active", "import_w": grid, "target_w": tally.target_w,
            "gpu": None if dr.gpu_reason is None else dr.gpu_reason.code, "event": tally.summary()}, tally.event_id)
        over = tally.minutes - tally.minutes_at_target
        if over > self._minutes_over.get(tally.event_id, 0):
            self._minutes_over[tally.event_id] = over
            self._send(alert_topic(self.prefix), ALERT_TYPE, {
                "event_id": tally.event_id, "target_w": tally.target_w, "minutes_over": over,
                "minutes": tally.minutes, "import_w": grid}, tally.event_id)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.status_every_s
        while True:
            checkpoint()  # a stop a library swallowed (ems/model/cancel_guard)
            try:
                topic, body = await asyncio.wait_for(self.outbox.get(), max(next_tick - loop.time(), 0.0))
            except TimeoutError:
                self.tick()
                next_tick = loop.time() + self.status_every_s
                continue
            try:
                await self.mqtt.publish(topic, body, qos=1)
            except NotConnected:
                self.dropped += 1
