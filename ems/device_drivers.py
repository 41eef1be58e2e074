"""The driver for each device the site file names: a reference register map or SunSpec.

An endpoint's `profile` says which: a profile under config/profiles/ (or a path to
one) is read through its register map (drivers/bess.py); a SunSpec profile
(config/sunspec/, or a file with `protocol: sunspec`) through the models the device
lists (drivers/sunspec_drivers.py). Both give the same readings and take the same
commands, so gather, the actuators and the step never know which.
"""

from __future__ import annotations

from typing import Protocol

from drivers.bess import BmsDriver, MeterDriver, PcsDriver, PvDriver
from drivers.modbus_device import ModbusDevice
from drivers.modbus_link import ModbusLink
from drivers.profile import load_profile
from drivers.sunspec_drivers import (
    SunSpecBmsDriver,
    SunSpecMeterDriver,
    SunSpecPcsDriver,
    SunSpecPvDriver,
    sunspec_device,
)
from drivers.sunspec_profile import is_sunspec_profile, load_sunspec_profile
from ems.model.readings import BmsReading, MeterReading, PcsMode, PcsReading, PvReading
from ems.topology import ModbusEndpoint


class MeterReader(Protocol):
    @property
    def device(self) -> ModbusLink: ...

    async def read(self, now_s: float) -> MeterReading: ...


class BmsReader(Protocol):
    @property
    def device(self) -> ModbusLink: ...

    async def read(self, now_s: float) -> BmsReading: ...

    async def beat(self, counter: int) -> None: ...


class PcsControl(Protocol):
    @property
    def device(self) -> ModbusLink: ...

    async def read(self, now_s: float) -> PcsReading: ...

    async def set_active_power_w(self, power_w: float) -> None: ...

    async def set_mode(self, mode: PcsMode) -> None: ...

    async def beat(self, counter: int) -> None: ...


def modbus_device(name: str, ep: ModbusEndpoint) -> ModbusDevice:
    return ModbusDevice(name, load_profile(ep.profile), ep.host, ep.port, ep.unit_id, ep.timeout_s)


def is_sunspec(ep: ModbusEndpoint) -> bool:
    return is_sunspec_profile(ep.profile)


def meter_driver(name: str, ep: ModbusEndpoint) -> MeterReader:
    if is_sunspec(ep):
        p = load_sunspec_profile(ep.profile)
        return SunSpecMeterDriver(sunspec_device(name, p, ep.host, ep.port, ep.unit_id, ep.timeout_s), p)
    return MeterDriver(modbus_device(name, ep))


def bms_driver(name: str, ep: ModbusEndpoint) -> BmsReader:
    if is_sunspec(ep):
        p = load_sunspec_profile(ep.profile)
        return SunSpecBmsDriver(sunspec_device(name, p, ep.host, ep.port, ep.unit_id, ep.timeout_s), p)
    return BmsDriver(modbus_device(name, ep))


def pcs_driver(name: str, ep: ModbusEndpoint) -> PcsControl:
    if is_sunspec(ep):
        p = load_sunspec_profile(ep.profile)
        return SunSpecPcsDriver(sunspec_device(name, p, ep.host, ep.port, ep.unit_id, ep.timeout_s), p)
    return PcsDriver(modbus_device(name, ep))


class PvControl(Protocol):
    @property
    def device(self) -> ModbusLink: ...

    async def read(self, now_s: float) -> PvReading: ...

    async def set_limit_w(self, limit_w: float | None) -> None: ...


def pv_driver(name: str, ep: ModbusEndpoint) -> PvControl:
    if is_sunspec(ep):
        p = load_sunspec_profile(ep.profile)
        return SunSpecPvDriver(sunspec_device(name, p, ep.host, ep.port, ep.unit_id, ep.timeout_s), p)
    return PvDriver(modbus_device(name, ep))
