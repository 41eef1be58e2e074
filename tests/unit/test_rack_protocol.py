"""Rack telemetry and cap payloads: round trips, and strict rejection of bad input."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import rack_protocol as rp
from drivers.errors import MalformedData


def _telemetry(**kw) -> bytes:
    body = {"rack": "row01-rack01", "ts": 1.0, "seq": 3, "state": "training", "power_w": 30000.0,
            "cap_w": None, "nameplate_w": 40000.0}
    body.update(kw)
    return json.dumps(body).encode()


def test_round_trip() -> None:
    t = rp.RackTelemetry("row01-rack01", 31000.5, 35000.0, 40000.0, "checkpoint", 9, 12.5)
    assert rp.decode_telemetry("row01-rack01", rp.encode_telemetry(t)) == t


@pytest.mark.parametrize("payload", [
    b"not json", b"[1, 2]", _telemetry(power_w="lots"), _telemetry(power_w=-1.0),
    _telemetry(power_w=float("nan")), _telemetry(state="melting"), _telemetry(seq=1.5),
    _telemetry(rack="row09-rack09"), _telemetry(power_w=100000.0), _telemetry(cap_w=True),
    b"\xff\xfe",
])
def test_malformed_telemetry_rejected(payload: bytes) -> None:
    with pytest.raises(MalformedData):
        rp.decode_telemetry("row01-rack01", payload)


@given(st.binary(max_size=200))
def test_decoder_never_raises_anything_but_malformed(payload: bytes) -> None:
    with contextlib.suppress(MalformedData):
        rp.decode_telemetry("row01-rack01", payload)


def test_row_caps_round_trip() -> None:
    caps = {"row01-rack01": 20000.0, "row01-rack02": None}
    assert rp.decode_row_caps(rp.encode_row_caps(caps, 1)) == caps
    assert rp.decode_cap(rp.encode_cap(None, 2)) is None
    with pytest.raises(MalformedData):
        rp.decode_row_caps(b'{"caps_w": [1]}')


def test_topics() -> None:
    assert rp.rack_id_from_topic(rp.telemetry_topic("ems/a", "row02-rack03")) == "row02-rack03"
    with pytest.raises(MalformedData):
        rp.rack_id_from_topic("ems/racks")


def test_the_configured_nameplate_rules_not_the_racks_claim() -> None:
    """One rack claiming 5 MW (and a nameplate to match) moved the site's load estimate from
    1.2 to 6.2 MW; two claiming 1.7e308 summed to infinity. The site file's 40 kW rules."""
    from drivers.racks import RackTelemetryStore

    ids = [f"row01-rack{k:02d}" for k in range(1, 31)]
    store = RackTelemetryStore(ids, 40_000.0, stale_after_s=5.0)
    topic = rp.telemetry_topic("ems", ids[0])
    for rid in ids:
        assert store.ingest(rp.telemetry_topic("ems", rid), _telemetry(rack=rid, power_w=40_000.0), 0.0)
    before = store.reading(0.0).load_estimate_w
    assert before == pytest.approx(1.2e6)
    assert not store.ingest(topic, _telemetry(power_w=5e6, nameplate_w=6e6), 0.0)
    assert not store.ingest(rp.telemetry_topic("ems", ids[1]),
                            _telemetry(rack=ids[1], power_w=1.7e308, nameplate_w=1.7e308), 0.0)
    assert not store.ingest(topic, _telemetry(power_w=30_000.0, cap_w=1e9), 0.0)  # a cap beyond it too
    after = store.reading(0.0)
    assert after.load_estimate_w == pytest.approx(before) and (after.nameplate_w == 40_000.0).all()
    assert store.malformed == 3
    assert store.ingest(topic, _telemetry(power_w=43_000.0, nameplate_w=99_000.0), 0.0)  # within 10 %: a transient
    assert store.reading(0.0).nameplate_w[0] == 40_000.0


def test_a_stale_rack_is_never_read_below_its_last_reported_power() -> None:
    """An agent reported 30 kW drawn and `cap_w: 0` (a fault, a W/kW slip, a lie), then went
    silent: the site's load estimate counted the rack as 0 W, the one thing a stale rack never is."""
    from drivers.racks import RackTelemetryStore

    ids = ["row01-rack01", "row01-rack02", "row01-rack03"]
    store = RackTelemetryStore(ids, 40_000.0, stale_after_s=5.0)
    assert store.ingest(rp.telemetry_topic("ems", ids[0]), _telemetry(power_w=30_000.0, cap_w=0.0), 0.0)
    assert store.ingest(rp.telemetry_topic("ems", ids[1]),
                        _telemetry(rack=ids[1], power_w=10_000.0, cap_w=25_000.0), 0.0)
    stale = store.reading(100.0)
    assert not stale.fresh.any()
    # the first at what it last drew, the second at its cap, the third (never heard) at nameplate
    assert stale.conservative_power_w().tolist() == [30_000.0, 25_000.0, 40_000.0]
    assert store.reading(1.0).conservative_power_w()[:2].tolist() == [30_000.0, 10_000.0]  # fresh: as reported
