"""`ems agent` over a real broker, with NVML faked (tests/fake_nvml.py): the controller's own
ingest sees its telemetry, its own writers' caps and smoothing profiles reach the GPUs,
malformed commands are counted, a broker restart is ridden out, shutdown restores the GPUs;
and the command itself, run as a process on this machine that has no GPU, refuses to start."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
import yaml

from drivers import rack_protocol as rp
from drivers.nvml import open_gpus
from drivers.racks import RackCapWriter, RackTelemetryStore, SmoothingProfileWriter
from ems.agent.agent import RackAgent, serve
from ems.agent.config import AgentConfig
from ems.agent.gpu_rack import GpuRack
from ems.broker import Broker, free_port, mosquitto, mosquitto_path
from ems.clock import ScaledClock
from ems.model.racks import SmoothingProfile
from ems.mqtt_auth import client_kwargs
from ems.mqtt_link import MqttLink
from ems.topology import MqttConfig
from tests.conftest import wait_for
from tests.fake_nvml import FakeGpu, FakeNvml

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RACK = "row01-rack02"
ROW_RACKS = [f"row01-rack{k:02d}" for k in range(1, 5)]
OVERHEAD_W = 1_000.0


def agent_config(url: str, prefix: str) -> AgentConfig:
    return AgentConfig.model_validate({"rack_id": RACK, "mqtt": {"url": url, "topic_prefix": prefix},
                                       "telemetry_period_s": 0.1, "node_overhead_w": OVERHEAD_W})


def two_gpus(*, smoothing: bool = False) -> FakeNvml:
    return FakeNvml([FakeGpu(draw_mw=350_000, smoothing=smoothing), FakeGpu(draw_mw=350_000, smoothing=smoothing)])


class Controller:
    """The controller's side of the rack protocol, made of its own pieces."""

    def __init__(self, url: str, prefix: str) -> None:
        self.clock = ScaledClock(1.0)
        self.store = RackTelemetryStore(ROW_RACKS, 40_000.0, stale_after_s=1.0)
        self.caps = RackCapWriter(prefix, ROW_RACKS, deadband_w=1.0)
        self.profiles = SmoothingProfileWriter(prefix, ROW_RACKS)
        self.link = MqttLink(MqttConfig(url=url, topic_prefix=prefix), self.store, self.clock)
        self.i = ROW_RACKS.index(RACK)

    async def cap(self, caps_w: dict[str, float | None]) -> None:
        await self.caps.send(self._publish, self.caps.changes(caps_w))

    async def profile(self, profiles: dict[str, SmoothingProfile | None]) -> None:
        await self.profiles.send(self._publish, self.profiles.changes(profiles))

    @property
    def _publish(self) -> functools.partial[object]:
        return functools.partial(self.link.publish, qos=1, retain=True)  # as the control loop sends them

    def fresh(self) -> bool:
        return bool(self.store.reading(self.clock.monotonic()).fresh[self.i])

    def power_w(self) -> float:
        return float(self.store.power_w[self.i])

    def cap_w(self) -> float:
        return float(self.store.cap_w[self.i])


@contextlib.asynccontextmanager
async def running(broker: Broker, nvml: FakeNvml) -> AsyncIterator[tuple[RackAgent, Controller]]:
    prefix = f"ems/test{free_port()}"
    cfg = agent_config(broker.url, prefix)
    rack = GpuRack(open_gpus(nvml), overhead_w=cfg.node_overhead_w)
    agent = RackAgent(cfg, rack, client_kwargs(cfg.mqtt, identifier=cfg.client_id))
    ctl = Controller(broker.url, prefix)
    tasks = [asyncio.create_task(agent.run()), asyncio.create_task(ctl.link.run())]
    try:
        await asyncio.wait_for(ctl.link.connected.wait(), 5)
        await asyncio.wait_for(agent.connected.wait(), 5)
        yield agent, ctl
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def test_telemetry_is_accepted_by_the_controller_and_its_caps_reach_the_gpus(broker) -> None:
    nvml = two_gpus()
    async with running(broker, nvml) as (agent, ctl):
        await wait_for(ctl.fresh)
        # power from the GPUs' energy counters (whole mJ) over the agent's own clock: within 1 W
        assert ctl.power_w() == pytest.approx(2 * 350.0 + OVERHEAD_W, abs=1.0)
        assert np.isnan(ctl.cap_w())
        assert ctl.store.malformed == 0

        # a row message from the controller's own writer: this rack 1.5 kW, a neighbour 20 kW
        await ctl.cap({RACK: 1_500.0, "row01-rack01": 20_000.0})
        await wait_for(lambda: [g.limit_mw for g in nvml.gpus] == [250_000, 250_000])
        await wait_for(lambda: ctl.cap_w() == pytest.approx(1_500.0))
        await wait_for(lambda: ctl.power_w() == pytest.approx(2 * 250.0 + OVERHEAD_W, abs=1.0))

        await ctl.cap({RACK: None})
        await wait_for(lambda: [g.limit_mw for g in nvml.gpus] == [700_000, 700_000])
        await wait_for(lambda: np.isnan(ctl.cap_w()))
        assert agent.rack.counters.caps_applied == 2


