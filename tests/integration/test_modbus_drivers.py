"""Drivers against real pymodbus servers on loopback, serving the plant through profiles."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pymodbus.constants import ExcCodes

from drivers.bess import BmsDriver, MeterDriver, PcsDriver
from drivers.errors import (
    DeviceRejected,
    DeviceUnavailable,
    RegisterRangeError,
    RegisterWriteForbidden,
)
from drivers.modbus_device import ModbusDevice
from drivers.profile import load_profile
from ems.broker import free_port
from ems.model.readings import PcsMode
from plant.config import PlantConfig, SimBessConfig
from plant.plant import MeterState, Plant
from sim_devices import registers as regs
from sim_devices.modbus_server import SimulatedModbusDevice

pytestmark = pytest.mark.integration


@pytest.fixture
async def unit_servers():
    plant = Plant(PlantConfig(bess=[SimBessConfig(initial_soc=0.42, rated_power_w=750_000)]), ["u1"],
                  ["row01-rack01"], ["row01"], 40_000.0)
    unit = plant.units["u1"]
    unit.power_w = -123_400.0
    bms_p, pcs_p = load_profile("bms_v1"), load_profile("pcs_v1")
    bms = SimulatedModbusDevice("u1.bms", bms_p, lambda: regs.bms_values(unit, bms_p),
                                regs.read_only, "127.0.0.1", free_port())
    pcs = SimulatedModbusDevice("u1.pcs", pcs_p, lambda: regs.pcs_values(unit, pcs_p),
                                regs.pcs_write(plant, unit, pcs_p, time.monotonic), "127.0.0.1", free_port())
    await bms.start()
    await pcs.start()
    yield unit, bms, pcs
    await bms.stop()
    await pcs.stop()


def _client(server: SimulatedModbusDevice) -> ModbusDevice:
    return ModbusDevice(server.name, server.profile, server.host, server.port, timeout_s=0.5)


async def test_bms_and_pcs_read_in_si_units(unit_servers) -> None:
    unit, bms_srv, pcs_srv = unit_servers
    bms = await BmsDriver(_client(bms_srv)).read(now_s=5.0)
    assert bms.soc == pytest.approx(0.42, abs=1e-4)
    assert bms.max_discharge_w == pytest.approx(unit.allowed_discharge_w(), abs=100)
    assert bms.capacity_wh == pytest.approx(unit.capacity_wh, abs=100)
    assert bms.read_at_s == 5.0
    pcs = await PcsDriver(_client(pcs_srv)).read(now_s=5.0)
    assert pcs.power_w == pytest.approx(-123_400.0, abs=100)  # signed int32, 0.1 kW steps
    assert pcs.rated_power_w == pytest.approx(750_000)
    assert pcs.mode is PcsMode.STANDBY and pcs.grid_ok


async def test_setpoint_mode_and_heartbeat_reach_the_plant(unit_servers) -> None:
    unit, _, pcs_srv = unit_servers
    pcs = PcsDriver(_client(pcs_srv))
    await pcs.set_mode(PcsMode.GRID_FOLLOWING)
    await pcs.set_active_power_w(-250_000.0)
    await pcs.beat(7)
    assert unit.mode is PcsMode.GRID_FOLLOWING
    assert unit.setpoint_w == pytest.approx(-250_000.0)
    assert unit.heartbeat == 7
    assert [w.register for w in pcs_srv.writes] == ["mode_command", "active_power_setpoint", "heartbeat"]


async def test_forbidden_writes_are_refused_before_sending(unit_servers) -> None:
    _, _, pcs_srv = unit_servers
    dev = _client(pcs_srv)
    with pytest.raises(RegisterWriteForbidden):
        await dev.write_si("active_power", 1000.0)
    with pytest.raises(RegisterRangeError):
        await dev.write_si("active_power_setpoint", 200e6)  # beyond the profile's max
    assert pcs_srv.writes == [] and dev.requests == 0


async def test_exception_response_is_device_rejected(unit_servers) -> None:
    _, bms_srv, _ = unit_servers
    bms_srv.fail_with = ExcCodes.DEVICE_BUSY
    with pytest.raises(DeviceRejected):
        await BmsDriver(_client(bms_srv)).read(0.0)


async def test_device_down_then_back(unit_servers) -> None:
    _, bms_srv, _ = unit_servers
    driver = BmsDriver(_client(bms_srv))
    await driver.read(0.0)
    await bms_srv.stop()
    with pytest.raises(DeviceUnavailable):
        await driver.read(0.0)
    await bms_srv.start()
    await asyncio.sleep(0.25)  # past the first reconnect backoff
    for _ in range(20):
        try:
            reading = await driver.read(1.0)
            break
        except DeviceUnavailable:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("driver did not reconnect")
    assert reading.read_at_s == 1.0


async def test_meter_reads_signed_power() -> None:
    meter = MeterState(grid_power_w=-55_500.0, import_wh=1234_500.0)
    srv = SimulatedModbusDevice("meter", load_profile("meter_v1"), lambda: regs.meter_values(meter),
                                regs.read_only, "127.0.0.1", free_port())
    await srv.start()
    try:
        r = await MeterDriver(_client(srv)).read(0.0)
    finally:
        await srv.stop()
    assert r.grid_power_w == pytest.approx(-55_500.0, abs=100)
    assert r.import_wh == pytest.approx(1_234_500.0, abs=100)
    assert r.frequency_hz == pytest.approx(50.0)


async def test_plain_modbus_client_can_read_the_documented_map(unit_servers) -> None:
    """Any client (mbpoll, pymodbus.console) reads the map in docs: check one register raw."""
    from pymodbus.client import AsyncModbusTcpClient

    _unit, bms_srv, _ = unit_servers
    client = AsyncModbusTcpClient("127.0.0.1", port=bms_srv.port)
    await client.connect()
    try:
        rr = await client.read_holding_registers(100, count=1, device_id=1)  # soc, 0.01 %
    finally:
        client.close()
    assert rr.registers[0] == 4200


async def test_the_fast_loop_takes_a_float_registers_nan_for_a_failed_read_not_a_load(tmp_path) -> None:
    """A vendor's meter map with a float32 power: NaN or infinity read by the smoothing loop is a
    read that failed (MalformedData, counted by the loop, nothing written), as the period's meter
    reading refuses it; taken as the load it would make every later tick's state NaN."""
    from drivers.errors import MalformedData
    from ems.fast_power import fast_power
    from ems.topology import ModbusEndpoint

    text = (Path(__file__).parents[2] / "config/profiles/meter_v1.yaml").read_text()
    float_map = tmp_path / "meter_float.yaml"
    float_map.write_text(text.replace("{name: active_power, address: 300, type: int32, scale: 0.1, unit: kW",
                                      "{name: active_power, address: 300, type: float32, scale: 1, unit: W"))
    profile = load_profile(float_map)
    assert profile.register("active_power").type.value == "float32"
    served = {"w": 0.0}

    def values() -> dict[str, float]:
        return {r.name: 0.0 for r in profile.registers} | {"active_power": served["w"]}

    srv = SimulatedModbusDevice("meter", profile, values, regs.read_only, "127.0.0.1", free_port())
    await srv.start()
    meter = fast_power("meter", ModbusEndpoint(port=srv.port, profile=str(float_map)), "meter")
    try:
        served["w"] = 812_500.0
        assert await meter.read_w() == 812_500.0
        for bad in (float("nan"), float("inf"), float("-inf")):
            served["w"] = bad
            with pytest.raises(MalformedData, match="not finite"):
                await meter.read_w()
        served["w"] = -1_250.0
        assert await meter.read_w() == -1_250.0  # the next good read is taken again
    finally:
        meter.close()
        await srv.stop()
