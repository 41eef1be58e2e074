"""One device's active power at the fast loop's rate, on a connection of its own: a register
map's `active_power` (and a PCS's `active_power_setpoint`), or a SunSpec device's 701 / 20x
`W` (and a PCS's 704 `WSet`, through the same driver the period loop writes with).

The smoothing loop (ems/smoothing_loop.py) reads the meter and every PCS each tick and writes
the PCS setpoints; it does not care which kind of map a device speaks.
"""

from __future__ import annotations

from typing import Protocol

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


class MapPower:
    def __init__(self, device: ModbusDevice) -> None:
        self.device = device

    async def read_w(self) -> float:
        return (await self.device.read_registers_si(("active_power",)))["active_power"]

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

    async def read_w(self) -> float:
        if not self.device.discovered:
            await check_models(self.device, self.kind)
        if self.kind == "pcs":
            return need(await self.device.read_model(701), "W", self.device.name, 701)
        model = next(m for m in METER_MODELS if self.device.has(m))
        return self.profile.power_sign * need(await self.device.read_model(model), "W", self.device.name, model)

    async def write_w(self, power_w: float) -> None:
        assert self.pcs is not None, "only a PCS is written"
        await self.pcs.set_active_power_w(power_w)

    def close(self) -> None:
        self.device.close()


def fast_power(name: str, ep: ModbusEndpoint, kind: str) -> FastPower:
    """`kind`: "meter" or "pcs"."""
    return SunSpecPower(name, ep, kind) if is_sunspec(ep) else MapPower(modbus_device(name, ep))
