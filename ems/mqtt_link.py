"""The controller's MQTT session: rack telemetry and job announcements in, caps and site status out.

One connection, re-established after a broker loss with backoff. On every (re)connect
it resubscribes and tells its listeners, so caps can be re-asserted. Whether it is
connected is part of each period's result; the transition observer logs the changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomqtt
import structlog

from drivers import rack_protocol as rp
from drivers import scheduler_protocol as sp
from drivers.racks import RackTelemetryStore
from ems.clock import Clock
from ems.config import MqttConfig
from ems.job_ramps import JobBook
from ems.model.cancel_guard import checkpoint
from ems.model.errors import EmsError
from ems.mqtt_auth import client_kwargs, refreshed

log = structlog.get_logger("ems.mqtt")


class NotConnected(EmsError):
    """Publishing while the broker is unreachable (or it failed to take the message)."""


class MqttLink:
    def __init__(self, cfg: MqttConfig, store: RackTelemetryStore, clock: Clock,
                 on_connect: Callable[[], None] | None = None, jobs: JobBook | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.jobs = jobs  # the scheduler's announcements, where the site ramps job steps
        self.clock = clock
        self.on_connect = on_connect
        # resolved once, so a missing secret fails at start-up (MqttAuthError), not at a reconnect
        self._connect = client_kwargs(cfg, identifier=cfg.client_id)
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.connects = 0
        self.publish_failures = 0
        self.last_error: str | None = None
        self.commands: dict[str, Callable[[bytes], None]] = {}  # more command topics (QoS 1) and their readers

    def identify_as(self, client_id: str) -> None:
        """Another MQTT client id (before `run`): two controllers of one site on one broker must
        not share one, or the broker drops each whenever the other connects."""
        self._connect["identifier"] = client_id

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        client = self._client
        if client is None:
            raise NotConnected(topic)
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=1.0)
        except aiomqtt.MqttError as exc:
            self.publish_failures += 1
            raise NotConnected(topic) from exc

    def _take_job(self, jobs: JobBook, body: bytes) -> None:
        """An announcement; whatever it holds, the session (and so the controller) carries on."""
        try:
            jobs.ingest(body, self.clock.monotonic(), self.clock.wall())
        except Exception as exc:  # a decoder bug must cost one message, not the site's MQTT session
            jobs.malformed += 1
            log.error("job announcement could not be read", error=repr(exc)[:200])

    def _take(self, read: Callable[[bytes], None], body: bytes) -> None:
        """A command; whatever it holds, the session carries on (its reader counts what it refuses)."""
        try:
            read(body)
        except Exception as exc:  # a decoder bug must cost one message, not the site's MQTT session
            log.error("command could not be read", error=repr(exc)[:200])

    async def run(self) -> None:
        backoff_s = 0.2
        while True:
            checkpoint()  # a stop a library swallowed (ems/model/cancel_guard)
            self._connect = refreshed(self.cfg, self._connect)  # rotated credentials and certificates
            try:
                async with aiomqtt.Client(**self._connect, timeout=5.0,
                                          max_queued_incoming_messages=100_000) as client:
                    await client.subscribe(rp.telemetry_wildcard(self.cfg.topic_prefix), qos=0)
                    jobs_topic = sp.jobs_topic(self.cfg.topic_prefix)
                    if self.jobs is not None:
                        await client.subscribe(jobs_topic, qos=1)
                    for topic in self.commands:
                        await client.subscribe(topic, qos=1)
                    self._client = client
                    self.connects += 1
                    self.connected.set()
                    backoff_s = 0.2
                    self.last_error = None
                    if self.on_connect is not None:
                        self.on_connect()
                    ingest, now = self.store.ingest, self.clock.monotonic
                    async for message in client.messages:
                        payload = message.payload
                        body = payload if isinstance(payload, bytes) else b""
                        if self.jobs is not None and message.topic.value == jobs_topic:
                            self._take_job(self.jobs, body)
                        elif (read := self.commands.get(message.topic.value)) is not None:
                            self._take(read, body)
                        else:
                            ingest(message.topic.value, body, now())
            except aiomqtt.MqttError as exc:
                self._client = None
                self.connected.clear()
                self.last_error = str(exc)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
            finally:
                self._client = None
