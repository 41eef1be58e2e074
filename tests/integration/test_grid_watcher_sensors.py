"""The grid watcher against misbehaving sensors: real pymodbus servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from pymodbus.constants import ExcCodes
from structlog.testing import capture_logs

from drivers.modbus_device import ModbusDevice
from drivers.profile import load_profile
from ems.broker import free_port
from ems.config import FailoverConfig
from ems.failover.watcher import GridVerdict, GridWatcher
from sim_devices import registers as regs
from sim_devices.modbus_server import SimulatedModbusDevice
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


def _float_meter_profile(tmp_path: Path) -> Path:
    """A meter whose voltage and frequency are float32 (NaN is its "not available")."""
    data = yaml.safe_load(Path("config/profiles/meter_v1.yaml").read_text())
    for r in data["registers"]:
        if r["name"] == "voltage":
            r.update(address=310, type="float32", scale=1.0)
        elif r["name"] == "frequency":
            r.update(address=312, type="float32", scale=1.0)
    path = tmp_path / "meter_float.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.asynccontextmanager
async def _watching(meter: SimulatedModbusDevice) -> AsyncIterator[tuple[GridWatcher, list[GridVerdict]]]:
    """The watcher's own poll loop on the meter alone, with its verdicts collected."""
    changes: list[GridVerdict] = []

    async def on_change(v: GridVerdict) -> None:
        changes.append(v)

    device = ModbusDevice("meter/watch", meter.profile, "127.0.0.1", meter.port, 1, 0.5)
    w = GridWatcher(FailoverConfig(debounce_samples=2, detect_poll_s=0.002), None, device, on_change)
    task = asyncio.create_task(w.run())
    try:
        yield w, changes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        device.close()


async def test_a_meter_reporting_nan_is_no_evidence_of_a_loss(tmp_path) -> None:
    # Before: NaN is in no region of the ride-through curve: beyond it, the site islanded
    profile = load_profile(_float_meter_profile(tmp_path))
    meter = SimulatedModbusDevice("meter", profile, lambda: {"voltage": math.nan, "frequency": math.nan},
                                  regs.read_only, "127.0.0.1", free_port())
    await meter.start()
    try:
        async with _watching(meter) as (w, changes):
            await wait_for(lambda: w.samples >= 30)
    finally:
        await meter.stop()
    assert changes == [] and w.ok
    assert w.read_failures >= 30 and "meter/watch" in w.sensors_down


async def test_an_unreadable_sensor_is_logged_once_and_its_return_once() -> None:
    # Before: counted in read_failures only (not in the status), never logged: detection blind
    meter = SimulatedModbusDevice("meter", load_profile("meter_v1"),
                                  lambda: {"voltage": 230.0, "frequency": 50.0}, regs.read_only,
                                  "127.0.0.1", free_port())
    meter.fail_with = ExcCodes.DEVICE_FAILURE
    await meter.start()
    try:
        with capture_logs() as logs:
            async with _watching(meter) as (w, changes):
                await wait_for(lambda: w.samples >= 20)
                assert w.sensors_down == {
                    "meter/watch": "DeviceRejected: meter/watch: read answered exception code 4"}
                meter.fail_with = None
                await wait_for(lambda: not w.sensors_down)
                await wait_for(lambda: w.samples >= 40)
    finally:
        await meter.stop()
    events = [e["event"] for e in logs]
    assert events.count("grid sensor unreadable") == 1
    assert events.count("grid sensor readable again") == 1
    assert changes == [] and w.read_failures >= 20
