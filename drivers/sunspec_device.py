"""A SunSpec device over our async pymodbus link: discovery, model reads, point writes.

Discovery reads two registers at 40000, 0 and 50000 (or the profile's base address)
for the "SunS" marker, then walks the model headers (ID, L) up to the end marker
0xFFFF. A model is read in requests of at most 125 registers and decoded with
pysunspec2's definitions (`drivers/sunspec_models.py`). A write scales the value with
the scale factor last read from the device and goes with the profile's function code.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.errors import DeviceRejected, MalformedData, NotSupported
from drivers.modbus_link import ModbusLink, WriteCode
from drivers.sunspec_models import (
    BASE_ADDRESSES,
    END_MODEL_ID,
    SUNS_MARKER,
    PointValue,
    decode_model,
    encode_point,
    model_def,
)

MAX_READ = 125  # registers in one Modbus read
MAX_MODELS = 64


class NotSunSpec(NotSupported):
    """The device answers, but has no "SunS" marker where SunSpec maps start."""


@dataclass(frozen=True)
class ModelLocation:
    model_id: int
    address: int  # of its ID register
    length: int  # L: registers after ID and L


class SunSpecDevice(ModbusLink):
    def __init__(self, name: str, host: str, port: int, unit_id: int = 1, timeout_s: float = 0.5,
                 write_function_code: WriteCode = 16, base_address: int | None = None) -> None:
        super().__init__(name, host, port, unit_id, timeout_s)
        self.write_function_code: WriteCode = write_function_code
        self.base_address = base_address
        self.models: dict[int, ModelLocation] = {}  # the first of each id the device lists
        self.model_list: list[ModelLocation] = []
        self._sf: dict[tuple[int, str], int | None] = {}  # scale factors last read, by model and name
        self.malformed = 0  # blocks refused as malformed (the caller logs them once)

    @property
    def discovered(self) -> bool:
        return bool(self.model_list)

    async def discover(self) -> list[ModelLocation]:
        """Find "SunS" and list the models; NotSunSpec if no base address has it."""
        bases = BASE_ADDRESSES if self.base_address is None else (self.base_address,)
        for base in bases:
            try:
                marker = await self.read_words(base, 2, "read SunS marker")
            except DeviceRejected:  # illegal address: nothing there
                continue
            if tuple(marker) == SUNS_MARKER:
                return await self._walk(base + 2)
        raise NotSunSpec(f"{self.name}: no SunSpec marker at {', '.join(str(b) for b in bases)}")

    async def _walk(self, address: int) -> list[ModelLocation]:
        found: list[ModelLocation] = []
        for _ in range(MAX_MODELS):
            if address + 2 > 65536:
                break
            model_id, length = await self.read_words(address, 2, "read model header")
            if model_id == END_MODEL_ID:
                break
            found.append(ModelLocation(model_id, address, length))
            address += 2 + length
        else:
            raise MalformedData(f"{self.name}: more than {MAX_MODELS} SunSpec models, or no end marker")
        self.model_list = found
        self.models = {}
        for loc in found:
            self.models.setdefault(loc.model_id, loc)
        return found

    def has(self, model_id: int) -> bool:
        return model_id in self.models

    def location(self, model_id: int) -> ModelLocation:
        loc = self.models.get(model_id)
        if loc is None:
            raise NotSupported(f"{self.name}: the device has no SunSpec model {model_id}")
        return loc

    async def read_block(self, loc: ModelLocation) -> list[int]:
        words: list[int] = []
        total = loc.length + 2
        while len(words) < total:
            count = min(MAX_READ, total - len(words))
            words += await self.read_words(loc.address + len(words), count, f"read from model {loc.model_id}")
        return words

    async def read_block_decoded(self, loc: ModelLocation) -> dict[str, PointValue]:
        """One model where the device lists it (a second instance of an id included)."""
        return self._decode(loc.model_id, await self.read_block(loc))

    async def read_model(self, model_id: int) -> dict[str, PointValue]:
        """The model's points, scaled, None where not implemented (MalformedData: refused)."""
        return (await self.read_models((model_id,)))[model_id]

    async def read_models(self, model_ids: tuple[int, ...]) -> dict[int, dict[str, PointValue]]:
        """Several models; the span from the first to the last is read in as few requests as
        it takes (125 registers each) when they lie close together, each model alone if not."""
        if not self.discovered:
            await self.discover()
        locs = sorted((self.location(m) for m in model_ids), key=lambda loc: loc.address)
        lo, hi = locs[0].address, max(loc.address + loc.length + 2 for loc in locs)
        blocks: dict[int, list[int]] = {}
        if hi - lo <= sum(loc.length + 2 for loc in locs) + MAX_READ // 2:  # little in between
            words = await self.read_block(ModelLocation(locs[0].model_id, lo, hi - lo - 2))
            for loc in locs:
                blocks[loc.model_id] = words[loc.address - lo : loc.address - lo + loc.length + 2]
        else:
            for loc in locs:
                blocks[loc.model_id] = await self.read_block(loc)
        return {m: self._decode(m, blocks[m]) for m in model_ids}

    def _decode(self, model_id: int, words: list[int]) -> dict[str, PointValue]:
        if words[:1] != [model_id]:  # the map moved (a firmware update, a swapped device): find it again
            self.model_list, self.models, self._sf = [], {}, {}
        try:
            values = decode_model(model_id, words)
        except MalformedData as exc:
            self.malformed += 1
            raise MalformedData(f"{self.name}: {exc}") from exc
        for name, pd in model_def(model_id).points.items():
            if pd.type == "sunssf":
                v = values[name]
                self._sf[(model_id, name)] = None if v is None else int(v)
        return values

    async def write_point(self, model_id: int, point: str, value: float) -> None:
        """One point, in its unit (W, Pct, Secs, an enum code); refused before sending if the
        definition does not allow it."""
        if not self.discovered:
            await self.discover()
        loc = self.location(model_id)
        pd = model_def(model_id).points.get(point)
        if pd is None:
            raise NotSupported(f"SunSpec model {model_id} has no point {point!r}")
        sf_exp: int | None = None
        if isinstance(pd.sf, str):
            if (model_id, pd.sf) not in self._sf:
                await self.read_model(model_id)
            sf_exp = self._sf.get((model_id, pd.sf))
        words = encode_point(model_id, point, value, sf_exp)
        await self.write_words(loc.address + pd.offset, words, f"write {model_id}.{point}", self.write_function_code)
