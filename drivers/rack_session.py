"""The rack side of the row protocol (docs/topics.md): one MQTT session that takes a row's
commands, publishes telemetry every period and reconnects after a broker loss.

Shared by the simulator's row agents and `ems agent`, so a simulated rack and a real one
obey the same commands the same way: a whole message is decoded before any of it is applied
(a malformed one changes nothing), commands for racks the session does not serve are
ignored, and malformed messages are counted and logged once until a valid one arrives.
A retained per-rack cap is ignored (counted, logged once): only the row messages, which the
controller keeps retained and current, say what is in force when a session (re)subscribes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiomqtt
import structlog

from drivers import rack_protocol as rp
from drivers.errors import MalformedData
from ems.model.cancel_guard import checkpoint
from ems.model.racks import SmoothingProfile

log = structlog.get_logger("drivers.rack_session")

CapHandler = Callable[[str, float | None], Awaitable[None]]
ProfileHandler = Callable[[str, SmoothingProfile | None], Awaitable[None]]
Tick = Callable[[aiomqtt.Client], Awaitable[None]]


class RackCommands:
    """A row's commands (row caps, row smoothing profiles, per-rack caps) for the racks served."""

    def __init__(self, prefix: str, row_id: str, rack_ids: Sequence[str], on_cap: CapHandler,
                 on_profile: ProfileHandler, on_message: Callable[[], None] | None = None) -> None:
        self.prefix = prefix
        self.row_id = row_id
        self.racks = tuple(rack_ids)
        self._served = frozenset(rack_ids)
        self.on_cap = on_cap
        self.on_profile = on_profile
        self.on_message = on_message  # told of every message, valid or not (the simulator counts them)
        self.malformed = 0
        self.retained_ignored = 0  # per-rack caps found retained at the broker
        self._bad = False  # the last message was malformed: log the next valid one, not every bad one
        self._caps_topic = rp.row_caps_topic(prefix, row_id)
        self._smoothing_topic = rp.row_smoothing_topic(prefix, row_id)

    def subscriptions(self) -> list[tuple[str, int]]:
        topics = [self._caps_topic, self._smoothing_topic] + [rp.cap_topic(self.prefix, r) for r in self.racks]
        return [(t, 1) for t in topics]  # QoS 1: a command must not be lost to a dropped packet

    async def dispatch(self, topic: str, payload: bytes, retained: bool = False) -> None:
        if self.on_message is not None:
            self.on_message()
        if retained and topic not in (self._caps_topic, self._smoothing_topic):
            # the controller never retains a per-rack cap; one left there (a tool, an intruder)
            # arrives after the row's on every subscribe and would override it each reconnect
            self.retained_ignored += 1
            if self.retained_ignored == 1:
                log.warning("retained per-rack cap ignored: the row's caps are in force", row=self.row_id,
                            topic=topic)
            return
        caps: dict[str, float | None] = {}
        profiles: dict[str, SmoothingProfile | None] = {}
        try:
            if topic == self._caps_topic:
                caps = rp.decode_row_caps(payload)
            elif topic == self._smoothing_topic:
                profiles = rp.decode_row_smoothing(payload)
            else:  # PREFIX/rows/{row}/racks/{rack}/cap
                caps = {topic.rsplit("/", 2)[1]: rp.decode_cap(payload)}
        except MalformedData as exc:
            self.malformed += 1
            if not self._bad:
                self._bad = True
                log.warning("malformed row command", row=self.row_id, topic=topic, error=str(exc))
            return
        if self._bad:
            self._bad = False
            log.info("row commands valid again", row=self.row_id)
        for rack_id, cap_w in caps.items():
            if rack_id in self._served:
                await self.on_cap(rack_id, cap_w)
        for rack_id, profile in profiles.items():
            if rack_id in self._served:
                await self.on_profile(rack_id, profile)


async def _tick_every(client: aiomqtt.Client, tick: Tick, interval_s: float) -> None:
    # racks are not phase-locked on a real site: start each session at its own offset in the period
    next_t = time.monotonic() + random.uniform(0.0, interval_s)
    await asyncio.sleep(max(0.0, next_t - time.monotonic()))
    while True:
        checkpoint()  # a cancel aiomqtt's publish swallowed (ems/model/cancel_guard)
        await tick(client)
        next_t += interval_s
        now = time.monotonic()
        if now - next_t > interval_s:  # a tick ran long (a slow driver call): skip, never burst to catch up
            next_t = now
        await asyncio.sleep(max(0.0, next_t - now))


async def _command_loop(client: aiomqtt.Client, commands: RackCommands) -> None:
    async for message in client.messages:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        await commands.dispatch(str(message.topic), payload, retained=bool(message.retain))


async def run_rack_session(connect: dict[str, Any], commands: RackCommands, tick: Tick, interval_s: float,
                           connected: asyncio.Event, *, name: str, log_connection: bool = False,
                           retry_s: float = 0.5) -> None:
    """Connect (`connect`: aiomqtt.Client kwargs, see ems/mqtt_auth.py), subscribe to the
    commands, call `tick` every `interval_s`; after a broker loss, reconnect every `retry_s`
    until cancelled. Retained row commands arrive again on every subscribe. With
    `log_connection`, the first failure after a connection and each reconnection are logged."""
    up: bool | None = None  # unknown at first: log the first outcome either way
    while True:
        try:
            async with aiomqtt.Client(**connect) as client:
                await client.subscribe(commands.subscriptions())
                connected.set()
                if log_connection and up is not True:
                    log.info("connected to the broker", session=name, host=connect.get("hostname"))
                up = True
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(_tick_every(client, tick, interval_s), name=f"publish:{name}")
                    tg.create_task(_command_loop(client, commands), name=f"commands:{name}")
        except* aiomqtt.MqttError as group:
            connected.clear()
            if log_connection and up is not False:
                log.warning("broker unreachable; retrying", session=name, error=str(group.exceptions[0]))
            up = False
            await asyncio.sleep(retry_s)
