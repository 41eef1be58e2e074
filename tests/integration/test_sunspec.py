"""SunSpec drivers against the simulator's SunSpec servers (real pymodbus on loopback), and
the simulator read by a third-party SunSpec client (pysunspec2's own)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from drivers.errors import DeviceRejected, MalformedData, NotSupported, RegisterRangeError, RegisterWriteForbidden
from drivers.modbus_device import ModbusDevice
from drivers.profile import load_profile
from drivers.sunspec_device import NotSunSpec, SunSpecDevice
from drivers.sunspec_drivers import SunSpecBmsDriver, SunSpecMeterDriver, SunSpecPcsDriver, sunspec_device
from drivers.sunspec_profile import load_sunspec_profile
from ems.broker import free_port
from ems.model.readings import PcsMode
from plant.config import PlantConfig, SimBessConfig
from plant.plant import Plant
from sim_devices import registers as regs
from sim_devices.modbus_server import SimulatedModbusDevice
from sim_devices.sunspec_plant import METER_ODOMETER_WH, SunSpecBms, SunSpecPcs, meter_values
from sim_devices.sunspec_server import SimulatedSunSpecDevice

pytestmark = pytest.mark.integration


class FakeTime:
    """The simulated devices' clock, moved by the test (no sleeping for a timer)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Site:
    plant: Plant
    clock: FakeTime
    pcs: SunSpecPcs
    pcs_srv: SimulatedSunSpecDevice
    bms_srv: SimulatedSunSpecDevice
    meter_srv: SimulatedSunSpecDevice


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    plant = Plant(PlantConfig(bess=[SimBessConfig(initial_soc=0.42, rated_power_w=750_000, capacity_wh=1_500_000,
                                                  heartbeat_timeout_s=0)]),
                  ["u1"], ["row01-rack01"], ["row01"], 40_000.0)
    unit = plant.units["u1"]
    unit.power_w = -123_400.0
    plant.meter.grid_power_w, plant.meter.voltage_v, plant.meter.frequency_hz = 812_345.0, 231.0, 50.02
    plant.meter.import_wh, plant.meter.export_wh = 5_000.0, 7.0
    clock = FakeTime()
    pcs = SunSpecPcs(plant, unit, clock, lambda: 50.02)
    bms = SunSpecBms(unit)
    host = "127.0.0.1"
    pcs_srv = SimulatedSunSpecDevice("u1.pcs", [1, 701, 702, 704], pcs.values, pcs.write, host, free_port())
    bms_srv = SimulatedSunSpecDevice("u1.bms", [1, 802, 803, 713], bms.values, bms.write, host, free_port(),
                                     base_address=50000)
    meter_srv = SimulatedSunSpecDevice("meter", [1, 203], lambda: meter_values(plant.meter),
                                       _read_only, host, free_port())
    for s in (pcs_srv, bms_srv, meter_srv):
        await s.start()
    yield Site(plant, clock, pcs, pcs_srv, bms_srv, meter_srv)
    for s in (pcs_srv, bms_srv, meter_srv):
        await s.stop()


def _read_only(model: int, point: str, value: float) -> None:
    raise ValueError("read-only device")


def _pcs(srv: SimulatedSunSpecDevice, profile: str = "sunspec_pcs") -> SunSpecPcsDriver:
    p = load_sunspec_profile(profile)
    return SunSpecPcsDriver(sunspec_device(srv.name, p, srv.host, srv.port), p)


async def test_discovery_finds_suns_at_40000_and_50000_and_lists_the_models(site: Site) -> None:
    pcs = SunSpecDevice("pcs", site.pcs_srv.host, site.pcs_srv.port)
    assert [m.model_id for m in await pcs.discover()] == [1, 701, 702, 704]
    assert pcs.models[1].address == 40002
    bms = SunSpecDevice("bms", site.bms_srv.host, site.bms_srv.port)
    assert [m.model_id for m in await bms.discover()] == [1, 802, 803, 713]
    assert bms.models[1].address == 50002
    common = await bms.read_model(1)
    assert common["Mn"] == "ems-sim" and common["SN"] == "u1"
    pcs.close()
    bms.close()


