"""One Modbus TCP connection with typed errors: reconnect with backoff, a timeout on every call.

The lifecycle every Modbus driver shares, whatever describes the registers (a device
profile, or SunSpec models discovered on the device): a lost connection is
re-established on the next call, with exponential backoff between attempts so a dead
device does not stall the control period; pymodbus errors become ems's at this edge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Literal

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from drivers.errors import DeviceRejected, DeviceTimeout, DeviceUnavailable

_BACKOFF_MIN_S = 0.2
_BACKOFF_MAX_S = 5.0

# Modbus function codes a register write may go with: 0x10 write multiple registers (the
# default), 0x06 write single register (one request per register; some devices take only it)
WriteCode = Literal[6, 16]


class ModbusLink:
    def __init__(self, name: str, host: str, port: int, unit_id: int = 1, timeout_s: float = 0.5) -> None:
        self.name = name
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

    async def read_words(self, address: int, count: int, what: str = "read") -> list[int]:
        """`count` holding registers from `address` (one request: count <= 125)."""
        client = await self._ensure_connected()
        resp = await self._call(what, client.read_holding_registers(address, count=count, device_id=self.unit_id))
        return list(resp.registers)

    async def write_words(self, address: int, words: list[int], what: str = "write",
                          function_code: WriteCode = 16) -> None:
        """Registers from `address`: one 0x10 request, or one 0x06 request per register."""
        client = await self._ensure_connected()
        if function_code == 16:
            await self._call(what, client.write_registers(address, words, device_id=self.unit_id))
            return
        for i, word in enumerate(words):
            await self._call(what, client.write_register(address + i, word, device_id=self.unit_id))

    def close(self) -> None:
        self._drop()
