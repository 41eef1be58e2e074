"""Simulated racks on MQTT: one row agent (one MQTT connection) per row of racks.

Real sites reach racks through row PDUs or row controllers; here each row agent
publishes every rack's own telemetry topic and obeys per-rack and per-row cap
commands, so per-rack loads and caps stay visible.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiomqtt

from drivers import rack_protocol as rp
from drivers.rack_session import RackCommands, run_rack_session
from ems.model.racks import SmoothingProfile
from plant.racks import JobState, RackFleet

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
        self.seq = 0
        self.caps_received = 0
        self.connected = asyncio.Event()
        # on_command is told (with the row id) of every command message
        self.commands = RackCommands(
            prefix, row_id, [fleet.rack_ids[i] for i in self.racks], self._apply_cap, self._apply_profile,
            None if on_command is None else lambda: on_command(row_id))

    def _state_name(self, rack: int) -> str:
        if self.fleet.cfg.model == "steady":
            return "steady"
        return _STATE_NAMES[JobState(self.fleet.job_state[self.fleet.job_of_rack[rack]])]

    async def _apply_cap(self, rack_id: str, cap_w: float | None) -> None:
        self.fleet.command_cap(self.fleet.index[rack_id], cap_w, self.site_now())
        self.caps_received += 1

    async def _apply_profile(self, rack_id: str, profile: SmoothingProfile | None) -> None:
        self.fleet.command_profile(self.fleet.index[rack_id], profile, self.site_now())

    @property
    def malformed(self) -> int:
        return self.commands.malformed

    async def _publish(self, client: aiomqtt.Client) -> None:
        fleet = self.fleet
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

    async def run(self) -> None:
        """Connect, subscribe, publish; reconnect after a broker loss until cancelled."""
        await run_rack_session(self.connect, self.commands, self._publish, self.interval_s, self.connected,
                               name=self.row_id)
