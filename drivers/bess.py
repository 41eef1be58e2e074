"""Capabilities of a BESS unit (BMS + PCS) and the grid meter, over their profiles.

Small, typed capabilities with the unit in the name: read the battery state, read the
PCS, set active power, set mode, beat the heartbeat, read grid power.
"""

from __future__ import annotations

import math
from typing import TypeVar

from drivers.errors import MalformedData, NotSupported, ProfileError
from drivers.modbus_device import ModbusDevice
from drivers.profile import DeviceProfile
from ems.model.readings import (
    BmsReading,
    FillerReading,
    GensetReading,
    GensetState,
    MeterReading,
    PcsMode,
    PcsReading,
    PvReading,
)


def _finite(values: dict[str, float], device: str) -> dict[str, float]:
    for name, v in values.items():
        if not math.isfinite(v):
            raise MalformedData(f"{device}: register {name} is not finite")
    return values


E = TypeVar("E", PcsMode, GensetState)


def _enum(profile: DeviceProfile, device: str, register: str, value: float, names: type[E]) -> E:
    """A code read from `register` -> the model's enum member, by the name the profile gives it."""
    try:
        return names(profile.register(register).enum_name(value))
    except MalformedData as exc:
        raise MalformedData(f"{device}: {exc}") from exc
    except ValueError as exc:  # a name the model does not know: device-kinds.yaml refuses such profiles
        raise MalformedData(f"{device}: {register} names a state ems does not know") from exc


def grid_ok(profile: DeviceProfile, value: float, device: str = "pcs") -> bool:
    """The PCS's grid status -> the grid is there (the code the profile names `ok`)."""
    try:
        return profile.register("grid_status").enum_name(value) == "ok"
    except MalformedData as exc:
        raise MalformedData(f"{device}: {exc}") from exc


# Pure conversions of one block read (SI values by register name) into a reading: what
# the drivers below do after the socket, kept apart so they can be fuzzed (tests/fuzz).
# Register names, enum codes and bits come from the profile, checked against its kind on load.
def bms_reading(v: dict[str, float], now_s: float, profile: DeviceProfile, device: str = "bms") -> BmsReading:
    v = _finite(v, device)
    soc = v["soc"]
    if not 0.0 <= soc <= 1.0:
        raise MalformedData(f"{device}: soc {soc} outside 0..1")
    return BmsReading(
        soc=soc, soh=v["soh"], voltage_v=v["voltage"], current_a=v["current"],
        temperature_c=v["temperature"], cell_voltage_min_v=v["cell_voltage_min"],
        cell_voltage_max_v=v["cell_voltage_max"], max_charge_w=v["max_charge_power"],
        max_discharge_w=v["max_discharge_power"], capacity_wh=v["capacity"],
        alarms=profile.register("alarms").bit_names(v["alarms"]), read_at_s=now_s,
    )


def pcs_reading(v: dict[str, float], now_s: float, profile: DeviceProfile, device: str = "pcs") -> PcsReading:
    v = _finite(v, device)
    return PcsReading(
        power_w=v["active_power"], setpoint_w=v["active_power_setpoint"],
        rated_power_w=v["rated_power"],
        mode_command=_enum(profile, device, "mode_command", v["mode_command"], PcsMode),
        mode=_enum(profile, device, "mode", v["mode"], PcsMode),
        grid_ok=grid_ok(profile, v["grid_status"], device),
        faults=profile.register("fault").bit_names(v["fault"]), heartbeat=int(v["heartbeat"]),
        heartbeat_timeout_s=v["heartbeat_timeout"], ramp_w_per_s=v["ramp_rate"],
        read_at_s=now_s,
    )


def meter_reading(v: dict[str, float], now_s: float, device: str = "meter") -> MeterReading:
    v = _finite(v, device)
    return MeterReading(
        grid_power_w=v["active_power"], voltage_v=v["voltage"], frequency_hz=v["frequency"],
        import_wh=v["import_energy"], export_wh=v["export_energy"], read_at_s=now_s,
        average_w=v.get("active_power_avg"),  # not every meter offers one (the profile says)
    )