async def test_discovery_finds_suns_at_address_0(site: Site) -> None:
    srv = SimulatedSunSpecDevice("meter0", [1, 203], lambda: meter_values(site.plant.meter), _read_only,
                                 "127.0.0.1", free_port(), base_address=0)
    await srv.start()
    try:
        dev = SunSpecDevice("meter0", srv.host, srv.port)  # looks at 40000 first, then 0
        assert [m.model_id for m in await dev.discover()] == [1, 203] and dev.models[1].address == 2
        meter = SunSpecMeterDriver(dev, load_sunspec_profile("sunspec_meter"))
        assert (await meter.read(0.0)).grid_power_w == pytest.approx(812_345.0, abs=100.0)
        dev.close()
    finally:
        await srv.stop()


async def test_a_reference_map_device_is_not_sunspec() -> None:
    profile = load_profile("meter_v1")
    srv = SimulatedModbusDevice("meter", profile, lambda: {r.name: 0.0 for r in profile.registers},
                                regs.read_only, "127.0.0.1", free_port())
    await srv.start()
    try:
        dev = SunSpecDevice("meter", srv.host, srv.port)
        with pytest.raises(NotSunSpec):
            await dev.discover()
        dev.close()
    finally:
        await srv.stop()


async def test_pcs_reads_701_702_704_with_scale_factors(site: Site) -> None:
    reading = await _pcs(site.pcs_srv).read(now_s=5.0)
    assert reading.power_w == pytest.approx(-123_400.0)  # W_SF = 2: 100 W steps
    assert reading.rated_power_w == pytest.approx(750_000.0)
    assert reading.mode is PcsMode.STANDBY and reading.mode_command is PcsMode.STANDBY
    assert reading.grid_ok and not reading.fault
    assert reading.read_at_s == 5.0


async def test_bms_reads_802_803_with_scale_factors(site: Site) -> None:
    unit = site.plant.units["u1"]
    p = load_sunspec_profile("sunspec_bms")
    bms = SunSpecBmsDriver(sunspec_device("u1.bms", p, site.bms_srv.host, site.bms_srv.port), p)
    reading = await bms.read(now_s=1.0)
    assert reading.soc == pytest.approx(0.42, abs=1e-3)  # SoC_SF = -1
    assert reading.soh == pytest.approx(0.98, abs=1e-3)
    assert reading.capacity_wh == pytest.approx(1_500_000 * 0.98, rel=1e-3)
    assert reading.max_discharge_w == pytest.approx(unit.allowed_discharge_w(), abs=100)
    assert reading.temperature_c == pytest.approx(unit.temperature_c, abs=0.1)
    assert reading.cell_voltage_min_v <= reading.cell_voltage_max_v
    await bms.beat(41)
    assert site.bms_srv.writes[-1].register == "802.CtrlHb" and site.bms_srv.writes[-1].value == 41


async def test_meter_reads_203_with_scale_factors(site: Site) -> None:
    p = load_sunspec_profile("sunspec_meter")
    meter = SunSpecMeterDriver(sunspec_device("meter", p, site.meter_srv.host, site.meter_srv.port), p)
    r = await meter.read(now_s=2.0)
    assert r.grid_power_w == pytest.approx(812_300.0)  # W_SF = 2
    assert r.voltage_v == pytest.approx(231.0) and r.frequency_hz == pytest.approx(50.02)
    assert r.import_wh == METER_ODOMETER_WH + 5_000.0 and r.export_wh == METER_ODOMETER_WH + 7.0


async def test_unimplemented_values_are_missing_never_numbers(site: Site) -> None:
    dev = SunSpecDevice("pcs", site.pcs_srv.host, site.pcs_srv.port)
    m701 = await dev.read_model(701)
    assert m701["PF"] is None  # int16 0x8000
    assert m701["TmpAmb"] is None  # int16 with its scale factor implemented, value not
    assert m701["TotWhInj"] is None  # uint64 whose scale factor is not implemented
    assert m701["W"] is not None
    m702 = await dev.read_model(702)
    assert m702["VAMaxRtg"] is None  # uint16 0xFFFF
    assert m702["NorOpCatRtg"] is None  # enum16 0xFFFF
    dev.close()


