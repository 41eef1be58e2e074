"""What a new active takes from the handover it reads from the lease's bucket (written by
whoever holds it, or by anyone who can reach NATS): each event entry checked on its own, the
month's peak only where the meter could have read it."""

from __future__ import annotations

import time

from ems.clock import ManualClock
from ems.config import parse_config
from ems.control_loop import Controller
from ems.events import EventLog
from ems.ha.handover import take_over
from ems.ha.role import HaRole
from ems.ha.settings import HaConfig
from tests.conftest import site_dict


def _role() -> HaRole:
    return HaRole(HaConfig(nats_url="nats://127.0.0.1:1", bucket="handover-input"), "site", "b", EventLog(None),
                  time.time, dict, lambda _state: None)


def test_events_of_the_wrong_shape_are_skipped_the_others_recorded() -> None:
    role = _role()
    good = {"origin": "a:1", "kind": "failover", "wall_s": 5.0, "reason": "GRID_LOSS", "data": {"x": 1}}
    role._import({"holder": "a", "events": [
        "not an event", 7, None, {"origin": "a:2", "kind": "k", "wall_s": "soon", "data": {}},
        {"origin": "a:3", "kind": "k", "wall_s": float("nan"), "data": {}}, {"origin": "a:4", "data": [1]},
        good]})
    got = role.events.query()
    assert [(e.kind, e.wall_s, e.data["origin"]) for e in got] == [("failover", 5.0, "a:1")]
    role._import({"holder": "a", "events": {"a:1": good}})  # not a list: nothing, no error
    role._import({"holder": "a", "events": [good]})  # already recorded: once
    assert role.events.count() == 1


def _controller() -> Controller:
    return Controller(parse_config(site_dict("mqtt://127.0.0.1:1"), "test"), ManualClock())


def test_a_handed_over_month_peak_beyond_the_meter_is_refused_a_higher_real_one_taken() -> None:
    ctl, peer = _controller(), _controller()
    t0 = 1_790_000_000.0
    for i in range(0, 3600, 10):  # an hour at 900 kW: closed 15-minute intervals at 900 kW
        peer.demand.add(900e3, 10.0, t0 + i)
    absurd = peer.demand.to_dict() | {"month_peak_w": 1e300}
    take_over(ctl, {"demand": absurd})
    assert ctl.demand.month_peak_w == 0.0 and ctl.events.count("handover_demand_refused") == 1
    take_over(ctl, {"demand": peer.demand.to_dict()})
    assert ctl.demand.month_peak_w == 900e3


def test_handover_numbers_out_of_float_range_are_refused_not_fatal() -> None:
    """json reads 10**400 as an int and Infinity as a float: float() of the one and int() of the
    other raised OverflowError, which no except of the handover expected: the standby's HA task,
    and with it the controller, ended at the moment it should take over."""
    ctl = _controller()
    unit = ctl.cfg.bess_units[0].id
    huge = 10**400
    take_over(ctl, {
        "operator": {"maintenance": {unit: {"by": "x", "why": "y", "at_wall_s": huge}},
                     "params": {"p": {"name": "x", "value": 1, "by": "x", "why": "y", "at_wall_s": huge}},
                     "force": {"mode": "setpoint", "setpoint_w": huge, "by": "m", "why": "w",
                               "at_wall_s": 1.0, "until_wall_s": 2.0}},
        "demand": {"format": 2, "month": "2026-11", "month_peak_w": huge}})
    take_over(ctl, {"operator": {"maintenance": {unit: {"by": "x", "why": "y", "at_wall_s": 1.0,
                                                        "event_id": float("inf")}}},
                    "demand": {"format": 2, "clock_steps_back": float("inf")}})
    assert not ctl.controls.maintenance and ctl.controls.force is None and not ctl.controls.params
    assert ctl.demand.month_peak_w == 0.0


def test_a_handed_over_event_time_out_of_float_range_is_skipped_not_fatal() -> None:
    role = _role()
    huge = {"origin": "a:9", "kind": "k", "wall_s": 10**400, "data": {}}
    role._import({"holder": "a", "events": [huge]})
    assert role.events.count() == 0


def test_json_from_a_third_party_is_refused_where_it_nests_deep() -> None:
    """A value 990 deep decodes, then raises RecursionError when it is rendered again a few frames
    deeper (json.dumps into an event, str() into a log): refused at the door instead."""
    import json

    import pytest

    from ems.model import bounded_json

    deep = "[" * 200 + "]" * 200
    assert isinstance(json.loads(deep), list)  # the parser alone lets it through
    for text in (deep, "[" * 5000, '{"a":' * 65 + "1" + "}" * 65):
        with pytest.raises(ValueError, match="nested"):
            bounded_json.loads(text)
    assert bounded_json.loads('{"holder": "a", "events": [{"data": {"x": [1, 2]}}]}')["holder"] == "a"
    assert bounded_json.depth({"a": [[1]]}, 64) == 3 and bounded_json.depth(7, 64) == 0
