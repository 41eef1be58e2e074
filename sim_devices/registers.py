"""The plant seen through device registers: state -> profile values, writes -> plant.

Values are in the profile's units (kW, %, ...), the same units a real device would put
on the wire, and the profile encodes them. What a value means on the wire is the
profile's too: a mode or state goes out as the code the profile gives its name, alarms
and faults as the bits the profile gives their names, and a written code comes back to
the plant as the name it stands for.
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.errors import ProfileError
from drivers.profile import DeviceProfile
from ems.model.readings import GensetState, PcsMode
from plant.battery import BMS_ALARMS, PCS_FAULTS, BessUnitModel
from plant.filler import FillerLoad
from plant.genset import GensetModel
from plant.plant import MeterState, Plant

NowFn = Callable[[], float]

# The names the plant puts in each register a profile must be able to encode, by kind
# (enum registers are covered by config/device-kinds.yaml; the bits the plant raises are
# the simulator's own need: a real device's profile need not name them).
_PLANT_BITS: dict[str, dict[str, tuple[str, ...]]] = {"bms": {"alarms": BMS_ALARMS}, "pcs": {"fault": PCS_FAULTS}}


def check_servable(profile: DeviceProfile) -> None:
    """ProfileError naming the register and bit if `profile` cannot encode every alarm or
    fault the plant may raise (checked when a simulated device is set up, not at a read)."""
    for register, names in _PLANT_BITS.get(profile.kind, {}).items():
        try:
            profile.register(register).bits_value(names)
        except ProfileError as exc:
            raise ProfileError(f"profile {profile.name} cannot serve the simulated {profile.kind}: {exc}") from exc


def bms_values(unit: BessUnitModel, profile: DeviceProfile) -> dict[str, float]:
    cell_min, cell_max = unit.cell_voltages_v()
    return {
        "soc": unit.soc * 100.0,
        "soh": unit.cfg.soh * 100.0,
        "voltage": unit.voltage_v(),
        "current": unit.current_a(),
        "temperature": unit.temperature_c,
        "cell_voltage_min": cell_min,
        "cell_voltage_max": cell_max,
        "max_charge_power": unit.allowed_charge_w() / 1000.0,
        "max_discharge_power": unit.allowed_discharge_w() / 1000.0,
        "capacity": unit.capacity_wh / 1000.0,
        "alarms": float(profile.register("alarms").bits_value(unit.alarms())),
    }


def pcs_values(unit: BessUnitModel, profile: DeviceProfile) -> dict[str, float]:
    reg = profile.register
    return {
        "active_power_setpoint": unit.setpoint_w / 1000.0,
        "active_power": unit.power_w / 1000.0,
        "rated_power": unit.cfg.rated_power_w / 1000.0,
        "mode_command": float(reg("mode_command").enum_code(unit.mode_command)),
        "mode": float(reg("mode").enum_code(unit.mode)),
        "grid_status": float(reg("grid_status").enum_code("ok" if unit.grid_ok else "down")),
        "fault": float(reg("fault").bits_value(unit.faults)),
        "heartbeat": float(unit.heartbeat),
        "heartbeat_timeout": unit.cfg.heartbeat_timeout_s,
        "ramp_rate": unit.cfg.ramp_w_per_s / 1000.0,
    }


def pcs_write(plant: Plant, unit: BessUnitModel, profile: DeviceProfile, now: NowFn) -> Callable[[str, float], None]:
    """The server has checked each value against its register (range, enum code) already."""
    mode_command = profile.register("mode_command")

    def write(name: str, value: float) -> None:
        if name == "active_power_setpoint":
            unit.command_setpoint(value * 1000.0)
        elif name == "mode_command":
            plant.command_pcs_mode(unit.unit_id, PcsMode(mode_command.enum_name(value)), now())
        elif name == "heartbeat":
            unit.command_heartbeat(int(value), now())

    return write


def genset_values(genset: GensetModel, profile: DeviceProfile) -> dict[str, float]:
    reg = profile.register
    started = genset.state in (GensetState.STARTING, GensetState.WARMUP, GensetState.RUNNING)
    return {
        "run_command": float(reg("run_command").enum_code("start" if started else "stop")),
        "state": float(reg("state").enum_code(genset.state)),
        "active_power": genset.power_w / 1000.0,
        "rated_power": genset.cfg.rated_power_w / 1000.0,
        "charge_power_setpoint": genset.charge_request_w / 1000.0,
        "fuel_used": genset.fuel_l,
        "run_time": genset.run_s,
        "starts": float(genset.starts),
    }


def genset_write(plant: Plant, genset_id: str, profile: DeviceProfile,
                 now: NowFn) -> Callable[[str, float], None]:
    run_command = profile.register("run_command")
    genset = plant.gensets[genset_id]

    def write(name: str, value: float) -> None:
        if name == "run_command":
            plant.command_genset(run_command.enum_name(value) == "start", now(), genset_id)
        elif name == "charge_power_setpoint":
            genset.charge_request_w = value * 1000.0

    return write


def meter_values(meter: MeterState) -> dict[str, float]:
    return {
        "active_power": meter.grid_power_w / 1000.0,
        "active_power_avg": meter.average_w / 1000.0,
        "voltage": meter.voltage_v,
        "frequency": meter.frequency_hz,
        "import_energy": meter.import_wh / 1000.0,
        "export_energy": meter.export_wh / 1000.0,
    }


def read_only(_name: str, _value: float) -> None:
    """Write handler of devices without writable registers (the server refuses first)."""


def filler_values(filler: FillerLoad) -> dict[str, float]:
    return {"power_setpoint": filler.setpoint_w / 1000.0, "active_power": filler.power_w / 1000.0,
            "rated_power": filler.cfg.rated_power_w / 1000.0}


def filler_write(filler: FillerLoad, now: NowFn) -> Callable[[str, float], None]:
    def write(name: str, value: float) -> None:
        if name == "power_setpoint":
            filler.command(value * 1000.0, now())

    return write


def pv_values(plant: Plant, rated_w: float) -> dict[str, float]:
    limit = plant.pv_limit_w
    return {"active_power": plant.pv_w / 1000.0, "rated_power": rated_w / 1000.0,
            "power_limit": (rated_w if limit is None else limit) / 1000.0}


def pv_write(plant: Plant, rated_w: float) -> Callable[[str, float], None]:
    """A limit at or above the rating is none."""
    def write(name: str, value: float) -> None:
        if name == "power_limit":
            plant.pv_limit_w = None if value * 1000.0 >= rated_w else value * 1000.0

    return write
