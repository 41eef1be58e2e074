"""One device's active power at the fast loop's rate, on a connection of its own: a register
map's `active_power` (and a PCS's `active_power_setpoint`), or a SunSpec device's 701 / 20x
`W` (and a PCS's 704 `WSet`, through the same driver the period loop writes with).

The smoothing loop (ems/smoothing_loop.py) reads the meter and every PCS each tick and writes
the PCS setpoints; it does not care which kind of map a device speaks.
"""

from __future__ import annotations

import math
from typing import Protocol

from drivers.errors import MalformedData
from drivers.modbus_device import ModbusDevice
from drivers.sunspec_drivers import METER_MODELS, SunSpecPcsDriver, check_models, need, sunspec_device
from drivers.sunspec_profile import load_sunspec_profile
from ems.device_drivers import is_sunspec
from ems.gather import modbus_device
from ems.topology import ModbusEndpoint


class FastPower(Protocol):
    async def read_w(self) -> float: ...

    async def write_w(self, power_w: float) -> None: ...

    def close(self) -> None: ...


def finite_w(power_w: float, device: str) -> float:
    """A power read, or MalformedData (a read failure, counted) where it is NaN or infinite: a float
    register's NaN taken for the load would make every later tick's state NaN, as the period's
    readings refuse it (drivers/bess.py)."""
    if not math.isfinite(power_w):
        raise MalformedData(f"{device}: active power {power_w} is not finite")
    return power_w


class MapPower:
    def __init__(self, device: ModbusDevice) -> None:
        self.device = device

    async def read_w(self) -> float:
        return finite_w((await self.device.read_registers_si(("active_power",)))["active_power"], self.device.name)

    async def write_w(self, power_w: float) -> None:
        await self.device.write_si("active_power_setpoint", power_w)

    def close(self) -> None:
        self.device.close()


class SunSpecPower:
    """A SunSpec meter (its 20x model's `W`, signed by the profile) or PCS (701 `W`; written
    through 704 `WSet` by the PCS driver, which sets the watts mode once per connection)."""

    def __init__(self, name: str, ep: ModbusEndpoint, kind: str) -> None:
        self.profile = load_sunspec_profile(ep.profile)
        self.device = sunspec_device(name, self.profile, ep.host, ep.port, ep.unit_id, ep.timeout_s)
        self.kind = kind
        self.pcs = SunSpecPcsDriver(self.device, self.profile) if kind == "pcs" else None
        self._checked = False  # the models passed the check (a device that failed it is checked again)

    async def read_w(self) -> float:
        if not self.device.discovered or not self._checked:
            self._checked = False
            await check_models(self.device, self.kind)  # NotSupported for a device without the models
            self._checked = True
        if self.kind == "pcs":
            return finite_w(need(await self.device.read_model(701), "W", self.device.name, 701), self.device.name)
        model = next(m for m in METER_MODELS if self.device.has(m))
        w = need(await self.device.read_model(model), "W", self.device.name, model)
        return finite_w(self.profile.power_sign * w, self.device.name)

    async def write_w(self, power_w: float) -> None:
        assert self.pcs is not None, "only a PCS is written"
        await self.pcs.set_active_power_w(power_w)

    def close(self) -> None:
        self.device.close()


def fast_power(name: str, ep: ModbusEndpoint, kind: str) -> FastPower:
    """`kind`: "meter" or "pcs"."""
    return SunSpecPower(name, ep, kind) if is_sunspec(ep) else MapPower(modbus_device(name, ep))