async def test_a_required_point_not_implemented_fails_the_read(site: Site) -> None:
    values = site.pcs.values

    def without_w() -> dict[int, dict[str, object]]:
        v = values()
        v[701]["W"] = None
        return v  # type: ignore[return-value]

    site.pcs_srv.read_values = without_w  # type: ignore[assignment]
    with pytest.raises(MalformedData, match=r"701\.W is not implemented"):
        await _pcs(site.pcs_srv).read(now_s=0.0)


async def test_setpoint_mode_and_heartbeat_reach_the_plant_with_fc16(site: Site) -> None:
    unit = site.plant.units["u1"]
    pcs = _pcs(site.pcs_srv)
    await pcs.set_mode(PcsMode.GRID_FOLLOWING)
    await pcs.set_active_power_w(-250_000.0)
    await pcs.beat(1)
    assert unit.mode is PcsMode.GRID_FOLLOWING
    assert unit.setpoint_w == pytest.approx(-250_000.0)
    reading = await pcs.read(now_s=0.0)
    assert reading.setpoint_w == pytest.approx(-250_000.0)
    assert reading.mode_command is PcsMode.GRID_FOLLOWING and reading.mode is PcsMode.GRID_FOLLOWING
    assert reading.heartbeat_timeout_s == 10.0
    assert [w.register for w in site.pcs_srv.writes] == [
        "704.WSetMod", "704.WSetRvrt", "704.WSetEna", "704.WSet", "704.WSetRvrtTms"]


async def test_a_device_that_takes_only_fc06_gets_single_register_writes(site: Site) -> None:
    unit = site.plant.units["u1"]
    site.pcs_srv.accept_codes = frozenset({6})
    with pytest.raises(DeviceRejected):  # 0x10 answered ILLEGAL_FUNCTION
        await _pcs(site.pcs_srv).set_active_power_w(100_000.0)
    pcs = _pcs(site.pcs_srv, "sunspec_pcs_fc06")
    await pcs.set_mode(PcsMode.GRID_FOLLOWING)
    await pcs.set_active_power_w(-654_321.0)  # int32 WSet: two 0x06 requests, applied on the second
    assert unit.setpoint_w == pytest.approx(-654_321.0)
    assert (await pcs.read(now_s=0.0)).setpoint_w == pytest.approx(-654_321.0)


async def test_a_device_that_takes_only_fc16_refuses_fc06(site: Site) -> None:
    site.pcs_srv.accept_codes = frozenset({16})
    with pytest.raises(DeviceRejected):
        await _pcs(site.pcs_srv, "sunspec_pcs_fc06").set_mode(PcsMode.GRID_FOLLOWING)
    await _pcs(site.pcs_srv).set_mode(PcsMode.GRID_FOLLOWING)
    assert site.plant.units["u1"].mode is PcsMode.GRID_FOLLOWING


async def test_reversion_timer_expiry_reverts_the_setpoint(site: Site) -> None:
    unit = site.plant.units["u1"]
    pcs = _pcs(site.pcs_srv)
    await pcs.set_mode(PcsMode.GRID_FOLLOWING)
    await pcs.set_active_power_w(400_000.0)
    await pcs.beat(1)
    site.clock.t += 9.0
    r = await pcs.read(now_s=0.0)
    assert r.setpoint_w == pytest.approx(400_000.0) and r.heartbeat == 1  # 1 s left
    await pcs.beat(2)  # the heartbeat restarts the timer
    site.clock.t += 9.0
    assert (await pcs.read(now_s=0.0)).setpoint_w == pytest.approx(400_000.0)
    site.clock.t += 1.5  # no heartbeat for longer than WSetRvrtTms: the device reverts to WSetRvrt
    r = await pcs.read(now_s=0.0)
    assert r.setpoint_w == 0.0 and r.heartbeat == 0
    assert unit.setpoint_w == 0.0 and site.pcs.reversions == 1


