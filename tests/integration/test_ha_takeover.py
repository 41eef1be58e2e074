"""kill -9 of the active `ems run`: the standby takes over, within the PCS heartbeat timeout,
with the dead active's acknowledged events, in a newer epoch (real processes, real NATS)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ems.broker import Broker
from sim_devices.ha_pair import HaPair
from tests.nats_peer import shared_nats_or_skip

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(180)
async def test_kill_9_of_the_active_hands_over_to_the_standby(broker: Broker, tmp_path: Path) -> None:
    pair = HaPair(tmp_path, broker.url, shared_nats_or_skip())
    try:
        await pair.start()
        holder, epoch = await pair.wait_active_writing()
        standby = "b" if holder == "a" else "a"
        assert pair.count(standby, "ha_writing") == 0  # the standby reads and decides, and writes nothing
        for _ in range(2):  # and back again: the killed one returns as the standby
            kill = await pair.kill_active()
            got = await pair.takeover(kill)
            assert got is not None, "no takeover"
            _seconds, lost = got  # how fast is the benchmark's; here: no PCS fell back (below)
            assert lost == 0 and kill.acknowledged
            await pair.restart(kill.holder)
        new_holder, new_epoch = await pair.wait_active_writing()
        assert new_epoch > epoch and new_holder == holder
        assert pair.two_writer_epochs() == 0
    finally:
        truth = await pair.stop()
    assert truth["heartbeat_timeouts"] == 0


@pytest.mark.timeout(180)
async def test_the_active_machine_cut_off_the_network_is_fenced_and_the_standby_takes_over(tmp_path: Path) -> None:
    """Each controller in its own network namespace; the active's link to the bridge goes down
    (its NATS, broker, devices and peer all gone at once). It stops writing before the standby
    starts, the standby takes over before any PCS falls back, and when the link returns the old
    active comes back as the standby (no epoch with two writers)."""
    from ems.broker import free_port, mosquitto
    from sim_devices.nats_server import NatsServer, nats_binary
    from sim_devices.netns import NoNetns, PairNetwork

    if nats_binary() is None:
        pytest.skip("nats-server is not installed")
    try:
        net = PairNetwork(("a", "b")).up()
    except NoNetns as exc:
        pytest.skip(f"no network namespaces here: {exc}")
    nats_server = NatsServer(tmp_path / "nats", host=net.host_ip)
    try:
        nats_server.start()
        async with mosquitto(free_port(), host=net.host_ip) as broker:
            (tmp_path / "pair").mkdir()
            pair = HaPair(tmp_path / "pair", broker.url, nats_server.url, network=net)
            try:
                await pair.start()
                kill = await pair.cut_active(net.cut)
                got = await pair.takeover(kill)
                assert got is not None, "no takeover"
                assert got[1] == 0 and await pair.fenced_before(kill)
                net.heal(kill.holder)
                await asyncio.sleep(3.0)  # back on the network: it finds the lease taken and stays standby
                holder, epoch = await pair.wait_active_writing()
                assert holder != kill.holder and epoch > kill.epoch
                assert pair.two_writer_epochs() == 0
            finally:
                truth = await pair.stop()
            assert truth["heartbeat_timeouts"] == 0
    finally:
        nats_server.stop()
        net.down()
