"""kill -9 of the active `ems run`: the standby takes over, within the PCS heartbeat timeout,
with the dead active's acknowledged events, in a newer epoch (real processes, real NATS)."""

from __future__ import annotations

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