async def test_writes_refused_before_sending_and_by_the_device(site: Site) -> None:
    dev = SunSpecDevice("pcs", site.pcs_srv.host, site.pcs_srv.port)
    with pytest.raises(RegisterWriteForbidden):
        await dev.write_point(701, "W", 5.0)
    with pytest.raises(RegisterRangeError):
        await dev.write_point(704, "WSetEna", 7)
    with pytest.raises(RegisterRangeError):
        await dev.write_point(704, "WSet", 1e12)
    with pytest.raises(NotSupported):
        await dev.write_point(704, "WMaxLimPct", 50.0)  # its scale factor is not implemented here
    before = len(site.pcs_srv.writes)
    # the device itself: a read-only point is an illegal address, a bad enum code an illegal value
    with pytest.raises(DeviceRejected, match="code 2"):
        await dev.write_words(dev.models[701].address + 10, [1])
    with pytest.raises(DeviceRejected, match="code 3"):
        await dev.write_words(dev.models[704].address + 2 + 14, [9])  # WSetEna
    assert len(site.pcs_srv.writes) == before
    dev.close()


async def test_grid_forming_is_not_supported(site: Site) -> None:
    with pytest.raises(NotSupported):
        await _pcs(site.pcs_srv).set_mode(PcsMode.GRID_FORMING)


async def test_a_third_party_sunspec_client_reads_the_simulator(site: Site) -> None:
    def scan(port: int) -> dict[str, object]:
        d = SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=2)
        try:
            d.scan()
            out: dict[str, object] = {"models": sorted(k for k in d.models if isinstance(k, int))}
            if 701 in d.models:
                out["W"] = d.models[701][0].W.cvalue
                out["PF"] = d.models[701][0].PF.value
            if 802 in d.models:
                out["SoC"] = d.models[802][0].SoC.cvalue
            if 203 in d.models:
                out["Hz"] = d.models[203][0].Hz.cvalue
            return out
        finally:
            d.close()

    pcs = await asyncio.to_thread(scan, site.pcs_srv.port)
    assert pcs["models"] == [1, 701, 702, 704]
    assert pcs["W"] == pytest.approx(-123_400.0) and pcs["PF"] is None
    bms = await asyncio.to_thread(scan, site.bms_srv.port)
    assert bms["models"] == [1, 713, 802, 803] and bms["SoC"] == pytest.approx(42.0)
    meter = await asyncio.to_thread(scan, site.meter_srv.port)
    assert meter["models"] == [1, 203] and meter["Hz"] == pytest.approx(50.02)


async def test_the_reference_maps_still_work_through_the_shared_link() -> None:
    profile = load_profile("pcs_v1")
    plant = Plant(PlantConfig(bess=[SimBessConfig()]), ["u1"], ["row01-rack01"], ["row01"], 40_000.0)
    unit = plant.units["u1"]
    srv = SimulatedModbusDevice("u1.pcs", profile, lambda: regs.pcs_values(unit, profile),
                                regs.pcs_write(plant, unit, profile, lambda: 0.0), "127.0.0.1", free_port())
    await srv.start()
    try:
        dev = ModbusDevice("u1.pcs", profile, srv.host, srv.port)
        await dev.write_si("active_power_setpoint", 12_000.0)
        assert unit.setpoint_w == pytest.approx(12_000.0)
        dev.close()
    finally:
        await srv.stop()


async def test_scan_lists_models_and_points_and_writes_an_entry(site: Site, tmp_path) -> None:
    from ems.scan import EXIT_SUNSPEC, scan, write_entry

    code, lines, entry = await scan(site.pcs_srv.host, site.pcs_srv.port, 1)
    text = "\n".join(lines)
    assert code == EXIT_SUNSPEC
    assert "SunSpec at 40000, 4 models: 1 701 702 704" in text
    assert "  W                  -123400 W" in text  # scaled, in its unit
    assert "PF " not in text and "points not implemented" in text  # missing: counted, never a number
    assert entry is not None and entry["kind"] == "pcs" and entry["profile"] == "sunspec_pcs"
    out = tmp_path / "entry.yaml"
    write_entry(out, entry)
    assert "profile: sunspec_pcs" in out.read_text()
    code, lines, entry = await scan(site.bms_srv.host, site.bms_srv.port, 1, show_missing=True)
    assert "SunSpec at 50000" in lines[0] and entry is not None and entry["kind"] == "bms"
    assert any(line.startswith("  DoD ") and "(not implemented)" in line for line in lines)


