"""Every device profile through the simulator's encoder and the drivers' decoders: plant state
-> profile values -> registers -> SI values -> reading, and a command the other way.

Each profile of config/profiles/ runs, and a remapped copy of it (other enum codes, other bit
positions): if a code or a bit were hard-coded anywhere on the way, the copy would not survive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from drivers.bess import bms_reading, genset_reading, grid_ok, meter_reading, pcs_reading, pv_reading
from drivers.profile import PROFILE_DIR, DeviceProfile, RegisterSpec, device_kinds, load_profile
from ems.model.readings import GensetState, PcsMode
from plant.battery import BMS_ALARMS, PCS_FAULTS
from plant.config import PlantConfig, SimBessConfig, SimFillerConfig, SimGensetConfig
from plant.filler import FillerLoad
from plant.plant import MeterState, Plant
from sim_devices import registers as regs

NOW_S = 42.0


def _remapped(p: DeviceProfile) -> DeviceProfile:
    """The same device with its enum codes and bit positions moved (codes 10, 13, ... in
    reverse order; bits counted from the top of the register)."""
    def move(r: RegisterSpec) -> dict[str, Any]:
        d = r.model_dump()
        if r.enum is not None:
            d |= {"enum": {10 + 3 * i: n for i, n in enumerate(reversed(r.enum.values()))}, "min": None, "max": None}
        if r.bits is not None:
            d["bits"] = {16 * r.width - 1 - b: n for b, n in r.bits.items()}
        return d

    return DeviceProfile.model_validate({**p.model_dump(), "name": f"{p.name}-remapped",
                                         "registers": [move(r) for r in p.registers]})


PROFILES = [load_profile(path) for path in sorted(PROFILE_DIR.glob("*.yaml"))]
ALL = PROFILES + [_remapped(p) for p in PROFILES]


def _through_the_wire(profile: DeviceProfile, values: dict[str, float]) -> dict[str, float]:
    """What a driver gets from a block read of what the simulator serves."""
    return profile.to_si(profile.decode_block(profile.encode_block(values)))


def _step(profile: DeviceProfile, name: str) -> float:
    """One count of the register, in SI: the most a value may move on the wire."""
    r = profile.register(name)
    return abs(r.scale) * r.si_factor


def _plant() -> Plant:
    cfg = PlantConfig(bess=[SimBessConfig(initial_soc=0.42, rated_power_w=750_000, heartbeat_timeout_s=12.5)],
                      genset=SimGensetConfig())
    return Plant(cfg, ["u1"], ["row01-rack01"], ["row01"], 40_000.0)


def _bms(profile: DeviceProfile) -> None:
    unit = _plant().units["u1"]
    seen: set[str] = set()
    for soc, temperature_c, power_w in ((0.42, 25.0, -123_400.0), (0.05, 50.0, 300_000.0), (0.95, 30.0, 0.0)):
        unit.soc, unit.temperature_c, unit.power_w = soc, temperature_c, power_w
        r = bms_reading(_through_the_wire(profile, regs.bms_values(unit, profile)), NOW_S, profile)
        cell_min, cell_max = unit.cell_voltages_v()
        assert r.soc == pytest.approx(soc, abs=_step(profile, "soc"))
        assert r.soh == pytest.approx(unit.cfg.soh, abs=_step(profile, "soh"))
        assert r.voltage_v == pytest.approx(unit.voltage_v(), abs=_step(profile, "voltage"))
        assert r.current_a == pytest.approx(unit.current_a(), abs=_step(profile, "current"))
        assert r.temperature_c == pytest.approx(temperature_c, abs=_step(profile, "temperature"))
        assert r.cell_voltage_min_v == pytest.approx(cell_min, abs=_step(profile, "cell_voltage_min"))
        assert r.cell_voltage_max_v == pytest.approx(cell_max, abs=_step(profile, "cell_voltage_max"))
        assert r.max_charge_w == pytest.approx(unit.allowed_charge_w(), abs=_step(profile, "max_charge_power"))
        assert r.max_discharge_w == pytest.approx(unit.allowed_discharge_w(), abs=_step(profile, "max_discharge_power"))
        assert r.capacity_wh == pytest.approx(unit.capacity_wh, abs=_step(profile, "capacity"))
        assert set(r.alarms) == set(unit.alarms()) and not r.fault
        assert r.read_at_s == NOW_S
        seen |= set(r.alarms)
    assert seen == set(BMS_ALARMS)  # every alarm the plant raises went through
    # the plant raises no BMS fault; a device does, on the bit its profile names `fault`
    alarms = profile.register("alarms")
    v = _through_the_wire(profile, regs.bms_values(unit, profile) | {"alarms": float(alarms.bits_value(["fault"]))})
    assert bms_reading(v, NOW_S, profile).fault


def _pcs(profile: DeviceProfile) -> None:
    plant = _plant()
    unit = plant.units["u1"]
    unit.power_w, unit.setpoint_w = -123_400.0, -150_000.0
    write = regs.pcs_write(plant, unit, profile, lambda: 1.0)
    mode_command = profile.register("mode_command")
    for mode in PcsMode:
        # the code a driver sends for the mode (drivers/bess.py PcsDriver.set_mode), as the server decodes it
        value = mode_command.decode(mode_command.encode(float(mode_command.enum_code(mode))))
        mode_command.check_writable(value)
        write("mode_command", value)
        assert unit.mode_command is mode
        for grid, faults in ((True, ()), (False, ("overload_trip",)), (True, PCS_FAULTS)):
            unit.grid_ok, unit.faults = grid, faults
            r = pcs_reading(_through_the_wire(profile, regs.pcs_values(unit, profile)), NOW_S, profile)
            assert r.mode_command is mode and r.mode is unit.mode
            assert r.grid_ok is grid and set(r.faults) == set(faults) and r.fault is bool(faults)
            assert r.power_w == pytest.approx(unit.power_w, abs=_step(profile, "active_power"))
            assert r.setpoint_w == pytest.approx(unit.setpoint_w, abs=_step(profile, "active_power_setpoint"))
            assert r.rated_power_w == pytest.approx(750_000.0, abs=_step(profile, "rated_power"))
            assert r.heartbeat_timeout_s == pytest.approx(12.5, abs=_step(profile, "heartbeat_timeout"))
            assert r.ramp_w_per_s == pytest.approx(unit.cfg.ramp_w_per_s, abs=_step(profile, "ramp_rate"))
        unit.faults = ()
    # the failover watcher reads the grid status alone, by the same enum
    status = profile.register("grid_status")
    assert grid_ok(profile, float(status.enum_code("ok"))) and not grid_ok(profile, float(status.enum_code("down")))


def _meter(profile: DeviceProfile) -> None:
    meter = MeterState(grid_power_w=-55_500.0, voltage_v=231.4, frequency_hz=49.987, import_wh=1_234_500.0,
                       export_wh=98_700.0)
    r = meter_reading(_through_the_wire(profile, regs.meter_values(meter)), NOW_S)
    assert r.grid_power_w == pytest.approx(meter.grid_power_w, abs=_step(profile, "active_power"))
    assert r.voltage_v == pytest.approx(meter.voltage_v, abs=_step(profile, "voltage"))
    assert r.frequency_hz == pytest.approx(meter.frequency_hz, abs=_step(profile, "frequency"))
    assert r.import_wh == pytest.approx(meter.import_wh, abs=_step(profile, "import_energy"))
    assert r.export_wh == pytest.approx(meter.export_wh, abs=_step(profile, "export_energy"))


def _genset(profile: DeviceProfile) -> None:
    plant = _plant()
    genset = plant.genset
    assert genset is not None
    genset.power_w, genset.charge_request_w = 412_300.0, 50_000.0
    genset.fuel_l, genset.run_s, genset.starts = 12.3, 99.9, 4
    for state in GensetState:
        genset.state = state
        r = genset_reading(_through_the_wire(profile, regs.genset_values(genset, profile)), NOW_S, profile)
        assert r.state is state
        assert r.power_w == pytest.approx(genset.power_w, abs=_step(profile, "active_power"))
        assert r.rated_power_w == pytest.approx(genset.cfg.rated_power_w, abs=_step(profile, "rated_power"))
        assert r.charge_request_w == pytest.approx(50_000.0, abs=_step(profile, "charge_power_setpoint"))
        assert r.fuel_used_l == pytest.approx(12.3, abs=_step(profile, "fuel_used"))
        assert r.run_s == pytest.approx(99.9, abs=_step(profile, "run_time"))
        assert r.starts == 4
    # start and stop, by the codes the profile gives them (drivers/bess.py GensetDriver)
    genset.state = GensetState.STOPPED
    write = regs.genset_write(plant, "genset", profile, lambda: 5.0)
    run_command = profile.register("run_command")
    write("run_command", float(run_command.enum_code("start")))
    assert genset.state is GensetState.STARTING
    assert regs.genset_values(genset, profile)["run_command"] == run_command.enum_code("start")
    write("run_command", float(run_command.enum_code("stop")))
    assert genset.state is GensetState.COOLDOWN


def _filler(profile: DeviceProfile) -> None:
    filler = FillerLoad(SimFillerConfig(rated_power_w=600_000, response_s=0.5))
    write = regs.filler_write(filler, lambda: 5.0)
    write("power_setpoint", _through_the_wire(profile, {"power_setpoint": 123.4})["power_setpoint"]
          / profile.register("power_setpoint").si_factor)
    assert filler.setpoint_w == pytest.approx(123_400.0, abs=_step(profile, "power_setpoint"))
    filler.step(5.6, 0.1)  # after its response time it draws it
    si = _through_the_wire(profile, regs.filler_values(filler))
    assert si["active_power"] == pytest.approx(123_400.0, abs=_step(profile, "active_power"))
    assert si["rated_power"] == pytest.approx(600_000.0, abs=_step(profile, "rated_power"))


def _pv(profile: DeviceProfile) -> None:
    plant = _plant()
    plant.pv_w = 234_500.0
    si = _through_the_wire(profile, regs.pv_values(plant, 300_000.0))
    r = pv_reading(si, NOW_S)
    assert r.power_w == pytest.approx(234_500.0, abs=_step(profile, "active_power"))
    assert r.rated_power_w == pytest.approx(300_000.0, abs=_step(profile, "rated_power")) and r.limit_w is None
    write = regs.pv_write(plant, 300_000.0)
    write("power_limit", _through_the_wire(profile, {"power_limit": 150.0})["power_limit"]
          / profile.register("power_limit").si_factor)
    assert plant.pv_limit_w == pytest.approx(150_000.0, abs=_step(profile, "power_limit"))
    r = pv_reading(_through_the_wire(profile, regs.pv_values(plant, 300_000.0)), NOW_S)
    assert r.limit_w == pytest.approx(150_000.0, abs=_step(profile, "power_limit"))
    write("power_limit", 300.0)  # at the rating: no limit
    assert plant.pv_limit_w is None


ROUND_TRIPS: dict[str, Callable[[DeviceProfile], None]] = {"bms": _bms, "pcs": _pcs, "meter": _meter, "genset": _genset,
                                                           "filler": _filler, "pv": _pv}


def test_every_kind_has_a_round_trip() -> None:
    assert set(device_kinds().kinds) == set(ROUND_TRIPS)
    assert {p.kind for p in PROFILES} == set(ROUND_TRIPS)


@pytest.mark.parametrize("profile", ALL, ids=lambda p: p.name)
def test_plant_state_survives_the_profile(profile: DeviceProfile) -> None:
    regs.check_servable(profile)
    ROUND_TRIPS[profile.kind](profile)


def test_the_remapped_copies_are_different_on_the_wire() -> None:
    """The copies prove something only if their codes and bits differ from the originals'."""
    for p in PROFILES:
        moved = _remapped(p)
        for r in p.registers:
            if r.enum is not None or r.bits:
                other = moved.register(r.name)
                assert (other.enum, other.bits) != (r.enum, r.bits), (p.name, r.name)
