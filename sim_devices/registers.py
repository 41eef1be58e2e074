"""The plant seen through device registers: state -> profile values, writes -> plant.

Values are in the profile's units (kW, %, ...), the same units a real device would
put on the wire; the profile encodes them.
"""

from __future__ import annotations

from collections.abc import Callable

from plant.battery import BessUnitModel, PcsMode
from plant.genset import GensetModel, GensetState
from plant.plant import MeterState, Plant

NowFn = Callable[[], float]


def bms_values(unit: BessUnitModel) -> dict[str, float]:
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
        "alarms": float(unit.alarms()),
    }


def pcs_values(unit: BessUnitModel) -> dict[str, float]:
    return {
        "active_power_setpoint": unit.setpoint_w / 1000.0,
        "active_power": unit.power_w / 1000.0,
        "rated_power": unit.cfg.rated_power_w / 1000.0,
        "mode_command": float(unit.mode_command),
        "mode": float(unit.mode),
        "grid_status": 1.0 if unit.grid_ok else 0.0,
        "fault": float(unit.fault_bits),
        "heartbeat": float(unit.heartbeat),
        "heartbeat_timeout": unit.cfg.heartbeat_timeout_s,
        "ramp_rate": unit.cfg.ramp_w_per_s / 1000.0,
    }


def pcs_write(plant: Plant, unit: BessUnitModel, now: NowFn) -> Callable[[str, float], None]:
    def write(name: str, value: float) -> None:
        if name == "active_power_setpoint":
            unit.command_setpoint(value * 1000.0)
        elif name == "mode_command":
            plant.command_pcs_mode(unit.unit_id, PcsMode(int(value)), now())
        elif name == "heartbeat":
            unit.command_heartbeat(int(value), now())

    return write


def genset_values(genset: GensetModel) -> dict[str, float]:
    return {
        "run_command": 1.0 if genset.state in (GensetState.STARTING, GensetState.WARMUP, GensetState.RUNNING) else 0.0,
        "state": float(genset.state),
        "active_power": genset.power_w / 1000.0,
        "rated_power": genset.cfg.rated_power_w / 1000.0,
        "charge_power_setpoint": genset.charge_request_w / 1000.0,
        "fuel_used": genset.fuel_l,
        "run_time": genset.run_s,
        "starts": float(genset.starts),
    }


def genset_write(plant: Plant, genset: GensetModel, now: NowFn) -> Callable[[str, float], None]:
    def write(name: str, value: float) -> None:
        if name == "run_command":
            plant.command_genset(value >= 1.0, now())
        elif name == "charge_power_setpoint":
            genset.charge_request_w = value * 1000.0

    return write


def meter_values(meter: MeterState) -> dict[str, float]:
    return {
        "active_power": meter.grid_power_w / 1000.0,
        "voltage": meter.voltage_v,
        "frequency": meter.frequency_hz,
        "import_energy": meter.import_wh / 1000.0,
        "export_energy": meter.export_wh / 1000.0,
    }


def read_only(_name: str, _value: float) -> None:
    """Write handler of devices without writable registers (the server refuses first)."""