async def test_smoothing_profiles_reach_gpus_that_support_them(broker) -> None:
    nvml = two_gpus(smoothing=True)
    async with running(broker, nvml) as (agent, ctl):
        await ctl.profile({RACK: SmoothingProfile(floor_w=1_700.0, ramp_w_per_s=400.0)})
        await wait_for(lambda: all(g.smoothing_enabled for g in nvml.gpus))
        assert nvml.gpus[0].profiles[0][0] == pytest.approx(50.0)  # 350 W of each GPU's 700 W
        await ctl.profile({RACK: None})
        await wait_for(lambda: not any(g.smoothing_enabled for g in nvml.gpus))
        assert agent.rack.counters.profiles_applied == 1


async def test_malformed_commands_are_counted_and_the_agent_carries_on(broker) -> None:
    nvml = two_gpus()
    async with running(broker, nvml) as (agent, ctl):
        prefix = agent.cfg.mqtt.topic_prefix
        async with aiomqtt.Client(broker.host, broker.port) as intruder:
            await intruder.publish(rp.row_caps_topic(prefix, "row01"), b"{not json", qos=1)
            await intruder.publish(rp.row_smoothing_topic(prefix, "row01"), b'{"profiles": {"x": 3}}', qos=1)
            await intruder.publish(rp.cap_topic(prefix, RACK), b'{"cap_w": -5}', qos=1)
            # a caps message with one bad entry changes nothing, not even its valid ones
            await intruder.publish(rp.row_caps_topic(prefix, "row01"),
                                   b'{"caps_w": {"row01-rack02": 900.0, "row01-rack03": "lots"}}', qos=1)
            await wait_for(lambda: agent.commands.malformed == 4)
            assert [g.limit_mw for g in nvml.gpus] == [700_000, 700_000]
            # a valid per-rack cap after all that is obeyed
            await intruder.publish(rp.cap_topic(prefix, RACK), rp.encode_cap(1_600.0, 1), qos=1)
        await wait_for(lambda: [g.limit_mw for g in nvml.gpus] == [300_000, 300_000])
        seq = agent.seq
        await wait_for(lambda: agent.seq > seq + 2)  # still publishing
        assert ctl.store.malformed == 0


async def test_a_flood_of_caps_leaves_no_backlog_the_latest_is_applied(broker) -> None:
    # an NVML write takes milliseconds; a peer publishing caps far faster must not queue up
    # seconds of writes ahead of the next real cap: superseded caps are dropped unwritten
    nvml = two_gpus()
    for g in nvml.gpus:
        g.delay_s["nvmlDeviceSetPowerManagementLimit"] = 0.02
    flood = 500
    async with running(broker, nvml) as (agent, _ctl):
        topic = rp.cap_topic(agent.cfg.mqtt.topic_prefix, RACK)
        async with aiomqtt.Client(broker.host, broker.port) as peer:
            for k in range(flood):  # 250 W and 350 W per GPU in turn
                await peer.publish(topic, rp.encode_cap(1_500.0 + 200.0 * (k % 2), k))
            await peer.publish(topic, rp.encode_cap(1_600.0, flood), qos=1)  # 300 W per GPU
        await wait_for(lambda: [g.limit_mw for g in nvml.gpus] == [300_000, 300_000])
        assert nvml.calls.count("nvmlDeviceSetPowerManagementLimit") < flood // 2
        seq = agent.seq
        await wait_for(lambda: agent.seq > seq + 2)  # telemetry went on throughout


async def test_a_stale_retained_rack_cap_does_not_override_the_rows_caps(broker) -> None:
    # the controller keeps each row's caps retained; a per-rack cap left retained (by a tool, a
    # test, an intruder) came after it on every (re)subscribe and won: the rack stayed at it
    nvml = two_gpus()
    prefix = f"ems/test{free_port()}"
    async with aiomqtt.Client(broker.host, broker.port) as peer:
        await peer.publish(rp.cap_topic(prefix, RACK), rp.encode_cap(900.0, 1), qos=1, retain=True)
    ctl = Controller(broker.url, prefix)
    link = asyncio.create_task(ctl.link.run())
    await asyncio.wait_for(ctl.link.connected.wait(), 5)
    await ctl.cap({RACK: 1_500.0})  # retained, as the control loop sends it
    cfg = agent_config(broker.url, prefix)
    agent = RackAgent(cfg, GpuRack(open_gpus(nvml), overhead_w=OVERHEAD_W),
                      client_kwargs(cfg.mqtt, identifier=cfg.client_id))
    task = asyncio.create_task(agent.run())
    try:
        await wait_for(lambda: agent.commands.retained_ignored == 1)
        await wait_for(lambda: [g.limit_mw for g in nvml.gpus] == [250_000, 250_000])
        seq = agent.seq
        await wait_for(lambda: agent.seq > seq + 2)
        assert all(g.limits_set_mw == [250_000] for g in nvml.gpus)
        # a live (not retained) per-rack cap is still obeyed
        async with aiomqtt.Client(broker.host, broker.port) as peer:
            await peer.publish(rp.cap_topic(prefix, RACK), rp.encode_cap(1_600.0, 2), qos=1)
        await wait_for(lambda: [g.limit_mw for g in nvml.gpus] == [300_000, 300_000])
    finally:
        for t in (task, link):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t


