"""Fuzz the MQTT rack decoders: telemetry, caps, row caps, and the ingest that counts rejects.

Only `MalformedData` may escape a decoder; whatever is accepted is finite and plausible.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import rack_protocol as rp
from drivers.errors import MalformedData
from drivers.racks import RackTelemetryStore
from tests.fuzz.strategies import FUZZ, dumps, either, finite, json_values, mutated, numbers, reaches_both_paths

pytestmark = pytest.mark.fuzz

RACK = "row01-rack01"
RACKS = ["row01-rack01", "row01-rack02", "row02-rack01"]
power = st.one_of(st.floats(min_value=0, max_value=100_000), st.integers(min_value=0, max_value=100_000), numbers)

KEYS = ["rack", "ts", "seq", "state", "power_w", "cap_w", "nameplate_w"]
good_telemetry = st.fixed_dictionaries({
    "rack": st.sampled_from([RACK, RACK, *RACKS]), "ts": st.floats(min_value=0, max_value=2e9),
    "seq": st.integers(min_value=0, max_value=2**31), "state": st.sampled_from(sorted(rp.RACK_STATES)),
    "power_w": power, "cap_w": st.none() | power, "nameplate_w": st.just(40_000.0) | power,
})


telemetry_objects = mutated(good_telemetry, KEYS)
payloads = st.one_of(telemetry_objects.map(dumps), telemetry_objects.map(dumps), json_values.map(dumps),
                     st.binary(max_size=300))


def _check_telemetry(t: rp.RackTelemetry, rack_id: str) -> None:
    assert t.rack_id == rack_id and t.state in rp.RACK_STATES
    assert finite(t.power_w, t.nameplate_w, t.ts, t.cap_w)
    assert t.power_w >= 0 and t.nameplate_w > 0 and t.ts >= 0 and (t.cap_w is None or t.cap_w >= 0)
    assert t.power_w <= 2 * t.nameplate_w
    assert isinstance(t.seq, int) and 0 <= t.seq < 2**63


def test_decode_telemetry() -> None:
    seen: Counter[str] = Counter()

    @FUZZ
    @given(payloads)
    def check(payload: bytes) -> None:
        try:
            t = rp.decode_telemetry(RACK, payload)
        except MalformedData:
            seen["rejected"] += 1
            return
        seen["accepted"] += 1
        _check_telemetry(t, RACK)

    check()
    reaches_both_paths(seen)


caps_objects = st.fixed_dictionaries({}, optional={
    "caps_w": either(st.dictionaries(st.sampled_from(RACKS), either(st.one_of(st.none(), power)), max_size=4)),
    "cap_w": either(st.one_of(st.none(), power)),
    "seq": either(st.integers(min_value=0)),
})
cap_payloads = st.one_of(caps_objects.map(dumps), json_values.map(dumps), st.binary(max_size=200))


def test_decode_cap_and_row_caps() -> None:
    seen: Counter[str] = Counter()

    @FUZZ
    @given(cap_payloads)
    def check(payload: bytes) -> None:
        try:
            cap = rp.decode_cap(payload)
            assert cap is None or (math.isfinite(cap) and cap >= 0)
        except MalformedData:
            pass
        try:
            caps = rp.decode_row_caps(payload)
        except MalformedData:
            seen["rejected"] += 1
            return
        seen["accepted"] += 1
        assert all(isinstance(k, str) and (v is None or (math.isfinite(v) and v >= 0)) for k, v in caps.items())

    check()
    reaches_both_paths(seen)


topics = st.one_of(
    st.sampled_from(RACKS).map(lambda r: rp.telemetry_topic("ems/f", r)),
    st.sampled_from(RACKS).map(lambda r: f"ems/f/rows/row09/racks/{r}/telemetry"),  # another row's topic
    st.text(max_size=60),
    st.lists(st.sampled_from(["ems", "rows", "racks", "row01", "row01-rack01", "telemetry", "", "+"]),
             max_size=8).map("/".join),
)


@FUZZ
@given(st.lists(st.tuples(topics, payloads), min_size=1, max_size=2))
def test_store_ingest_counts_every_message_and_keeps_only_finite_values(messages: list[tuple[str, bytes]]) -> None:
    store = RackTelemetryStore(RACKS, 40_000.0, stale_after_s=5.0)
    accepted = sum(store.ingest(topic, payload, now_s=1.0) for topic, payload in messages)
    assert accepted == store.received
    assert store.received + store.malformed + store.unknown == len(messages)
    got = store.received_at_s == 1.0
    assert np.isfinite(store.power_w[got]).all() and np.isfinite(store.nameplate_w).all()
    assert (store.power_w[got] <= 2 * store.nameplate_w[got]).all()


_DEEP = [b"[" * 100_000, b'{"a":' * 50_000]  # nesting beyond the interpreter's recursion limit
_TELEMETRY = (b'{"rack": "row01-rack01", "ts": 1, "seq": %s, "state": %s, "power_w": %s, "nameplate_w": %s}')


@pytest.mark.parametrize("payload", [
    *_DEEP,
    _TELEMETRY % (b"1", b'"idle"', b"9" * 400, b"40000"),  # an integer too large for a float
    _TELEMETRY % (b"9" * 30, b'"idle"', b"1", b"40000"),  # a sequence number beyond 64 bits
    _TELEMETRY % (b"-1", b'"idle"', b"1", b"40000"),
    _TELEMETRY % (b"1", b'["idle"]', b"1", b"40000"),  # an unhashable state
    _TELEMETRY % (b"1", b'"idle"', b"0", b"0"),  # no nameplate
    _TELEMETRY % (b"1", b'"idle"', b"1", b"1e999"),  # Python's json reads 1e999 as infinity
])
def test_hostile_telemetry_is_malformed_and_counted(payload: bytes) -> None:
    with pytest.raises(MalformedData):
        rp.decode_telemetry(RACK, payload)
    store = RackTelemetryStore(RACKS, 40_000.0, stale_after_s=5.0)
    assert not store.ingest(rp.telemetry_topic("ems/f", RACK), payload, 1.0) and store.malformed == 1


@pytest.mark.parametrize("payload", [
    *_DEEP, b'{"caps_w": ' + b"[" * 100_000, b'{"cap_w": ' + b"9" * 400 + b"}",
    b'{"caps_w": {"row01-rack01": ' + b"9" * 400 + b"}}", b'{"cap_w": NaN}', b'{"caps_w": {"row01-rack01": -1}}',
])
def test_hostile_caps_are_malformed(payload: bytes) -> None:
    with pytest.raises(MalformedData):
        rp.decode_row_caps(payload) if b"caps_w" in payload else rp.decode_cap(payload)
