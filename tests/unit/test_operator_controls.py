"""Operator controls: tuned parameters checked by the site file's models, maintenance, forced
mode, timed reverts, the override file, and the policy stack with a forced mode."""

from __future__ import annotations

import json

import pytest

from ems.clock import ManualClock
from ems.config import parse_config
from ems.events import EventLog
from ems.model.reasons import Reason
from ems.operator import overrides as ov
from ems.operator.controls import InvalidAction, OperatorControls, StateConflict, UnknownUnit
from ems.period import StepState, step
from policies import operator_force
from tests.conftest import site_dict
from tests.snapshots import snapshot, unit

CAP = "policies.peak_shaving.grid_import_cap_w"
EPOCH = 1e9  # tests.snapshots stamps snapshots with wall time 1e9 + now_s


def _cfg(**kw):
    d = site_dict("mqtt://127.0.0.1:1", **kw)
    d["policies"] = {"battery": {"soc_min": 0.1, "soc_max": 0.95},
                     "peak_shaving": {"grid_import_cap_w": 1e6, "recharge_below_w": 6e5}}
    return parse_config(d, "test")


def _controls(tmp_path=None, clock=None, events=None):
    path = None if tmp_path is None else tmp_path / "overrides.json"
    return OperatorControls(_cfg(), events or EventLog(), clock or ManualClock(epoch_wall=EPOCH), path)


def test_tuned_cap_reaches_the_policy_params_and_the_event_log() -> None:
    c = _controls()
    ev = c.set_param(CAP, 8e5, "alice", "evening peak tariff")
    assert c.step_params.peak is not None and c.step_params.peak.grid_import_cap_w == 8e5
    assert c.effective.policies.peak_shaving.grid_import_cap_w == 8e5
    assert c.configured.policies.peak_shaving.grid_import_cap_w == 1e6  # the site file's stays
    assert ev.kind == "operator_action"
    assert ev.data | {} == {"by": "alice", "why": "evening peak tariff", "action": "set_param", "param": CAP,
                            "value": 8e5, "previous": 1e6, "configured": 1e6, "revert_at_wall_s": None}
    assert c.events.query(limit=1)[0].id == ev.id


@pytest.mark.parametrize(("name", "value", "problem"), [
    (CAP, -5.0, "greater than 0"),
    (CAP, 5e5, "recharge_below_w must not exceed grid_import_cap_w"),  # the cross-field rule of the YAML
    ("policies.battery.soc_min", 1.5, "less than or equal to 1"),
    ("policies.battery.soc_min", 0.99, "soc_min must be below soc_max"),
    (CAP, "1e6", "expected number"),  # JSON types only, no coercion
    ("policies.peak_shaving.enabled", 1, "expected boolean"),
])
def test_out_of_bounds_values_are_refused_with_the_models_message(name, value, problem) -> None:
    c = _controls()
    before = c.step_params
    with pytest.raises(ov.InvalidValue) as err:
        c.set_param(name, value, "alice", "try")
    assert problem in str(err.value)
    assert c.step_params is before and c.events.count() == 0


def test_unknown_and_unconfigured_parameters() -> None:
    c = _controls()
    with pytest.raises(ov.UnknownParameter):
        c.set_param("control.period_s", 0.5, "alice", "not tunable")
    with pytest.raises(ov.ParameterUnavailable):  # this site has no arbitrage section
        c.set_param("policies.arbitrage.max_plan_age_s", 60.0, "alice", "no planner here")
    assert ov.tunable(c.configured) == [
        "policies.battery.soc_min", "policies.battery.soc_max", "policies.battery.ramp_w_per_s",
        "policies.peak_shaving.enabled", CAP, "policies.peak_shaving.recharge_below_w",
        "policies.peak_shaving.peak_hold_s"]


def test_field_schema_carries_the_models_bounds() -> None:
    c = _controls()
    assert ov.field_schema(c.configured, "policies.battery.soc_min")["maximum"] == 1.0
    assert ov.field_schema(c.configured, CAP)["exclusiveMinimum"] == 0


def test_disabling_peak_shaving_removes_it_from_the_stack() -> None:
    c = _controls()
    c.set_param("policies.peak_shaving.enabled", False, "bob", "meter recalibration")
    assert c.step_params.peak is None
    c.reset_param("policies.peak_shaving.enabled", "bob", "done")
    assert c.step_params.peak is not None and c.params == {}


def test_timed_override_reverts_on_the_site_clock() -> None:
    clock = ManualClock(epoch_wall=EPOCH)
    c = _controls(clock=clock)
    c.set_param(CAP, 9e5, "alice", "trial", revert_after_s=60.0)
    clock.advance(59.0)
    c.apply(snapshot(now_s=clock.now_s))
    assert c.step_params.peak is not None and c.step_params.peak.grid_import_cap_w == 9e5
    clock.advance(2.0)
    c.apply(snapshot(now_s=clock.now_s))
    assert c.step_params.peak is not None and c.step_params.peak.grid_import_cap_w == 1e6
    revert = c.events.query(limit=1)[0]
    assert revert.kind == "operator_revert" and revert.data["param"] == CAP and revert.data["value"] == 1e6


