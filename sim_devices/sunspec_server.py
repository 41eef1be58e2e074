"""A simulated SunSpec device served as a real pymodbus TCP server.

The register image is built from pysunspec2's model definitions: "SunS" at the base
address (40000, 0 or 50000), then each model
(model 1 first), then the end marker. Reads are answered from the device's values at
the moment of the read (scaled with the device's scale factors; None goes out as the
type's not-implemented pattern). Writes are decoded point by point: a read-only point
is answered with ILLEGAL_ADDRESS, an out-of-range value or enum code with
ILLEGAL_VALUE, a function code the device does not take with ILLEGAL_FUNCTION; a
32-bit point written as two 0x06 requests takes effect when its second word arrives.
Any third-party SunSpec client (pysunspec2's own) can read it.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sunspec2.mb as ss_mb
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.errors import DriverError
from drivers.sunspec_models import (
    END_MODEL_ID,
    SUNS_MARKER,
    PointDef,
    PointValue,
    fast_model_words,
    model_def,
    raw_for,
)
from sim_devices.modbus_server import WriteRecord, injected_fault, serve

ValuesFn = Callable[[], dict[int, dict[str, PointValue]]]  # model -> {point: value in its unit, or an SF}
WriteFn = Callable[[int, str, float], None]  # (model, point, value in its unit); ValueError: refused

_READ_CODES = {3, 4}


@dataclass
class SimulatedSunSpecDevice:
    name: str
    models: list[int]  # in the order the device lists them after "SunS"
    read_values: ValuesFn
    write_value: WriteFn
    host: str
    port: int
    unit_id: int = 1
    base_address: int = 40000
    accept_codes: frozenset[int] = frozenset({6, 16})  # write function codes the device takes
    writes: list[WriteRecord] = field(default_factory=list)
    max_write_log: int = 10_000
    fail_with: ExcCodes | None = None
    delay_s: float = 0.0
    _server: ModbusTcpServer | None = None
    _pending: dict[int, int] = field(default_factory=dict)  # words of points written in part (0x06)

    def __post_init__(self) -> None:
        if self.base_address not in (0, 40000, 50000):
            raise ValueError("a SunSpec map starts at 40000, 0 or 50000")
        self.layout: list[tuple[int, int]] = []  # (model id, address of its ID register)
        addr = self.base_address + 2
        for m in self.models:
            self.layout.append((m, addr))
            addr += model_def(m).words
        self.end_address = addr + 2  # after the end marker

    def _image(self, lo: int, hi: int) -> dict[int, list[int]]:
        """The words of every model overlapping [lo, hi), by the model's address."""
        values: dict[int, dict[str, PointValue]] | None = None
        out: dict[int, list[int]] = {}
        for m, addr in self.layout:
            md = model_def(m)
            if addr >= hi or addr + md.words <= lo:
                continue
            if values is None:
                values = self.read_values()
            out[addr] = fast_model_words(m, raw_values(m, values.get(m, {})))
        return out

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        if (fault := await injected_fault(self.delay_s, self.fail_with)) is not None:
            return fault
        if set_values is None or function_code in _READ_CODES:
            try:
                image = self._image(address, address + count)
            except (DriverError, ValueError, ArithmeticError, struct.error):  # a value that does not fit
                return ExcCodes.DEVICE_FAILURE
            registers[0:2] = list(SUNS_MARKER)
            for addr, words in image.items():
                off = addr - start_address
                registers[off : off + len(words)] = words
            end = self.end_address - 2 - start_address
            registers[end : end + 2] = [END_MODEL_ID, 0]
            return None
        if function_code not in self.accept_codes:
            return ExcCodes.ILLEGAL_FUNCTION
        return self._write(address, [int(v) for v in set_values])

    def _write(self, address: int, values: list[int]) -> ExcCodes | None:
        written = dict(enumerate(values, start=address))
        decided: list[tuple[int, str, float]] = []
        for m, maddr in self.layout:
            md = model_def(m)
            if maddr >= address + len(values) or maddr + md.words <= address:
                continue
            for pd in md.points.values():
                lo, hi = maddr + pd.offset, maddr + pd.offset + pd.size
                if hi <= address or lo >= address + len(values):
                    continue
                if not pd.writable:
                    return ExcCodes.ILLEGAL_ADDRESS
                if hi - 1 not in written:  # its last word is yet to come (0x06, high word first)
                    continue
                words = [written.get(a, self._pending.get(a)) for a in range(lo, hi)]
                if any(w is None for w in words):
                    return ExcCodes.ILLEGAL_ADDRESS  # the low word of a point whose high word never came
                value = decode_written(m, pd, [w for w in words if w is not None], self.read_values())
                if value is None:
                    return ExcCodes.ILLEGAL_VALUE
                decided.append((m, pd.name, value))
        now_ns = time.monotonic_ns()
        try:
            for m, point, value in decided:
                self.write_value(m, point, value)
        except ValueError:
            return ExcCodes.ILLEGAL_VALUE
        self._pending.update(written)
        for m, point, value in decided:
            pd = model_def(m).points[point]
            maddr = dict(self.layout)[m]
            for a in range(maddr + pd.offset, maddr + pd.offset + pd.size):
                self._pending.pop(a, None)
            if len(self.writes) < self.max_write_log:
                self.writes.append(WriteRecord(f"{m}.{point}", value, now_ns))
        return None

    async def start(self) -> None:
        """Bind and serve in the background; OSError if the address cannot be bound."""
        block = SimData(self.base_address, count=self.end_address - self.base_address, values=0,
                        datatype=DataType.REGISTERS)
        device = SimDevice(id=self.unit_id, simdata=[block], action=self._action)
        self._server = await serve(self.name, device, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
        self._server = None


def raw_values(model_id: int, values: dict[str, PointValue]) -> dict[str, PointValue]:
    """Values in each point's unit -> raw register values under the scale factors given
    among them (a point whose scale factor is None goes out not implemented)."""
    md = model_def(model_id)
    out: dict[str, PointValue] = {}
    for name, v in values.items():
        pd = md.points.get(name)
        if pd is None or v is None or isinstance(v, str) or pd.type == "sunssf":
            out[name] = v
            continue
        if isinstance(pd.sf, str):
            exp = values.get(pd.sf)
            out[name] = None if not isinstance(exp, int) else raw_for(pd, float(v), exp)
        else:
            out[name] = raw_for(pd, float(v), pd.sf)
    return out


def decode_written(model_id: int, pd: PointDef, words: list[int],
                   values: dict[int, dict[str, PointValue]]) -> float | None:
    """Written words -> the value in the point's unit; None if it is not a value the point
    takes (not-implemented pattern, an enum code it does not name, an unknown scale)."""
    info = ss_mb.point_type_info[pd.type]
    raw = info.data_to(b"".join(w.to_bytes(2, "big") for w in words))
    if raw is None or not info.is_impl(raw):
        return None
    if pd.type.startswith("enum") and raw not in pd.symbols:
        return None
    if pd.sf is None:
        return float(raw)
    exp = pd.sf if isinstance(pd.sf, int) else values.get(model_id, {}).get(pd.sf)
    if not isinstance(exp, int):
        return None
    return float(raw) * 10.0**exp
