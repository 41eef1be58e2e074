"""Device profiles: a Modbus register map as data (YAML), checked against a schema.

The simulator serves the same profiles the drivers read, so a register is described
once: address, type, scale, unit and access. `value_in_unit = raw * scale`; the
drivers convert units to SI with `to_si`.
"""

from __future__ import annotations

import math
import struct
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drivers.errors import MalformedData, ProfileError, RegisterRangeError, RegisterWriteForbidden

PROFILE_DIR = Path(__file__).resolve().parent.parent / "config" / "profiles"


class RegisterType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"


# struct format and width in 16-bit registers; words are big-endian (high word first).
_STRUCT: dict[RegisterType, tuple[str, int]] = {
    RegisterType.INT16: (">h", 1),
    RegisterType.UINT16: (">H", 1),
    RegisterType.INT32: (">i", 2),
    RegisterType.UINT32: (">I", 2),
    RegisterType.FLOAT32: (">f", 2),
}

# Factor from a profile unit to the SI unit the rest of ems uses (W, Wh, V, A, Hz, s,
# fraction for percentages). Units not listed are passed through unchanged.
_TO_SI: dict[str, float] = {
    "%": 0.01,
    "kW": 1000.0,
    "kWh": 1000.0,
    "kW/s": 1000.0,
    "MW": 1e6,
    "MWh": 1e6,
    "ms": 0.001,
    "h": 3600.0,
}
_UNITS = {"%", "kW", "kWh", "kW/s", "MW", "MWh", "W", "Wh", "V", "A", "Hz", "s", "ms", "h",
          "L", "degC", "enum", "bitfield", "count"}


class RegisterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    address: int = Field(ge=1, le=65535)  # pymodbus data blocks cannot start at 0
    type: RegisterType
    scale: float = 1.0
    unit: str
    access: Literal["r", "rw"]
    min: float | None = None  # in `unit`, inclusive; writes outside are refused
    max: float | None = None
    enum: dict[int, str] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> RegisterSpec:
        if self.unit not in _UNITS:
            raise ValueError(f"unit {self.unit!r} is not one of {sorted(_UNITS)}")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self

    @property
    def width(self) -> int:
        return _STRUCT[self.type][1]

    @property
    def si_factor(self) -> float:
        return _TO_SI.get(self.unit, 1.0)

    def decode(self, words: list[int]) -> float:
        """Registers -> value in the profile unit; MalformedData if the words are too few
        (a short response) or not 16-bit."""
        fmt, width = _STRUCT[self.type]
        try:
            raw = struct.unpack(fmt, b"".join(w.to_bytes(2, "big") for w in words[:width]))[0]
        except (struct.error, OverflowError) as exc:
            raise MalformedData(f"register {self.name!r}: fewer than {width} words, or not 16-bit") from exc
        return float(raw) * self.scale

    def encode(self, value: float) -> list[int]:
        """Value in the profile unit -> registers. Raises RegisterRangeError if it cannot fit."""
        fmt, width = _STRUCT[self.type]
        raw: float | int = value / self.scale
        if self.type is not RegisterType.FLOAT32:
            raw = round(raw)
        try:
            data = struct.pack(fmt, raw)
        except struct.error as exc:
            raise RegisterRangeError(self.name, value, "does not fit the register") from exc
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, 2 * width, 2)]

    def check_writable(self, value: float) -> None:
        """Refuse a write before it is sent: read-only register or value outside min/max."""
        if self.access != "rw":
            raise RegisterWriteForbidden(self.name)
        if not math.isfinite(value):  # NaN, or infinity on a register without bounds
            raise RegisterRangeError(self.name, value, "is not a finite number")
        if self.min is not None and value < self.min:
            raise RegisterRangeError(self.name, value, f"is below min {self.min}")
        if self.max is not None and value > self.max:
            raise RegisterRangeError(self.name, value, f"is above max {self.max}")


class DeviceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["bms", "pcs", "meter", "genset"]
    description: str = ""
    registers: list[RegisterSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _no_overlap(self) -> DeviceProfile:
        seen: dict[int, str] = {}
        names: set[str] = set()
        for reg in self.registers:
            if reg.name in names:
                raise ValueError(f"register name {reg.name!r} appears twice")
            names.add(reg.name)
            for addr in range(reg.address, reg.address + reg.width):
                if addr in seen:
                    raise ValueError(f"register {reg.name!r} overlaps {seen[addr]!r} at {addr}")
                seen[addr] = reg.name
        if self.span > 125:
            raise ValueError("register block spans more than 125 registers (one Modbus read)")
        return self

    @cached_property
    def by_name(self) -> dict[str, RegisterSpec]:
        return {r.name: r for r in self.registers}

    @property
    def first_address(self) -> int:
        return min(r.address for r in self.registers)

    @property
    def span(self) -> int:
        """Number of registers from the first to the last one (a single block read)."""
        return max(r.address + r.width for r in self.registers) - self.first_address

    def register(self, name: str) -> RegisterSpec:
        try:
            return self.by_name[name]
        except KeyError as exc:
            raise ProfileError(f"profile {self.name} has no register {name!r}") from exc

    def decode_block(self, words: list[int]) -> dict[str, float]:
        """A block read from `first_address` of length `span` -> {name: value in unit}."""
        base = self.first_address
        return {r.name: r.decode(words[r.address - base :]) for r in self.registers}

    def to_si(self, values: dict[str, float]) -> dict[str, float]:
        """{name: value in unit} -> {name: value in SI units}."""
        return {name: value * self.by_name[name].si_factor for name, value in values.items()}

    def encode_block(self, values: dict[str, float]) -> list[int]:
        """{name: value in unit} -> a block starting at `first_address` (missing names are 0)."""
        words = [0] * self.span
        base = self.first_address
        for r in self.registers:
            if r.name in values:
                words[r.address - base : r.address - base + r.width] = r.encode(values[r.name])
        return words


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load a profile by file path or by bare name from `config/profiles/` (e.g. "pcs_v1")."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ProfileError(f"cannot read device profile {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"device profile {path} is not valid YAML: {exc}") from exc
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProfileError(f"device profile {path}: {where}: {first['msg']}") from exc
