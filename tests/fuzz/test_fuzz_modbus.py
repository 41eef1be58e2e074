"""Fuzz the Modbus side: register blocks of every profile through the drivers' conversion into
readings, and random writes through the simulated server's decoding into the plant.

Only `DriverError` subclasses may escape a decode; accepted readings are finite; the server
answers every write with success or a Modbus exception and hands the plant only values the
profile allows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.constants import ExcCodes

from drivers.bess import bms_reading, filler_reading, genset_reading, meter_reading, pcs_reading, pv_reading
from drivers.errors import DriverError
from drivers.profile import PROFILE_DIR, DeviceProfile, RegisterSpec, RegisterType, load_profile
from ems.clock import ScaledClock
from plant.config import PlantConfig, SimGensetConfig
from plant.plant import Plant
from sim_devices import registers as regs
from sim_devices.modbus_server import SimulatedModbusDevice
from tests.fuzz.strategies import FUZZ, reaches_both_paths

pytestmark = pytest.mark.fuzz

PROFILES = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
Reading = Callable[[dict[str, float], float, DeviceProfile], Any]
READERS: dict[str, Reading] = {
    "bms": lambda v, now, p: bms_reading(v, now, p),
    "pcs": lambda v, now, p: pcs_reading(v, now, p),
    "meter": lambda v, now, p: meter_reading(v, now),
    "genset": lambda v, now, p: genset_reading(v, now, p),
    "filler": lambda v, now, p: filler_reading(v, now),
    "pv": lambda v, now, p: pv_reading(v, now),
}
word = st.integers(min_value=0, max_value=0xFFFF)
# mostly what a device sends for a register: plain small numbers, all-ones, sign bits, NaN/inf
# patterns of float32 (0x7F80, 0x7FC0, 0xFF80 high words)
device_word = st.one_of(word, st.sampled_from([0, 1, 2, 0x7FFF, 0x8000, 0xFFFF, 0x7F80, 0x7FC0, 0xFF80]))


def _plausible(reg: RegisterSpec) -> st.SearchStrategy[float]:
    """Values a working device would hold in this register (in its unit)."""
    if reg.enum:
        return st.sampled_from(sorted(reg.enum)).map(float)
    lo = reg.min if reg.min is not None else -1000.0
    hi = reg.max if reg.max is not None else 1000.0
    if reg.type in (RegisterType.UINT16, RegisterType.UINT32):
        lo = max(lo, 0.0)
    return st.floats(min_value=lo, max_value=hi)


def plausible_block(profile: DeviceProfile) -> st.SearchStrategy[list[int]]:
    """A block a working device could send, with sometimes one word replaced by noise: it
    reaches the conversion into a reading, and its edges (a 0..1 SoC, an enum code)."""
    soc = {"soc": st.floats(min_value=0.0, max_value=100.0)}  # % in bms_v1
    values = st.fixed_dictionaries({r.name: soc.get(r.name, _plausible(r)) for r in profile.registers})

    def build(v: dict[str, float], noise: tuple[int, int] | None) -> list[int]:
        try:
            words = profile.encode_block(v)
        except DriverError:  # a value that does not fit its register: send zeros there
            words = [0] * profile.span
        if noise is not None:
            words[noise[0] % len(words)] = noise[1]
        return words

    return st.builds(build, values, st.none() | st.tuples(st.integers(min_value=0), word))


def test_every_profile_has_a_reader() -> None:
    assert PROFILES and {load_profile(n).kind for n in PROFILES} <= set(READERS)


@pytest.mark.parametrize("name", PROFILES)
def test_fuzz_register_block_to_reading(name: str) -> None:
    profile = load_profile(name)
    read = READERS[profile.kind]
    span = profile.span
    # a short block (a truncated response) or a word outside 16 bits must be refused, not crash
    blocks = st.one_of(plausible_block(profile), plausible_block(profile),
                       st.lists(device_word, min_size=span, max_size=span),
                       st.lists(device_word, max_size=span + 2),
                       st.lists(st.integers(min_value=-(2**20), max_value=2**20), min_size=span, max_size=span))

    seen: Counter[str] = Counter()

    @FUZZ
    @given(blocks)
    def check(words: list[int]) -> None:
        try:
            reading = read(profile.to_si(profile.decode_block(words)), 12.5, profile)
        except DriverError:
            seen["rejected"] += 1
            return
        seen["accepted"] += 1
        fields = dataclasses.asdict(reading)
        assert fields["read_at_s"] == 12.5
        for key, value in fields.items():
            if isinstance(value, float):
                assert math.isfinite(value), (key, value)
        if profile.kind == "bms":
            assert 0.0 <= reading.soc <= 1.0

    check()
    reaches_both_paths(seen)


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


def _plant() -> Plant:
    sim = PlantConfig(genset=SimGensetConfig())
    return Plant(sim, ["bess-1"], ["row01-rack01"], ["row01"], 40_000.0)


def _server(kind: str) -> SimulatedModbusDevice:
    """A simulated device wired to a real plant, as SimulatedSite wires it (not started: only
    its request handler is exercised)."""
    plant = _plant()
    clock = ScaledClock(1.0)
    unit = plant.units["bess-1"]
    if kind == "pcs":
        pcs = load_profile("pcs_v1")
        return SimulatedModbusDevice("pcs", pcs, lambda: regs.pcs_values(unit, pcs),
                                     regs.pcs_write(plant, unit, pcs, clock.monotonic), "127.0.0.1", 1)
    assert plant.genset is not None
    genset, gp = plant.genset, load_profile("genset_v1")
    return SimulatedModbusDevice("genset", gp, lambda: regs.genset_values(genset, gp),
                                 regs.genset_write(plant, "genset", gp, clock.monotonic), "127.0.0.1", 1)


@pytest.mark.parametrize("kind", ["pcs", "genset"])
def test_fuzz_simulated_server_write_decoding(kind: str, runner: asyncio.Runner) -> None:
    dev = _server(kind)
    p = dev.profile
    first, end = p.first_address, p.first_address + p.span
    anywhere = st.integers(min_value=1, max_value=6).flatmap(lambda count: st.tuples(
        st.sampled_from([6, 16, 16, 3]), st.integers(min_value=first - 3, max_value=end + 1), st.just(count),
        # usually as many words as the request says; sometimes fewer (a request cut short)
        st.lists(device_word, min_size=count, max_size=count) | st.lists(device_word, max_size=count)))
    # what a controller would send: a writable register, a value near its range
    rw = [r for r in p.registers if r.access == "rw"]

    def to_request(reg: RegisterSpec, value: float) -> tuple[int, int, int, list[int]]:
        try:
            words = reg.encode(value)
        except DriverError:
            words = [0xFFFF] * reg.width
        return (6 if reg.width == 1 else 16, reg.address, reg.width, words)

    aimed = st.sampled_from(rw).flatmap(lambda reg: st.builds(
        to_request, st.just(reg), _plausible(reg) | st.floats(min_value=-1e6, max_value=1e6)))
    writes = anywhere | aimed

    seen: Counter[str] = Counter()

    @FUZZ
    @given(writes)
    def check(write: tuple[int, int, int, list[int]]) -> None:
        fc, address, count, values = write
        dev.writes.clear()
        registers = [0] * (p.span + 16)
        result = runner.run(dev._action(fc, p.first_address, address, count, registers,
                                        None if fc == 3 else values))
        assert result is None or isinstance(result, ExcCodes)
        seen["rejected" if result is not None else "accepted" if dev.writes else "no register"] += 1
        if result is not None:
            assert not dev.writes  # a refused request changes nothing
        for w in dev.writes:
            reg = p.register(w.register)
            assert reg.access == "rw" and math.isfinite(w.value)
            reg.check_writable(w.value)  # within the register's declared range

    check()
    reaches_both_paths(seen)
