"""The fleet's pure pieces: the status summary and its flexibility, the 1-minute history, the
message parser, the outbox (order, acknowledgement, bounds, its own source id)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ems.envelope import EnvelopeParams
from ems.fleet.outbox import Outbox
from ems.fleet.store import MalformedMessage, parse
from ems.fleet.summary import MinuteHistory, status_summary
from ems.period import StepParams, StepState, step
from ems.published import PeriodResult
from policies.battery_limits import BatteryLimitsParams
from policies.peak_shaving import PeakShavingParams
from tests.snapshots import snapshot, unit

PARAMS = StepParams(limits=BatteryLimitsParams(0.1, 0.95), envelope=EnvelopeParams(0.1, 0.95),
                    peak=PeakShavingParams(1e6, 0.8e6))


def result(grid_w: float, units: tuple = ()) -> PeriodResult:  # type: ignore[type-arg]
    snap = snapshot(grid_w, units or None)
    return PeriodResult(1, snap, step(snap, PARAMS, StepState()), 0, 0.001, 0.0)


def test_flexibility_is_the_discharge_the_units_could_add_now() -> None:
    r = result(900e3, (unit("u1", power_w=100e3, max_discharge_w=500e3), unit("u2", power_w=-200e3,
                                                                             max_discharge_w=300e3)))
    s = status_summary(r)
    assert s["flex_w"] == pytest.approx(400e3 + 500e3)  # u2 could stop charging and discharge 300 kW
    assert s["grid_w"] == 900e3 and s["mode"] == "grid" and s["alarms"] == []


def test_an_unavailable_unit_gives_no_flexibility_and_is_an_alarm() -> None:
    r = result(900e3, (unit("u1", faults=("overtemp",)), unit("u2")))
    s = status_summary(r)
    assert s["flex_w"] == pytest.approx(500e3)
    assert any(a.startswith("u1:") for a in s["alarms"])


def test_the_minute_history_closes_each_minute_with_its_averages() -> None:
    h = MinuteHistory()
    base = {"soc": 0.5, "battery_w": 0.0, "reason": "IDLE"}
    assert h.add(600.0, {**base, "grid_w": 100.0}) is None
    assert h.add(630.0, {**base, "grid_w": 300.0}) is None
    closed = h.add(660.0, {**base, "grid_w": 50.0})
    assert closed is not None
    assert closed["minute_s"] == 600 and closed["samples"] == 2
    assert closed["grid_avg_w"] == 200.0 and closed["grid_max_w"] == 300.0 and closed["reason"] == "IDLE"


def test_a_minute_without_a_meter_has_no_grid_figures() -> None:
    h = MinuteHistory()
    h.add(0.0, {"grid_w": None, "soc": None, "battery_w": 0.0, "reason": "STALE_METER"})
    closed = h.add(60.0, {"grid_w": None, "soc": None, "battery_w": 0.0, "reason": "STALE_METER"})
    assert closed is not None and closed["grid_avg_w"] is None and closed["soc_avg"] is None


@pytest.mark.parametrize("raw", [b"", b"nope", b"[]", b'{"site": "s"}', b"\xff\xfe",
                                 json.dumps({"site": "s", "source": "x", "seq": True, "kind": "status", "ts": 1,
                                             "body": {}}).encode(),
                                 json.dumps({"site": "s", "source": "x", "seq": 1, "kind": "other", "ts": 1,
                                             "body": {}}).encode(),
                                 json.dumps({"site": "s", "source": "x", "seq": 1, "kind": "status", "ts": 1e300,
                                             "body": {}}).encode()])
def test_malformed_messages_are_refused_with_a_reason(raw: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse(raw)


def test_a_message_as_a_site_sends_it_parses() -> None:
    row = parse(json.dumps({"site": "s", "source": "x", "seq": 7, "kind": "events", "ts": 1.7e9,
                            "body": {"kind": "device_lost"}}).encode())
    assert (row.site, row.source, row.seq, row.kind) == ("s", "x", 7, "events")


def test_the_outbox_keeps_order_until_acknowledged_and_its_source_across_restarts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", 1000)
    for i in range(5):
        box.append("status", float(i), {"i": i})
    assert [p.body["i"] for p in box.head(3)] == [0, 1, 2]
    box.acknowledged(box.head(2)[-1].seq)
    source = box.source
    box.close()
    again = Outbox(tmp_path / "o.db", 1000)
    assert again.source == source and len(again) == 3
    assert [p.body["i"] for p in again.head(10)] == [2, 3, 4]


def test_a_full_outbox_drops_old_status_and_keeps_events() -> None:
    box = Outbox(None, 1000)
    box.append("events", 0.0, {"kind": "device_lost"})
    for i in range(1100):
        box.append("status", float(i), {"i": i})
    assert len(box) == 1000 and box.dropped == 101
    head = box.head(2)
    assert head[0].kind == "events" and head[1].body["i"] == 101