def test_UNIT_MAINTENANCE() -> None:
    c = _controls()
    ev = c.set_maintenance("bess-2", True, "carol", "replacing a fan")
    assert ev.reason == "UNIT_MAINTENANCE"
    snap = c.apply(snapshot(grid_w=2e6, units=(unit("bess-1"), unit("bess-2"))))
    by_id = {u.unit_id: u for u in snap.units}
    assert by_id["bess-2"].unavailable is Reason.UNIT_MAINTENANCE and by_id["bess-1"].available
    out = step(snap, c.step_params, StepState(), force=c.force_params)
    assert out.unit_setpoints_w["bess-2"] == 0.0 and out.unit_setpoints_w["bess-1"] > 0
    with pytest.raises(StateConflict):  # a state conflict (409), not a bad value (422)
        c.set_maintenance("bess-2", True, "carol", "again")
    with pytest.raises(UnknownUnit):
        c.set_maintenance("bess-9", True, "carol", "typo")
    c.set_maintenance("bess-2", False, "carol", "fan replaced")
    assert all(u.available for u in c.apply(snapshot(units=(unit("bess-1"), unit("bess-2")))).units)


def test_OPERATOR_FORCED() -> None:
    c = _controls()
    c.force_mode("zero", 0.0, 600.0, "dave", "PCS firmware update")
    # import far above the cap: peak shaving would discharge, but it stands down
    out = step(snapshot(grid_w=3e6, units=(unit("bess-1"), unit("bess-2"))), c.step_params, StepState(),
               force=c.force_params)
    assert out.setpoint_w == 0.0
    assert out.reason is Reason.OPERATOR_FORCED and out.decided_by == operator_force.NAME
    assert [d.policy for d in out.decisions] == ["battery_limits", "export_limit", "operator_force", "idle"]


def test_forced_setpoint_stays_inside_the_battery_limits() -> None:
    c = _controls()
    c.force_mode("setpoint", 5e6, 600.0, "dave", "capacity test")
    snap = snapshot(grid_w=3e6, units=(unit("bess-1"), unit("bess-2")))  # 2 x 500 kW available
    out = step(snap, c.step_params, StepState(), force=c.force_params)
    assert out.setpoint_w == pytest.approx(1e6)
    assert out.reason is Reason.UNIT_POWER_LIMIT
    # with the site drawing only 100 kW the site file's export limit (0 W) holds it there
    out = step(snapshot(grid_w=1e5, units=snap.units), c.step_params, StepState(), force=c.force_params)
    assert out.setpoint_w == pytest.approx(1e5) and out.reason is Reason.EXPORT_LIMIT


def test_forced_mode_ends_after_its_timeout_and_is_bounded() -> None:
    clock = ManualClock(epoch_wall=EPOCH)
    c = _controls(clock=clock)
    with pytest.raises(InvalidAction):
        c.force_mode("zero", 0.0, 10 * 86_400.0, "dave", "too long")
    c.force_mode("zero", 0.0, 30.0, "dave", "short test")
    clock.advance(31.0)
    c.apply(snapshot(now_s=clock.now_s))
    assert c.force is None and c.force_params is None
    assert c.events.query(limit=1)[0].kind == "operator_revert"
    with pytest.raises(StateConflict):  # documented as 409; it used to answer 422
        c.clear_force("dave", "nothing to clear")


def test_override_file_survives_a_restart_and_drops_what_no_longer_validates(tmp_path) -> None:
    clock = ManualClock(epoch_wall=EPOCH)
    c = _controls(tmp_path, clock)
    c.set_param(CAP, 9e5, "alice", "tuned")
    c.set_maintenance("bess-1", True, "carol", "inspection")
    c.force_mode("zero", 0.0, 100.0, "dave", "test")
    again = _controls(tmp_path, clock)
    assert again.step_params.peak is not None and again.step_params.peak.grid_import_cap_w == 9e5
    assert set(again.maintenance) == {"bess-1"} and again.force is not None
    # an override the site file now forbids (e.g. a later, stricter file) is dropped, with an event
    path = tmp_path / "overrides.json"
    data = json.loads(path.read_text())
    data["params"][CAP]["value"] = -1.0
    path.write_text(json.dumps(data))
    events = EventLog()
    third = _controls(tmp_path, clock, events)
    assert third.params == {} and third.step_params.peak is not None and third.step_params.peak.grid_import_cap_w == 1e6
    assert events.query(limit=1)[0].kind == "operator_revert"


def test_forced_mode_that_ran_out_while_stopped_is_not_resumed(tmp_path) -> None:
    clock = ManualClock(epoch_wall=EPOCH)
    _controls(tmp_path, clock).force_mode("zero", 0.0, 60.0, "dave", "test")
    clock.advance(120.0)  # the controller was down past the timeout
    events = EventLog()
    again = _controls(tmp_path, clock, events)
    assert again.force is None and again.force_params is None
    revert = events.query(limit=1)[0]
    assert revert.kind == "operator_revert" and revert.data["action"] == "force_mode"


