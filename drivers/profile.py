"""Device profiles: a Modbus register map as data (YAML), checked against a schema.

The simulator serves the same profiles the drivers read, so a register is described
once: address, type, scale, unit and access, the names of its enum codes and of its
bits. `value_in_unit = raw * scale`; the drivers convert units to SI with `to_si`.
What each kind of device must offer (the registers the drivers read and write, and
what each must be) is data too: `config/device-kinds.yaml`, checked on every load.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable
from enum import StrEnum
from functools import cache, cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drivers.errors import MalformedData, ProfileError, RegisterRangeError, RegisterWriteForbidden

PROFILE_DIR = Path(__file__).resolve().parent.parent / "config" / "profiles"
# beside the profiles, not among them: everything in PROFILE_DIR is a profile
KINDS_FILE = PROFILE_DIR.parent / "device-kinds.yaml"


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
_NAME = r"^[a-z][a-z0-9_]*$"


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


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
    enum: dict[int, str] | None = None  # unit "enum": code -> name
    bits: dict[int, str] | None = None  # unit "bitfield": bit number (0 = least significant) -> name
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> RegisterSpec:
        if self.unit not in _UNITS:
            raise ValueError(f"unit {self.unit!r} is not one of {sorted(_UNITS)}")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        if (self.unit == "enum") != (self.enum is not None):
            raise ValueError("an enum register (unit: enum) names its codes in `enum`, and only it has them")
        if self.bits is not None and self.unit != "bitfield":
            raise ValueError("only a bitfield register (unit: bitfield) has `bits`")
        if self.unit in ("enum", "bitfield") and (self.scale != 1.0 or self.type is RegisterType.FLOAT32):
            raise ValueError(f"a {self.unit} register is an integer type with scale 1")
        for what, names in (("enum", self.enum), ("bits", self.bits)):
            if names is None:
                continue
            # a name is looked up both ways (the simulator encodes names): each must be unique
            dup = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
            if dup:
                raise ValueError(f"{what} name {_quoted(dup)} appears twice")
            bad = [n for n in names.values() if not re.match(_NAME, n)]
            if bad:
                raise ValueError(f"{what} name {bad[0]!r} is not lower_snake_case")
        if self.bits is not None:
            out = [b for b in self.bits if not 0 <= b < 16 * self.width]
            if out:
                raise ValueError(f"bit {out[0]} does not fit a {self.type.value} register")
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
        """Refuse a write before it is sent: read-only register, value outside min/max, or
        a code the register's enum does not name."""
        if self.access != "rw":
            raise RegisterWriteForbidden(self.name)
        if not math.isfinite(value):  # NaN, or infinity on a register without bounds
            raise RegisterRangeError(self.name, value, "is not a finite number")
        if self.min is not None and value < self.min:
            raise RegisterRangeError(self.name, value, f"is below min {self.min}")
        if self.max is not None and value > self.max:
            raise RegisterRangeError(self.name, value, f"is above max {self.max}")
        if self.enum is not None and value not in self.enum:
            raise RegisterRangeError(self.name, value, f"is not one of the codes {sorted(self.enum)}")

    # --- names of enum codes and bits, both ways -----------------------------------------
    def enum_name(self, value: float) -> str:
        """A code read from the device -> its name; MalformedData for a code the profile does
        not name (a device that sends it is not the device the profile describes)."""
        names = self.enum or {}
        if value not in names:
            raise MalformedData(f"register {self.name!r}: unknown code {value:g}")
        return names[int(value)]

    def enum_code(self, name: str) -> int:
        """A name -> the code this device uses for it; ProfileError if it has none."""
        for code, n in (self.enum or {}).items():
            if n == name:
                return code
        raise ProfileError(f"register {self.name!r} has no enum code named {name!r}")

    def bit_names(self, value: float) -> tuple[str, ...]:
        """The names of the bits set in a bitfield value, lowest bit first; a bit the profile
        does not name reads as `bit<n>` (set is set: it is never dropped)."""
        if not math.isfinite(value):
            raise MalformedData(f"register {self.name!r}: {value} is not a bitfield")
        raw = int(value) & ((1 << 16 * self.width) - 1)
        names = self.bits or {}
        return tuple(names.get(b, f"bit{b}") for b in range(16 * self.width) if raw >> b & 1)

    def bits_value(self, names: Iterable[str]) -> int:
        """Names -> the bitfield value with their bits set; ProfileError for a name with no bit."""
        bit_of = {n: b for b, n in (self.bits or {}).items()}
        value = 0
        for name in names:
            if name not in bit_of:
                raise ProfileError(f"register {self.name!r} has no bit named {name!r}")
            value |= 1 << bit_of[name]
        return value


