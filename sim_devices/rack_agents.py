"""Simulated racks on MQTT: one row agent (one MQTT connection) per row of racks.

Real sites reach racks through row PDUs or row controllers; here each row agent
publishes every rack's own telemetry topic and obeys per-rack and per-row cap
commands, so per-rack loads and caps stay visible.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import aiomqtt
import structlog

from drivers import rack_protocol as rp
from drivers.errors import MalformedData
from plant.racks import JobState, RackFleet

log = structlog.get_logger("sim.racks")

_STATE_NAMES = {
    JobState.IDLE: "idle", JobState.RAMP_UP: "ramp_up", JobState.TRAINING: "training",
    JobState.CHECKPOINT: "checkpoint", JobState.RAMP_DOWN: "ramp_down",
}


class RowAgent:
    def __init__(
        self,
        row_id: str,
        fleet: RackFleet,
        connect: dict[str, Any],
        prefix: str,
        interval_s: float,
        site_now: Callable[[], float],
        site_epoch_s: float,
        on_command: Callable[[str], None] | None = None,
    ) -> None:
        self.row_id = row_id
        self.fleet = fleet
        self.racks = [i for i, r in enumerate(fleet.row_of_rack) if r == row_id]
        self.connect = connect  # aiomqtt.Client kwargs: broker, identity, TLS (ems/mqtt_auth.py)
        self.prefix = prefix
        self.interval_s = interval_s
        self.site_now = site_now
        self.site_epoch_s = site_epoch_s
        self.on_command = on_command  # told (with the row id) when a cap command arrives
        self.seq = 0
        self.caps_received = 0
        self.malformed = 0
        self.connected = asyncio.Event()

    def _state_name(self, rack: int) -> str:
        if self.fleet.cfg.model == "steady":
            return "steady"
        return _STATE_NAMES[JobState(self.fleet.job_state[self.fleet.job_of_rack[rack]])]

    def _apply_cap(self, rack_id: str, cap_w: float | None) -> None:
        idx = self.fleet.index.get(rack_id)
        if idx is None or idx not in self.racks:
            return
        self.fleet.command_cap(idx, cap_w, self.site_now())
        self.caps_received += 1

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        fleet = self.fleet
        # rows are not phase-locked on a real site: start each at its own offset in the period
        next_t = time.monotonic() + random.uniform(0.0, self.interval_s)
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))
        while True:
            # Python 3.11's wait_for (inside aiomqtt's publish) can swallow a cancellation that races
            # with the publish completing; honour it here, or the site's shutdown waits forever
            if (me := asyncio.current_task()) is not None and me.cancelling():
                raise asyncio.CancelledError
            now_site = self.site_now()
            for i in self.racks:
                cap = fleet.cap_w[i]
                msg = rp.RackTelemetry(
                    rack_id=fleet.rack_ids[i], power_w=float(fleet.power_w[i]),
                    cap_w=None if cap != cap else float(cap),  # NaN = no cap
                    nameplate_w=float(fleet.nameplate_w[i]), state=self._state_name(i),
                    seq=self.seq, ts=self.site_epoch_s + now_site,
                )
                await client.publish(rp.telemetry_topic(self.prefix, msg.rack_id), rp.encode_telemetry(msg))
            self.seq += 1
            next_t += self.interval_s
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))

    async def _command_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if self.on_command is not None:
                self.on_command(self.row_id)
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            try:
                if topic.endswith("/caps"):
                    for rack_id, cap in rp.decode_row_caps(payload).items():
                        self._apply_cap(rack_id, cap)
                elif topic.endswith("/smoothing"):
                    for rack_id, profile in rp.decode_row_smoothing(payload).items():
                        idx = self.fleet.index.get(rack_id)
                        if idx is not None and idx in self.racks:
                            self.fleet.command_profile(idx, profile, self.site_now())
                else:
                    self._apply_cap(topic.rsplit("/", 2)[1], rp.decode_cap(payload))
            except MalformedData as exc:
                self.malformed += 1
                if self.malformed == 1:
                    log.warning("malformed row command", row=self.row_id, error=str(exc))

    async def run(self) -> None:
        """Connect, subscribe, publish; reconnect after a broker loss until cancelled."""
        while True:
            try:
                async with aiomqtt.Client(**self.connect) as client:
                    topics = [rp.row_caps_topic(self.prefix, self.row_id),
                              rp.row_smoothing_topic(self.prefix, self.row_id)]
                    topics += [rp.cap_topic(self.prefix, self.fleet.rack_ids[i]) for i in self.racks]
                    await client.subscribe([(t, 1) for t in topics])
                    self.connected.set()
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._publish_loop(client), name=f"publish:{self.row_id}")
                        tg.create_task(self._command_loop(client), name=f"commands:{self.row_id}")
            except* aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.5)