def genset_reading(v: dict[str, float], now_s: float, profile: DeviceProfile, device: str = "genset") -> GensetReading:
    v = _finite(v, device)
    return GensetReading(
        state=_enum(profile, device, "state", v["state"], GensetState), power_w=v["active_power"],
        rated_power_w=v["rated_power"], charge_request_w=v["charge_power_setpoint"],
        fuel_used_l=v["fuel_used"], run_s=v["run_time"], starts=int(v["starts"]), read_at_s=now_s,
    )


MAX_FILLER_W = 100e6  # a rating beyond this is a garbled register, not a load bank


def filler_reading(v: dict[str, float], now_s: float, device: str = "filler") -> FillerReading:
    """A load bank's draw and rating; a rating no load bank has, or a draw beyond it, is refused."""
    v = _finite(v, device)
    draw_w, rating_w = v["active_power"], v["rated_power"]
    if not 0.0 < rating_w <= MAX_FILLER_W:
        raise MalformedData(f"{device}: rated power {rating_w:g} W is not a load bank's")
    if not 0.0 <= draw_w <= 1.1 * rating_w:
        raise MalformedData(f"{device}: draws {draw_w:g} W against a rating of {rating_w:g} W")
    return FillerReading(draw_w, rating_w, now_s)


def pv_reading(v: dict[str, float], now_s: float, device: str = "pv") -> PvReading:
    v = _finite(v, device)
    rated, limit = v["rated_power"], v["power_limit"]
    return PvReading(power_w=max(0.0, v["active_power"]), rated_power_w=rated,
                     limit_w=None if limit >= rated else limit, read_at_s=now_s)


def _code(device: ModbusDevice, register: str, name: str) -> float:
    """The code `device` uses for `name` in an enum register it is written."""
    try:
        return float(device.profile.register(register).enum_code(name))
    except ProfileError as exc:
        raise NotSupported(f"{device.name}: {exc}") from exc


class BmsDriver:
    def __init__(self, device: ModbusDevice) -> None:
        self.device = device

    async def read(self, now_s: float) -> BmsReading:
        return bms_reading(await self.device.read_si(), now_s, self.device.profile, self.device.name)

    async def beat(self, counter: int) -> None:
        """The reference BMS map has no controller heartbeat (the PCS's is the unit's): nothing to write."""


class PcsDriver:
    def __init__(self, device: ModbusDevice) -> None:
        self.device = device

    async def read(self, now_s: float) -> PcsReading:
        return pcs_reading(await self.device.read_si(), now_s, self.device.profile, self.device.name)

    async def set_active_power_w(self, power_w: float) -> None:
        await self.device.write_si("active_power_setpoint", power_w)

    async def set_mode(self, mode: PcsMode) -> None:
        await self.device.write_si("mode_command", _code(self.device, "mode_command", mode.value))

    async def beat(self, counter: int) -> None:
        await self.device.write_si("heartbeat", float(counter % 65536))


class MeterDriver:
    def __init__(self, device: ModbusDevice) -> None:
        self.device = device

    async def read(self, now_s: float) -> MeterReading:
        return meter_reading(await self.device.read_si(), now_s, self.device.name)


class GensetDriver:
    def __init__(self, device: ModbusDevice) -> None:
        self.device = device

    async def read(self, now_s: float) -> GensetReading:
        return genset_reading(await self.device.read_si(), now_s, self.device.profile, self.device.name)

    async def start(self) -> None:
        await self.device.write_si("run_command", _code(self.device, "run_command", "start"))

    async def stop(self) -> None:
        await self.device.write_si("run_command", _code(self.device, "run_command", "stop"))

    async def set_charge_request_w(self, power_w: float) -> None:
        await self.device.write_si("charge_power_setpoint", power_w)


class PvDriver:
    """A PV inverter on a register map: its output, rating and power limit (curtailment)."""

    def __init__(self, device: ModbusDevice) -> None:
        self.device = device
        self._rated_w: float | None = None

    async def read(self, now_s: float) -> PvReading:
        r = pv_reading(await self.device.read_si(), now_s, self.device.name)
        self._rated_w = r.rated_power_w
        return r

    async def set_limit_w(self, limit_w: float | None) -> None:
        """Limit the output to `limit_w`; None: no limit (the limit back at the rating)."""
        if limit_w is None:
            if self._rated_w is None:
                await self.read(0.0)
            assert self._rated_w is not None
            limit_w = self._rated_w
        await self.device.write_si("power_limit", limit_w)
