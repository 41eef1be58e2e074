"""What a new active takes from the handover it reads from the lease's bucket (written by
whoever holds it, or by anyone who can reach NATS): each event entry checked on its own."""

from __future__ import annotations

import time

from ems.events import EventLog
from ems.ha.role import HaRole
from ems.ha.settings import HaConfig


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