class RegisterNeed(BaseModel):
    """What a kind of device requires of one register (config/device-kinds.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quantity: str | None = None  # its unit must be one of the quantity's units
    enum: list[str] | None = None  # its codes must name exactly these
    bits: list[str] | None = None  # its bits must include these names
    access: Literal["r", "rw"] = "r"  # rw: the controller writes it

    @model_validator(mode="after")
    def _one_shape(self) -> RegisterNeed:
        if sum(x is not None for x in (self.quantity, self.enum, self.bits)) != 1:
            raise ValueError("give exactly one of quantity, enum, bits")
        return self

    def problem(self, reg: RegisterSpec, kind: str, quantities: dict[str, list[str]]) -> str | None:
        """Why `reg` does not meet this need (None: it does)."""
        name = reg.name
        if self.access == "rw" and reg.access != "rw":
            return f"register {name!r} must be writable (access: rw): the controller writes it"
        if self.quantity is not None:
            units = quantities[self.quantity]
            if reg.unit not in units:
                return f"register {name!r} must be a {self.quantity} in {_quoted(units)}, not {reg.unit!r}"
        if self.enum is not None:
            if reg.enum is None:
                return f"register {name!r} must be an enum (unit: enum) naming {_quoted(self.enum)}"
            missing = [n for n in self.enum if n not in reg.enum.values()]
            if missing:
                return f"register {name!r} has no enum code named {_quoted(missing)}"
            unknown = [n for n in reg.enum.values() if n not in self.enum]
            if unknown:
                return (f"register {name!r}: enum name {_quoted(unknown)} is unknown to kind {kind} "
                        f"(it knows {_quoted(self.enum)})")
        if self.bits is not None:
            if reg.unit != "bitfield":
                return f"register {name!r} must be a bitfield (unit: bitfield)"
            missing = [n for n in self.bits if n not in (reg.bits or {}).values()]
            if missing:
                return f"register {name!r} has no bit named {_quoted(missing)}"
        return None


class KindSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    registers: dict[str, RegisterNeed] = Field(min_length=1)


class DeviceKinds(BaseModel):
    """Every kind of device ems knows and what its profiles must offer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quantities: dict[str, list[str]]
    kinds: dict[str, KindSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_units(self) -> DeviceKinds:
        for q, units in self.quantities.items():
            bad = [u for u in units if u not in _UNITS]
            if bad:
                raise ValueError(f"quantity {q}: unit {bad[0]!r} is not one of {sorted(_UNITS)}")
        for kind, spec in self.kinds.items():
            for reg, need in spec.registers.items():
                if need.quantity is not None and need.quantity not in self.quantities:
                    raise ValueError(f"kinds.{kind}.{reg}: unknown quantity {need.quantity!r}")
        return self


@cache
def device_kinds() -> DeviceKinds:
    """config/device-kinds.yaml, read once; ProfileError if it cannot be used."""
    try:
        data = yaml.safe_load(KINDS_FILE.read_text())
        return DeviceKinds.model_validate(data)
    except OSError as exc:
        raise ProfileError(f"cannot read the device kinds {KINDS_FILE}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"device kinds {KINDS_FILE} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        raise ProfileError(f"device kinds {KINDS_FILE}: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


class DeviceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: str  # one of config/device-kinds.yaml
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

    @model_validator(mode="after")
    def _meets_its_kind(self) -> DeviceProfile:
        kinds = device_kinds()
        spec = kinds.kinds.get(self.kind)
        if spec is None:
            raise ValueError(f"kind {self.kind!r} is not one of {_quoted(kinds.kinds)} ({KINDS_FILE.name})")
        regs = {r.name: r for r in self.registers}
        for name, need in spec.registers.items():
            if name not in regs:
                raise ValueError(f"kind {self.kind} requires register {name!r}")
            why = need.problem(regs[name], self.kind, kinds.quantities)
            if why is not None:
                raise ValueError(f"kind {self.kind}: {why}")
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


def read_profile_yaml(path: Path, what: str) -> object:
    """A profile file's YAML; ProfileError naming the file when it cannot be read or parsed."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ProfileError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"{what} {path} is not valid YAML: {exc}") from exc


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load a profile by file path or by bare name from `config/profiles/` (e.g. "pcs_v1"),
    checked against its kind. ProfileError names the file (and the profile) and what is wrong."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    data = read_profile_yaml(path, "device profile")
    label = str(path)
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        label += f" ({data['name']})"
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"device profile {label}: {_first_error(exc)}") from exc
