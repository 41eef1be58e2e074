"""`ems agent`: a GPU node (or a row controller standing for a rack) on the row protocol.

It publishes its rack's telemetry on the rack's topic every `telemetry_period_s` and obeys the
row's commands (caps and smoothing profiles, docs/topics.md) exactly as the simulator's row
agents do: the MQTT session is the same code (drivers/rack_session.py). NVML work runs in a
thread so that a slow driver call never holds up the session. A period in which the GPUs
cannot be read publishes nothing: the controller then sees the rack go stale and assumes its
cap or nameplate, never a guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiomqtt
import structlog

from drivers import rack_protocol as rp
from drivers.nvml import Gpu
from drivers.rack_session import RackCommands, run_rack_session
from ems.agent.config import AgentConfig
from ems.agent.gpu_rack import GpuRack
from ems.model.racks import SmoothingProfile

log = structlog.get_logger("ems.agent")


class RackAgent:
    def __init__(self, cfg: AgentConfig, rack: GpuRack, connect: dict[str, Any],
                 wall_s: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.rack = rack
        self.connect = connect  # aiomqtt.Client kwargs: broker, identity, TLS (ems/mqtt_auth.py)
        self.wall_s = wall_s
        self.topic = rp.telemetry_topic(cfg.mqtt.topic_prefix, cfg.rack_id)
        self.commands = RackCommands(cfg.mqtt.topic_prefix, cfg.row_id, [cfg.rack_id], self._on_cap, self._on_profile)
        self.seq = 0
        self.connected = asyncio.Event()
        # the latest command of each kind not yet handed to NVML: a write takes milliseconds, and
        # a peer publishing faster than that must not queue writes ahead of the next real command
        self._cap: tuple[float | None] | None = None
        self._profile: tuple[SmoothingProfile | None] | None = None
        self._pending = asyncio.Event()
        self.superseded = 0  # commands replaced by a newer one before they were applied

    async def _on_cap(self, _rack_id: str, cap_w: float | None) -> None:
        self.superseded += self._cap is not None
        self._cap = (cap_w,)
        self._pending.set()

    async def _on_profile(self, _rack_id: str, profile: SmoothingProfile | None) -> None:
        self.superseded += self._profile is not None
        self._profile = (profile,)
        self._pending.set()

    async def _apply_commands(self) -> None:
        """Hand the latest cap and profile to the GPUs, one NVML call sequence at a time."""
        while True:
            await self._pending.wait()
            self._pending.clear()
            if self._cap is not None:
                (cap_w,), self._cap = self._cap, None
                await asyncio.to_thread(self.rack.apply_cap, cap_w)
            if self._profile is not None:
                (profile,), self._profile = self._profile, None
                await asyncio.to_thread(self.rack.apply_profile, profile)

    async def _publish(self, client: aiomqtt.Client) -> None:
        sample = await asyncio.to_thread(self.rack.read, time.monotonic())
        if sample is None:
            return
        msg = rp.RackTelemetry(rack_id=self.cfg.rack_id, power_w=sample.power_w, cap_w=sample.cap_w,
                               nameplate_w=self.rack.nameplate_w, state=sample.state, seq=self.seq, ts=self.wall_s())
        await client.publish(self.topic, rp.encode_telemetry(msg))
        self.seq += 1

    async def run(self) -> None:
        """Publish and obey until cancelled; reconnect after a broker loss."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._apply_commands(), name=f"apply:{self.cfg.rack_id}")
            await run_rack_session(self.connect, self.commands, self._publish, self.cfg.telemetry_period_s,
                                   self.connected, name=self.cfg.rack_id, log_connection=True)

    def status(self) -> dict[str, object]:
        return {"telemetry_sent": self.seq, "malformed_commands": self.commands.malformed,
                "superseded_commands": self.superseded,
                "retained_commands_ignored": self.commands.retained_ignored,
                **dataclasses.asdict(self.rack.counters)}


async def serve(cfg: AgentConfig, gpus: Sequence[Gpu], connect: dict[str, Any], stop: asyncio.Event) -> RackAgent:
    """Run the agent for `gpus` until `stop` is set; then every GPU back to its default limit
    and smoothing as it was. Returns the agent (its counters) once the GPUs are restored."""
    rack = GpuRack(gpus, overhead_w=cfg.node_overhead_w, idle_below_share=cfg.idle_below_share,
                   smoothing_preset=cfg.smoothing_preset, nameplate_w=cfg.nameplate_w)
    agent = RackAgent(cfg, rack, connect)
    described = rack.describe()
    log.info("agent started", rack=cfg.rack_id, broker=cfg.mqtt.url, period_s=cfg.telemetry_period_s,
             nameplate_w=rack.nameplate_w, gpus=described["gpus"])
    task = asyncio.create_task(agent.run(), name=f"agent:{cfg.rack_id}")
    stopped = asyncio.create_task(stop.wait(), name="agent:stop")
    try:
        # the session only ends by itself on a fault (it rides out broker losses): stop then too
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, stopped):
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopped
        fault = None
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            fault = exc
        failed = await asyncio.to_thread(rack.restore)
        if failed:
            log.warning("could not restore these GPUs' limits or smoothing", gpus=failed)
        log.info("agent stopped", rack=cfg.rack_id, **agent.status())
    if fault is not None:
        raise fault
    return agent
