"""One Modbus TCP device read and written through its profile, with typed errors.

Reads fetch the whole profile block in one request and return SI values. Writes are
checked against the profile (writable, in range) before anything is sent. The connection
(reconnect with backoff, timeouts, errors translated) is `drivers/modbus_link.py`.
"""

from __future__ import annotations

from drivers.modbus_link import ModbusLink
from drivers.profile import DeviceProfile


class ModbusDevice(ModbusLink):
    def __init__(self, name: str, profile: DeviceProfile, host: str, port: int,
                 unit_id: int = 1, timeout_s: float = 0.5) -> None:
        super().__init__(name, host, port, unit_id, timeout_s)
        self.profile = profile

    async def read_raw(self) -> dict[str, float]:
        """Read the whole profile block -> {register: value in the profile's unit}."""
        p = self.profile
        return p.decode_block(await self.read_words(p.first_address, p.span))

    async def read_registers_si(self, names: tuple[str, ...]) -> dict[str, float]:
        """Read only the span covering `names` (for fast polling) -> {name: SI value}."""
        regs = [self.profile.register(n) for n in names]
        first = min(r.address for r in regs)
        span = max(r.address + r.width for r in regs) - first
        words = await self.read_words(first, span)
        return {r.name: r.decode(words[r.address - first:]) * r.si_factor for r in regs}

    async def read_si(self) -> dict[str, float]:
        """Read the whole profile block -> {register: value in SI units}."""
        return self.profile.to_si(await self.read_raw())

    async def write_si(self, register: str, value_si: float) -> None:
        """Write one register given an SI value; refused before sending if not allowed."""
        reg = self.profile.register(register)
        value = value_si / reg.si_factor
        reg.check_writable(value)
        words = reg.encode(value)
        # one register goes with 0x06 as before, more with 0x10
        await self.write_words(reg.address, words, f"write {register}", 6 if len(words) == 1 else 16)