@pytest.mark.skipif(mosquitto_path() is None, reason="needs the mosquitto binary to restart a broker")
async def test_the_agent_rides_out_a_broker_restart() -> None:
    port = free_port()
    first = mosquitto(port)
    broker = await first.__aenter__()
    second = None
    try:
        async with running(broker, two_gpus()) as (agent, ctl):
            await wait_for(ctl.fresh)
            await first.__aexit__(None, None, None)
            first = None
            await wait_for(lambda: not agent.connected.is_set())
            second = mosquitto(port)
            await second.__aenter__()
            await wait_for(agent.connected.is_set, timeout_s=10)
            seq = agent.seq
            await wait_for(lambda: agent.seq > seq and ctl.fresh(), timeout_s=10)
    finally:
        for b in (first, second):
            if b is not None:
                await b.__aexit__(None, None, None)


async def test_stopping_serve_restores_the_gpus(broker) -> None:
    nvml = two_gpus(smoothing=True)
    prefix = f"ems/test{free_port()}"
    cfg = agent_config(broker.url, prefix)
    stop = asyncio.Event()
    ctl = Controller(broker.url, prefix)
    link = asyncio.create_task(ctl.link.run())
    task = asyncio.create_task(serve(cfg, open_gpus(nvml), client_kwargs(cfg.mqtt, identifier=cfg.client_id), stop))
    try:
        await asyncio.wait_for(ctl.link.connected.wait(), 5)
        await wait_for(ctl.fresh)
        await ctl.cap({RACK: 1_500.0})
        await ctl.profile({RACK: SmoothingProfile(1_700.0, 400.0)})
        await wait_for(lambda: all(g.limit_mw == 250_000 and g.smoothing_enabled for g in nvml.gpus))
        stop.set()
        agent = await asyncio.wait_for(task, 5)
    finally:
        link.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await link
    assert all(g.limit_mw == 700_000 and not g.smoothing_enabled for g in nvml.gpus)
    assert agent.status()["caps_applied"] == 1


async def test_stopping_during_a_flood_of_caps_leaves_every_gpu_restored(broker) -> None:
    # commands keep arriving while serve stops: none may land after the GPUs were put back
    nvml = two_gpus()
    for g in nvml.gpus:
        g.delay_s["nvmlDeviceGetPowerManagementLimit"] = 0.002  # reads hold the rack a while
    prefix = f"ems/test{free_port()}"
    cfg = agent_config(broker.url, prefix)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(cfg, open_gpus(nvml), client_kwargs(cfg.mqtt, identifier=cfg.client_id), stop))

    stopped = asyncio.Event()

    async def flood() -> None:  # bounded, and ended by a flag: aiomqtt's publish can swallow a cancel
        async with aiomqtt.Client(broker.host, broker.port) as peer:
            for k in range(100_000):
                if stopped.is_set():
                    return
                await peer.publish(rp.cap_topic(prefix, RACK), rp.encode_cap(1_500.0 + 200.0 * (k % 2), k))
                await asyncio.sleep(0)

    flooding = asyncio.create_task(flood())
    try:
        await wait_for(lambda: nvml.calls.count("nvmlDeviceSetPowerManagementLimit") > 20)
        stop.set()
        agent = await asyncio.wait_for(task, 10)
    finally:
        stopped.set()
        await asyncio.wait_for(flooding, 10)
    assert [g.limit_mw for g in nvml.gpus] == [700_000, 700_000]
    assert agent.status()["caps_applied"] > 10  # the flood did reach the GPUs until the stop


# --- the command, as a person runs it -------------------------------------------------------------
async def _ems(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "ems.cli", *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.skipif(Path("/dev/nvidiactl").exists(), reason="this machine has an NVIDIA driver")
async def test_without_a_gpu_the_command_refuses_to_start(broker, tmp_path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"rack_id": RACK, "mqtt": {"url": broker.url}}))
    code, err = await _ems("agent", "--config", str(path))
    assert code == 2
    assert err.startswith("ems agent: no NVIDIA GPU here (NVML: ")
    assert err.rstrip().endswith("the agent runs on GPU nodes") and err.count("\n") == 1
    assert "Traceback" not in err


async def test_a_bad_agent_file_names_the_field(tmp_path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"rack_id": "rack7", "telemetry_period_s": 0}))
    code, err = await _ems("agent", "--config", str(path))
    assert code == 2
    assert "rack_id" in err and "telemetry_period_s" in err
    assert "Traceback" not in err
