"""What leaves a driver: SI values with the site-clock time they were read.

Sign convention of the whole project: grid power > 0 is import, battery power > 0 is
discharge. State of charge is a fraction 0..1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PcsMode(StrEnum):
    STANDBY = "standby"
    GRID_FOLLOWING = "grid_following"
    GRID_FORMING = "grid_forming"


@dataclass(frozen=True, slots=True)
class MeterReading:
    grid_power_w: float
    voltage_v: float
    frequency_hz: float
    import_wh: float
    export_wh: float
    read_at_s: float
    average_w: float | None = None  # grid power over the meter's averaging window, where it offers one

    @property
    def mean_w(self) -> float:
        """The meter's own average where it has one, else the instant reading: one sample a
        period of a training swing is not the grid's power over the period."""
        return self.grid_power_w if self.average_w is None else self.average_w


@dataclass(frozen=True, slots=True)
class BmsReading:
    soc: float
    soh: float
    voltage_v: float
    current_a: float
    temperature_c: float
    cell_voltage_min_v: float
    cell_voltage_max_v: float
    max_charge_w: float
    max_discharge_w: float
    capacity_wh: float
    alarms: tuple[str, ...]  # the alarm bits set, named as the device profile names them
    read_at_s: float

    @property
    def fault(self) -> bool:
        """The BMS reports a fault (its alarm bit named `fault`, which every BMS profile has:
        config/device-kinds.yaml); the other alarms are warnings."""
        return "fault" in self.alarms


@dataclass(frozen=True, slots=True)
class PcsReading:
    power_w: float
    setpoint_w: float
    rated_power_w: float
    mode_command: PcsMode
    mode: PcsMode
    grid_ok: bool
    faults: tuple[str, ...]  # the fault bits set, named as the device profile names them
    heartbeat: int
    heartbeat_timeout_s: float
    ramp_w_per_s: float
    read_at_s: float

    @property
    def fault(self) -> bool:
        """The PCS reports a fault: any bit of its fault register, named or not."""
        return bool(self.faults)


@dataclass(frozen=True, slots=True)
class PvReading:
    """A PV inverter: what it produces now (AC, >= 0), its rating, the limit it holds."""

    power_w: float
    rated_power_w: float
    limit_w: float | None  # the curtailment limit in force; None: none
    read_at_s: float


class GensetState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    WARMUP = "warmup"
    RUNNING = "running"
    COOLDOWN = "cooldown"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class FillerReading:
    power_w: float  # what the load bank draws
    rated_power_w: float
    read_at_s: float


@dataclass(frozen=True, slots=True)
class GensetReading:
    state: GensetState
    power_w: float
    rated_power_w: float
    charge_request_w: float
    fuel_used_l: float
    run_s: float
    starts: int
    read_at_s: float

    @property
    def start_requested(self) -> bool:
        return self.state in (GensetState.STARTING, GensetState.WARMUP, GensetState.RUNNING)
