"""`grid.loadtarget.set` requests: the shape, the signature, replays and stale ones refused."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ems.load_target import BadLoadTarget, LoadTargetDecoder, jws_sign

NOW = datetime(2026, 7, 1, 15, 0, tzinfo=UTC)
SECRET = b"s3cret-shared-with-the-aggregator"


def request(data: Any = None, **envelope: Any) -> bytes:
    body: dict[str, Any] = {
        "specversion": "1.0.2", "id": str(uuid.uuid4()), "source": "//grid/v1/isv/acme",
        "type": "grid.loadtarget.set.v1",
        "time": NOW.isoformat(), "datacontenttype": "application/json", "subject": "loadtarget",
        "correlationid": str(uuid.uuid4()),
        "data": {"target": {"value": 6, "unit": "MW"}, "start": (NOW + timedelta(minutes=5)).isoformat(),
                 "duration_s": 3600, "priority": 3} if data is None else data}
    body.update(envelope)
    return json.dumps(body).encode()


def test_a_request_becomes_an_event_under_its_correlation_id() -> None:
    raw = request()
    lt = LoadTargetDecoder(None).decode(raw, NOW.timestamp())
    e = lt.event
    assert e is not None and e.target_import_w == 6e6 and e.priority == 3
    assert e.end_s - e.start_s == 3600 and e.start_s == (NOW + timedelta(minutes=5)).timestamp()
    assert lt.correlation_id == json.loads(raw)["correlationid"] == e.event_id


def test_a_null_target_cancels() -> None:
    lt = LoadTargetDecoder(None).decode(request({"target": None}), NOW.timestamp())
    assert lt.event is None


def test_signed_data_is_checked_and_required_where_the_site_has_a_secret() -> None:
    data = {"target": {"value": 500, "unit": "kW"}, "start": NOW.isoformat(), "duration_s": 60}
    d = LoadTargetDecoder(SECRET)
    assert d.decode(request(jws_sign(data, SECRET)), NOW.timestamp()).event is not None
    with pytest.raises(BadLoadTarget, match="bad signature"):
        d.decode(request(jws_sign(data, b"another key")), NOW.timestamp())
    with pytest.raises(BadLoadTarget, match="must be signed"):
        d.decode(request(data), NOW.timestamp())
    tampered = jws_sign(data, SECRET).split(".")
    tampered[1] = jws_sign({**data, "target": {"value": 0, "unit": "W"}}, SECRET).split(".")[1]
    with pytest.raises(BadLoadTarget, match="bad signature"):
        d.decode(request(".".join(tampered)), NOW.timestamp())


def test_a_replay_and_a_stale_request_are_refused() -> None:
    d = LoadTargetDecoder(None, max_age_s=300)
    raw = request()
    d.decode(raw, NOW.timestamp())
    with pytest.raises(BadLoadTarget, match="replay"):
        d.decode(raw, NOW.timestamp())
    with pytest.raises(BadLoadTarget, match="from now"):
        d.decode(request(), NOW.timestamp() + 3600)


@pytest.mark.parametrize("raw", [
    b"", b"[]", b"{", b"x" * 20_000, b"[" * 5_000,  # nested past the parser's depth: RecursionError
    request(type="grid.loadtarget.other.v1"), request(specversion="0.3"), request(id="not-a-uuid"),
    request(source="a b"), request(time="yesterday"), request(time="2026-07-01T15:00:00"),
    request(datacontenttype="text/plain"),
    request({"target": {"value": float("inf"), "unit": "MW"}, "start": NOW.isoformat(), "duration_s": 60}),
    request({"target": {"value": -1, "unit": "MW"}, "start": NOW.isoformat(), "duration_s": 60}),
    request({"target": {"value": 1, "unit": "GW"}, "start": NOW.isoformat(), "duration_s": 60}),
    request({"target": {"value": 1, "unit": "MW"}, "start": NOW.isoformat(), "duration_s": 0}),
    request({"target": {"value": 1, "unit": "MW"}, "start": NOW.isoformat(), "duration_s": True}),
    request({"target": {"value": 1, "unit": "MW"}, "duration_s": 60}),
    request({"target": {"value": 1, "unit": "MW"}, "start": (NOW - timedelta(hours=2)).isoformat(), "duration_s": 60}),
    request({"target": {"value": 1, "unit": "MW"}, "start": (NOW + timedelta(days=367)).isoformat(), "duration_s": 60}),
    request({"target": {"value": 1, "unit": "MW"}, "start": "9999-12-30T00:00:00+14:00", "duration_s": 60}),
    request({"target": {"value": 1, "unit": "MW"}, "start": NOW.isoformat(), "duration_s": 60, "priority": 12}),
    request("a.b.c"), request("only-one-part"),
])
def test_malformed_requests_are_refused(raw: bytes) -> None:
    with pytest.raises(BadLoadTarget):
        LoadTargetDecoder(None).decode(raw, NOW.timestamp())


def test_a_number_too_large_for_a_float_is_refused_not_raised() -> None:
    # JSON integers are unbounded: 10**400 overflows a float (it used to escape as OverflowError)
    huge = request({"target": {"value": 10**400, "unit": "MW"}, "start": NOW.isoformat(), "duration_s": 60})
    with pytest.raises(BadLoadTarget):
        LoadTargetDecoder(None).decode(huge, NOW.timestamp())
