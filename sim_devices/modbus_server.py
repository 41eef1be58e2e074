"""A simulated device served as a real pymodbus TCP server, from its device profile.

Reads are answered from the plant's state at the moment of the read; writes are
decoded with the same profile and handed to the plant. Writes to read-only registers
and values outside a register's range are answered with Modbus exceptions, as a real
device would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.errors import DriverError
from drivers.profile import DeviceProfile

ReadFn = Callable[[], dict[str, float]]
WriteFn = Callable[[str, float], None]

_READ_CODES = {3, 4}


@dataclass
class WriteRecord:
    register: str
    value: float
    received_ns: int  # time.monotonic_ns() when the server decoded the write


@dataclass
class SimulatedModbusDevice:
    name: str
    profile: DeviceProfile
    read_values: ReadFn
    write_value: WriteFn
    host: str
    port: int
    unit_id: int = 1
    writes: list[WriteRecord] = field(default_factory=list)
    max_write_log: int = 10_000
    # fault injection (tests, fault campaigns): answer every request with this exception
    # code, or answer only after this delay (longer than a client's timeout: a timeout)
    fail_with: ExcCodes | None = None
    delay_s: float = 0.0
    _server: ModbusTcpServer | None = None

    def _blocks(self) -> list[SimData]:
        blocks: list[SimData] = []
        regs = sorted(self.profile.registers, key=lambda r: r.address)
        cursor = regs[0].address
        for r in regs:
            if r.address > cursor:  # reserved gap: readable zeros so block reads work
                blocks.append(SimData(cursor, count=r.address - cursor, values=0,
                                      datatype=DataType.REGISTERS, readonly=True))
            blocks.append(SimData(r.address, count=r.width, values=0,
                                  datatype=DataType.REGISTERS, readonly=r.access != "rw"))
            cursor = r.address + r.width
        return blocks

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if (fault := await injected_fault(self.delay_s, self.fail_with)) is not None:
            return fault
        if set_values is None or function_code in _READ_CODES:
            try:
                words = self.profile.encode_block(self.read_values())
            except DriverError:
                return ExcCodes.DEVICE_FAILURE
            offset = self.profile.first_address - start_address
            registers[offset : offset + len(words)] = words
            return None
        values = [int(v) for v in set_values]
        decoded: list[tuple[str, float]] = []
        for reg in self.profile.registers:
            lo, hi = reg.address, reg.address + reg.width
            if hi <= address or lo >= address + count:
                continue
            if lo < address or hi > address + count:
                return ExcCodes.ILLEGAL_ADDRESS  # partial write of a multi-word value
            try:
                value = reg.decode(values[lo - address : hi - address])  # MalformedData if words are missing
                reg.check_writable(value)
            except DriverError:
                return ExcCodes.ILLEGAL_VALUE
            decoded.append((reg.name, value))
        now_ns = time.monotonic_ns()
        for name, value in decoded:
            self.write_value(name, value)
            if len(self.writes) < self.max_write_log:
                self.writes.append(WriteRecord(name, value, now_ns))
        return None

    async def start(self) -> None:
        """Bind and serve in the background; OSError if the address cannot be bound."""
        device = SimDevice(id=self.unit_id, simdata=self._blocks(), action=self._action)
        self._server = await serve(self.name, device, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
        self._server = None


async def serve(name: str, device: SimDevice, host: str, port: int) -> ModbusTcpServer:
    """`device` served on host:port in the background; OSError if the address cannot be bound."""
    server = ModbusTcpServer(device, address=(host, port))
    try:
        await server.serve_forever(background=True)
    except RuntimeError as exc:  # pymodbus reports a failed bind this way
        raise OSError(f"{name}: cannot listen on {host}:{port} (address in use?)") from exc
    return server


async def injected_fault(delay_s: float, fail_with: ExcCodes | None) -> ExcCodes | None:
    """What a test asked of the device: a slow answer, then an exception response."""
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    return fail_with