def test_corrupt_override_file_is_an_error_not_ignored(tmp_path) -> None:
    (tmp_path / "overrides.json").write_text("{not json")
    with pytest.raises(ov.OverrideError, match="not valid JSON"):
        _controls(tmp_path)


def test_every_change_publishes_a_view_that_later_changes_leave_alone() -> None:
    seen = []
    c = _controls()
    c.on_change = seen.append
    before = c.view
    c.set_param(CAP, 8e5, "alice", "evening peak tariff")
    c.set_maintenance("bess-2", True, "bob", "inverter inspection")
    c.force_mode("zero", 0.0, 60.0, "bob", "firmware check")
    assert [v is c.view for v in seen] == [False, False, True] and len(seen) == 3
    first, second, third = seen
    assert dict(first.params).keys() == {CAP} and first.maintenance == frozenset() and not first.force_active
    assert second.maintenance == {"bess-2"} and third.force_active
    assert third.summary["force"]["by"] == "bob" and first.summary["force"] is None
    assert before.params == {} and before.effective.policies.peak_shaving.grid_import_cap_w == 1e6
    with pytest.raises(TypeError):
        first.params[CAP] = None  # read-only for the readers in other threads


def test_a_forced_setpoint_beyond_what_the_units_can_do_is_refused() -> None:
    """5 MW forced on a site of 2 x 500 kW with one unit in maintenance used to be accepted
    (and shown as done): now it is refused, with what the site can do."""
    c = _controls()
    c.set_maintenance("bess-2", True, "carol", "fan")
    c.observe_capability(c.apply(snapshot(units=(unit("bess-1"), unit("bess-2")))))
    with pytest.raises(InvalidAction, match=r"discharge at most 0\.500 MW now \(1 of 2 units available\)"):
        c.force_mode("setpoint", 5e6, 600.0, "dave", "capacity test")
    with pytest.raises(InvalidAction, match=r"charge at most 0\.500 MW"):
        c.force_mode("setpoint", -6e5, 600.0, "dave", "capacity test")
    assert c.force is None and c.events.count("operator_action") == 1  # only the maintenance
    c.force_mode("setpoint", 4e5, 600.0, "dave", "capacity test")  # within it: taken
    assert c.force is not None and c.force.setpoint_w == 4e5


def _standby():
    c = _controls()
    c.observe_capability(c.apply(snapshot(units=(unit("bess-1"), unit("bess-2")))))  # 2 x 500 kW seen
    return c


def test_a_hostile_handover_is_refused_entry_by_entry() -> None:
    """The old active's operator state reaches the new active over the network: each entry is
    checked as an operator's action would be, the good ones held, the others named and dropped."""
    a = _controls()
    a.set_param(CAP, 8e5, "alice", "evening peak")
    a.set_maintenance("bess-2", True, "carol", "fan")
    good = a.state()
    now = EPOCH
    hostile = {
        "params": {**good["params"], "broken": {"name": CAP}, "junk": 7},
        "maintenance": {**good["maintenance"], "bess-9": {"by": "x", "why": "y", "at_wall_s": now},
                        "bess-1": {"by": "x"}},
        "force": {"mode": "setpoint", "setpoint_w": 5e6, "by": "mallory", "why": "w", "at_wall_s": now,
                  "until_wall_s": now + 60},
    }
    c = _standby()
    refused = c.adopt(hostile)
    assert set(c.params) == {CAP} and set(c.maintenance) == {"bess-2"} and c.force is None
    assert sorted(r.split(":")[0] for r in refused) == ["force", "maintenance.bess-1", "maintenance.bess-9",
                                                         "params.broken", "params.junk"]
    assert c.step_params.peak is not None and c.step_params.peak.grid_import_cap_w == 8e5


@pytest.mark.parametrize("force", [
    {"mode": "setpoint", "setpoint_w": float("nan")},
    {"mode": "turbo", "setpoint_w": 1e5},
    {"mode": "setpoint", "setpoint_w": 1e5, "until_wall_s": 1e18},  # beyond http.max_force_s
    {"mode": "setpoint", "setpoint_w": -2e6},  # beyond what the units can charge at
    {"mode": "setpoint", "setpoint_w": "lots"},
])
def test_a_forced_mode_out_of_bounds_is_not_taken_over(force) -> None:
    f = {"by": "m", "why": "w", "at_wall_s": EPOCH, "until_wall_s": EPOCH + 600, **force}
    c = _standby()
    assert [r.split(":")[0] for r in c.adopt({"force": f})] == ["force"] and c.force is None
    assert c.force_params is None


@pytest.mark.parametrize("section", [[1, 2], "x", 5])
def test_a_handover_section_of_the_wrong_shape_is_refused_not_a_crash(section) -> None:
    c = _standby()
    refused = c.adopt({"params": section, "maintenance": section})
    assert [r.split(":")[0] for r in refused] == ["params", "maintenance"]
    c.adopt({"force": {"mode": "setpoint", "setpoint_w": 1e5, "by": "m", "why": "w", "at_wall_s": EPOCH,
                       "until_wall_s": EPOCH + 600}})  # a good one within the site: held
    assert c.force is not None and c.force.setpoint_w == 1e5
