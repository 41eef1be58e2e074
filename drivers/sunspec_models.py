"""SunSpec model blocks <-> point values, through the model definitions pysunspec2 ships.

Pure: no socket. A read block (the words of one model, from its ID register on) is
decoded with pysunspec2's `Model` class; what leaves here is the value of each top-level
point with its scale factor applied, or None where the device does not implement it
(the type's "not implemented" pattern: 0x8000 for int16, 0xFFFF for uint16 and enum16,
0x80000000 for int32, NaN for float32, ...; and any point whose scale factor is not
implemented). A missing value is never a number. Strings stay strings, enums and
bitfields their raw integer (their names are in the definition's symbols).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

import sunspec2.device as ss_device
import sunspec2.mb as ss_mb
import sunspec2.mdef as ss_mdef

from drivers.errors import MalformedData, NotSupported, RegisterRangeError, RegisterWriteForbidden

SUNS_MARKER = (0x5375, 0x6E53)  # "SunS"
BASE_ADDRESSES = (40000, 0, 50000)  # where a SunSpec map may start, in the order devices use them
END_MODEL_ID = 0xFFFF

PointValue = float | int | str | None


@dataclass(frozen=True)
class PointDef:
    name: str
    type: str  # SunSpec type: int16, uint16, enum16, bitfield32, sunssf, string, ...
    offset: int  # registers from the model's ID register
    size: int  # registers
    sf: str | int | None  # scale factor point name, or a fixed exponent
    units: str
    writable: bool
    symbols: dict[int, str]  # enum and bitfield names by value (or bit)
    mandatory: bool


@dataclass(frozen=True)
class ModelDef:
    model_id: int
    name: str
    length: int  # registers after ID and L (the value of L)
    points: dict[str, PointDef]

    @property
    def words(self) -> int:
        """Registers of the whole model, ID and L included."""
        return self.length + 2


@cache
def model_def(model_id: int) -> ModelDef:
    """The layout of one model as pysunspec2 defines it; NotSupported if it has none."""
    try:
        gdef = ss_device.get_model_def(model_id)[ss_mdef.GROUP]
        # repeating groups (a bank's strings) counted by a point: laid out with none
        model = ss_device.Model(model_id=model_id, data=_no_repeats(gdef))
    except (ss_mdef.ModelDefinitionError, ss_device.ModelError) as exc:
        raise NotSupported(f"SunSpec model {model_id} has no usable definition in pysunspec2: {exc}") from exc
    points: dict[str, PointDef] = {}
    for pdef in gdef.get(ss_mdef.POINTS, []):
        p = model.points.get(pdef[ss_mdef.NAME])
        if p is None:  # model 1's legacy pad
            continue
        sf = pdef.get(ss_mdef.SF)
        if isinstance(sf, str) and sf.lstrip("-").isdigit():
            sf = int(sf)
        points[p.pdef[ss_mdef.NAME]] = PointDef(
            name=pdef[ss_mdef.NAME], type=pdef[ss_mdef.TYPE], offset=p.offset, size=p.len, sf=sf,
            units=str(pdef.get(ss_mdef.UNITS, "")), writable=pdef.get(ss_mdef.ACCESS) == ss_mdef.ACCESS_RW,
            symbols={int(s[ss_mdef.VALUE]): str(s[ss_mdef.NAME]) for s in pdef.get(ss_mdef.SYMBOLS, [])},
            mandatory=pdef.get(ss_mdef.MANDATORY) == ss_mdef.MANDATORY_TRUE)
    return ModelDef(model_id, str(gdef[ss_mdef.NAME]), model.len - 2, points)


def _gdef(model_id: int) -> dict[str, Any]:
    gdef: dict[str, Any] = ss_device.get_model_def(model_id)[ss_mdef.GROUP]
    return gdef


def _no_repeats(gdef: dict[str, Any]) -> dict[str, Any]:
    """{count point: 0} for every repeating group counted by a point."""
    return {str(g[ss_mdef.COUNT]): 0 for g in gdef.get(ss_mdef.GROUPS, [])
            if isinstance(g.get(ss_mdef.COUNT), str) and not str(g[ss_mdef.COUNT]).isdigit()}


def _words_to_bytes(words: list[int]) -> bytes:
    try:
        return b"".join(w.to_bytes(2, "big") for w in words)
    except OverflowError as exc:
        raise MalformedData("a register value is not 16-bit") from exc


def _bytes_to_words(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def decode_model(model_id: int, words: list[int]) -> dict[str, PointValue]:
    """One model's words (from its ID register, `model_def(..).words` of them) -> {point: value}
    with scale factors applied; None for a point not implemented. MalformedData if the block
    is short, is another model, or a value cannot be decoded."""
    md = model_def(model_id)
    if len(words) < 2 or words[0] != model_id:
        raise MalformedData(f"SunSpec model {model_id}: the block does not start with its id")
    n = words[1] + 2  # a device's model may be shorter (an older revision): its missing points are None
    if len(words) < n:
        raise MalformedData(f"SunSpec model {model_id}: {len(words)} registers, its length says {n}")
    block = list(words[:n])
    # repeating groups (a bank's strings) are not read: decoded with none, so a device's count
    # cannot make the decoder build thousands of groups; the count itself is reported as read
    counts = {name: block[md.points[name].offset] for name in _no_repeats(_gdef(model_id))
              if name in md.points and md.points[name].offset < len(block)}
    for name in counts:
        block[md.points[name].offset] = 0
    try:
        model = ss_device.Model(model_id=model_id, model_len=words[1], data=_words_to_bytes(block))
    except (ss_device.ModelError, ValueError, TypeError, IndexError, struct.error) as exc:
        raise MalformedData(f"SunSpec model {model_id}: {exc}") from exc
    if "Error setting value" in model.error_info:
        raise MalformedData(f"SunSpec model {model_id}: {model.error_info.strip().splitlines()[0]}")
    raw: dict[str, Any] = {name: p.value for name, p in model.points.items()}
    for name, count in counts.items():
        raw[name] = None if count == 0xFFFF else count
    out: dict[str, PointValue] = {}
    for name, pd in md.points.items():
        out[name] = _scaled(pd, raw)
    return out


def _scaled(pd: PointDef, raw: dict[str, Any]) -> PointValue:
    v: PointValue = raw.get(pd.name)
    if v is None or pd.type == ss_mdef.TYPE_SUNSSF:
        return v
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if pd.sf is None or isinstance(v, str):
        return v
    exp = pd.sf if isinstance(pd.sf, int) else raw.get(pd.sf)
    if exp is None:  # its scale factor is not implemented: the value means nothing
        return None
    if not -10 <= exp <= 10:
        raise MalformedData(f"SunSpec point {pd.name}: scale factor {exp} outside -10..10")
    return float(v) * 10.0**exp


def encode_point(model_id: int, point: str, value: float, sf_exp: int | None) -> list[int]:
    """A value in the point's unit -> its registers, scaled by the device's current scale
    factor `sf_exp` (read from the device) where the point has one. Refused before sending:
    a read-only point, a non-finite value, a value that does not fit or is the type's
    not-implemented pattern, an enum code the definition does not name."""
    pd = model_def(model_id).points.get(point)
    if pd is None:
        raise NotSupported(f"SunSpec model {model_id} has no point {point!r}")
    if not pd.writable:
        raise RegisterWriteForbidden(point)
    if not math.isfinite(value):
        raise RegisterRangeError(point, value, "is not a finite number")
    info = ss_mb.point_type_info.get(pd.type)
    if info is None or pd.type in (ss_mdef.TYPE_STRING, ss_mdef.TYPE_FLOAT64, ss_mdef.TYPE_SUNSSF):
        raise NotSupported(f"SunSpec point {point}: ems does not write a {pd.type}")
    if pd.sf is not None and not isinstance(pd.sf, int) and sf_exp is None:
        raise NotSupported(f"SunSpec point {point}: its scale factor is not implemented")
    raw = raw_for(pd, value, sf_exp)
    if pd.type.startswith("enum") and raw not in pd.symbols:
        raise RegisterRangeError(point, value, f"is not one of the codes {sorted(pd.symbols)}")
    if not info.is_impl(raw):
        raise RegisterRangeError(point, value, f"is the {pd.type} not-implemented pattern")
    try:
        data = info.to_data(raw, pd.size * 2)
    except (struct.error, OverflowError) as exc:
        raise RegisterRangeError(point, value, f"does not fit a {pd.type}") from exc
    return _bytes_to_words(data)


def point_address(base_address: int, point: PointDef) -> int:
    return base_address + point.offset


def build_model_words(model_id: int, values: dict[str, PointValue]) -> list[int]:
    """A model image for a server: {point: raw register value (scale factor not applied), or
    None: not implemented} -> its words, ID and L included (the definition's fixed length)."""
    md = model_def(model_id)
    data = _no_repeats(ss_device.get_model_def(model_id)[ss_mdef.GROUP])
    data.update({k: v for k, v in values.items() if v is not None})
    data["ID"] = model_id
    data["L"] = md.length
    model = ss_device.Model(model_id=model_id, model_len=md.length, data=data)
    return _bytes_to_words(model.get_mb())


@cache
def _template(model_id: int) -> tuple[int, ...]:
    """The model with every point not implemented (pysunspec2's image of it)."""
    return tuple(build_model_words(model_id, {}))


def fast_model_words(model_id: int, values: dict[str, PointValue]) -> list[int]:
    """`build_model_words`, point by point into pysunspec2's empty image of the model with its
    own type encoders (a server answers many reads a second: a `Model` object per read is
    too slow). The same words: tests/unit/test_sunspec_models.py compares them."""
    md = model_def(model_id)
    words = list(_template(model_id))
    for name, v in values.items():
        pd = md.points.get(name)
        if pd is None or v is None or name in ("ID", "L"):
            continue
        info = ss_mb.point_type_info[pd.type]
        data = info.to_data(v, pd.size * 2)
        words[pd.offset : pd.offset + pd.size] = _bytes_to_words(data)
    return words


def raw_for(pd: PointDef, value: float, sf_exp: int | None) -> int | float:
    """A value in the point's unit -> the raw register value under scale factor `sf_exp`."""
    exp = pd.sf if isinstance(pd.sf, int) else sf_exp
    scaled = value if pd.sf is None or exp is None else value / 10.0**exp
    return float(scaled) if pd.type == ss_mdef.TYPE_FLOAT32 else round(scaled)
