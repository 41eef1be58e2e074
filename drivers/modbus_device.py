"""One Modbus TCP device read and written through its profile, with typed errors.

Reads fetch the whole profile block in one request and return SI values. Writes are
checked against the profile (writable, in range) before anything is sent. A lost
connection is re-established on the next call, with exponential backoff between
attempts so a dead device does not stall the control period.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from drivers.errors import DeviceRejected, DeviceTimeout, DeviceUnavailable
from drivers.profile import DeviceProfile

_BACKOFF_MIN_S = 0.2
_BACKOFF_MAX_S = 5.0


class ModbusDevice:
    def __init__(self, name: str, profile: DeviceProfile, host: str, port: int,
                 unit_id: int = 1, timeout_s: float = 0.5) -> None:
        self.name = name
        self.profile = profile
        self.host, self.port, self.unit_id = host, port, unit_id
        self.timeout_s = timeout_s
        self._client: AsyncModbusTcpClient | None = None
        self._next_attempt = 0.0
        self._backoff_s = _BACKOFF_MIN_S
        self.requests = 0
        self.failures = 0

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def _ensure_connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        now = time.monotonic()
        if now < self._next_attempt:
            raise DeviceUnavailable(self.name, "waiting to reconnect")
        self._drop()
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self.timeout_s,
                                      retries=0, reconnect_delay=0, name=self.name)
        try:
            ok = await asyncio.wait_for(client.connect(), self.timeout_s * 2)
        except (TimeoutError, OSError, ModbusException) as exc:
            ok = False
            err: Exception | None = exc
        else:
            err = None
        if not ok:
            client.close()
            self._next_attempt = now + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, _BACKOFF_MAX_S)
            raise DeviceUnavailable(self.name, f"cannot connect to {self.host}:{self.port}") from err
        self._backoff_s = _BACKOFF_MIN_S
        self._client = client
        return client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _call(self, what: str, request: Awaitable[Any]) -> Any:
        """Await a pymodbus request coroutine, translating its errors at this edge."""
        self.requests += 1
        try:
            response: Any = await asyncio.wait_for(request, self.timeout_s * 2)
        except TimeoutError as exc:
            self.failures += 1
            self._drop()
            raise DeviceTimeout(self.name, f"{what} timed out") from exc
        except ModbusIOException as exc:  # pymodbus: no (complete) response in time
            self.failures += 1
            self._drop()
            raise DeviceTimeout(self.name, f"{what}: no response") from exc
        except (ModbusException, OSError) as exc:
            self.failures += 1
            self._drop()
            raise DeviceUnavailable(self.name, f"{what}: {exc}") from exc
        if response.isError():
            self.failures += 1
            code = getattr(response, "exception_code", "?")
            raise DeviceRejected(self.name, f"{what} answered exception code {code}")
        return response

    async def read_raw(self) -> dict[str, float]:
        """Read the whole profile block -> {register: value in the profile's unit}."""
        client = await self._ensure_connected()
        p = self.profile
        resp = await self._call("read", client.read_holding_registers(
            p.first_address, count=p.span, device_id=self.unit_id))
        return p.decode_block(resp.registers)

    async def read_registers_si(self, names: tuple[str, ...]) -> dict[str, float]:
        """Read only the span covering `names` (for fast polling) -> {name: SI value}."""
        regs = [self.profile.register(n) for n in names]
        first = min(r.address for r in regs)
        span = max(r.address + r.width for r in regs) - first
        client = await self._ensure_connected()
        resp = await self._call("read", client.read_holding_registers(first, count=span, device_id=self.unit_id))
        words = resp.registers
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
        client = await self._ensure_connected()
        if len(words) == 1:
            await self._call(f"write {register}", client.write_register(
                reg.address, words[0], device_id=self.unit_id))
        else:
            await self._call(f"write {register}", client.write_registers(
                reg.address, words, device_id=self.unit_id))

    def close(self) -> None:
        self._drop()