async def test_scan_says_a_device_is_not_sunspec_or_unreachable() -> None:
    from ems.scan import EXIT_NOT_SUNSPEC, EXIT_UNREACHABLE, scan

    profile = load_profile("pcs_v1")
    srv = SimulatedModbusDevice("pcs", profile, lambda: {r.name: 0.0 for r in profile.registers},
                                regs.read_only, "127.0.0.1", free_port())
    await srv.start()
    try:
        code, lines, entry = await scan(srv.host, srv.port, 1)
        assert code == EXIT_NOT_SUNSPEC and "not a SunSpec device" in lines[0] and entry is None
    finally:
        await srv.stop()
    code, lines, _ = await scan("127.0.0.1", free_port(), 1, timeout_s=0.2)
    assert code == EXIT_UNREACHABLE and "cannot reach" in lines[0]


def test_scan_refuses_a_bad_target(capsys) -> None:
    from ems.cli import main

    assert main(["scan", "no-port-here"]) == 2
    assert "is not HOST:PORT" in capsys.readouterr().err


async def test_a_moved_map_is_malformed_once_then_found_again(site: Site) -> None:
    pcs = _pcs(site.pcs_srv)
    await pcs.read(now_s=0.0)
    await site.pcs_srv.stop()  # the device comes back with its models in another order (a firmware update)
    moved = SimulatedSunSpecDevice("u1.pcs", [1, 704, 702, 701], site.pcs.values, site.pcs.write,
                                   site.pcs_srv.host, site.pcs_srv.port)
    await moved.start()
    try:
        pcs.device.close()
        with pytest.raises(MalformedData):
            await pcs.read(now_s=1.0)
        assert pcs.device.malformed == 1
        assert (await pcs.read(now_s=2.0)).rated_power_w == pytest.approx(750_000.0)
    finally:
        await moved.stop()


@pytest.mark.parametrize("model_id", [201, 202, 203, 204])
async def test_every_meter_model_reads_with_its_scale_factors(site: Site, model_id: int) -> None:
    values = meter_values(site.plant.meter)[203]
    srv = SimulatedSunSpecDevice("meter", [1, model_id], lambda: {model_id: values}, _read_only,
                                 "127.0.0.1", free_port())
    await srv.start()
    try:
        p = load_sunspec_profile("sunspec_meter")
        meter = SunSpecMeterDriver(sunspec_device("meter", p, srv.host, srv.port), p)
        r = await meter.read(now_s=1.0)
        assert r.grid_power_w == pytest.approx(812_300.0) and r.frequency_hz == pytest.approx(50.02)
        assert r.import_wh == METER_ODOMETER_WH + 5_000.0 and r.average_w is None  # an average needs two reads
        site.plant.meter.import_wh += 250.0  # 250 Wh in 1 s of site time: 900 kW on average
        values.update(meter_values(site.plant.meter)[203])
        assert (await meter.read(now_s=2.0)).average_w == pytest.approx(900_000.0)
        meter.device.close()
    finally:
        await srv.stop()


async def test_713_storage_capacity_reads_with_its_scale_factors(site: Site) -> None:
    unit = site.plant.units["u1"]
    dev = SunSpecDevice("bms", site.bms_srv.host, site.bms_srv.port)
    v = await dev.read_model(713)
    assert v["WHRtg"] == pytest.approx(1_500_000.0)  # WH_SF = 3
    assert v["WHAvail"] == pytest.approx(0.42 * unit.capacity_wh, abs=1000)
    assert v["SoC"] == pytest.approx(42.0) and v["SoH"] == pytest.approx(98.0)  # Pct_SF = -1
    assert v["Sta"] == 0
    dev.close()
