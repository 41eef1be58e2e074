"""The armed failover plan and island supervision as tables: snapshot -> plan / actions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ems.backtest.config import BacktestConfig
from ems.config import FailoverConfig
from ems.failover.watcher import GridWatcher, judge
from ems.model.racks import RacksReading
from ems.model.readings import GensetReading, GensetState
from ems.model.reasons import Reason
from ems.step_params import step_params
from policies import island, ride_through
from policies.failover_plan import FailoverParams, arm, shed_sequence
from policies.reserve import floor_soc
from policies.ride_through import Verdict
from tests.snapshots import snapshot, unit

P = FailoverParams(shed_order=("row03",), critical_rows=frozenset({"row01"}), min_cap_fraction=0.25,
                   island_loading=1.0, overhead_fraction=0.0, soc_floor=0.05, bridge_s=600.0, start_genset=True)


def _racks(power_w: float = 30_000.0, rows: int = 3, per_row: int = 2, fresh: bool = True) -> RacksReading:
    ids = tuple(f"row{r + 1:02d}-rack{k + 1:02d}" for r in range(rows) for k in range(per_row))
    n = len(ids)
    return RacksReading(ids, tuple(i.split("-")[0] for i in ids), np.full(n, power_w), np.full(n, np.nan),
                        np.full(n, 40_000.0), np.zeros(n) if fresh else np.full(n, np.inf), 5.0)


def _snap(units=None, racks=None, genset=None, grid_ok=None, now_s=0.0):
    s = snapshot(0.0, units, now_s=now_s)
    return replace(s, racks=racks or _racks(), genset=genset, grid_ok=grid_ok)


def _genset(state: GensetState, run_s: float = 0.0, power_w: float = 0.0) -> GensetReading:
    return GensetReading(state, power_w, 500_000.0, 0.0, 0.0, run_s, 1, 0.0)


def test_shed_sequence_configured_rows_first_critical_last() -> None:
    rows = ["row01", "row02", "row03", "row04"]
    assert shed_sequence(rows, ("row02",), frozenset({"row01"})) == ["row02", "row04", "row03", "row01"]


def test_FAILOVER_ARMED() -> None:
    plan = arm(_snap(racks=_racks(30_000.0)), P)  # 180 kW against 2 x 500 kW
    assert plan.reason is Reason.FAILOVER_ARMED and plan.rack_caps_w == {}
    assert plan.units == ("u1", "u2") and plan.genset_start


def test_FAILOVER_SHED() -> None:
    # 6 racks x 30 kW = 180 kW against one unit allowed 100 kW: 80 kW to shed
    snap = _snap(units=(unit("u1", max_discharge_w=100e3),), racks=_racks(30_000.0))
    plan = arm(snap, P)
    assert plan.reason is Reason.FAILOVER_SHED
    assert plan.deliverable_w == pytest.approx(100e3)
    # row03 first (configured), then row02; row01 is critical and untouched
    assert set(plan.rack_caps_w) == {"row03-rack01", "row03-rack02", "row02-rack01", "row02-rack02"}
    shed = sum(30_000.0 - c for c in plan.rack_caps_w.values())
    assert shed == pytest.approx(80_000.0)
    assert all(c >= 10_000.0 for c in plan.rack_caps_w.values())  # never below the minimum cap
    assert plan.rows_capped["row03"] == {"row03-rack01": 10_000.0, "row03-rack02": 10_000.0}


def test_FAILOVER_SHORT() -> None:
    snap = _snap(units=(unit("u1", max_discharge_w=20e3),), racks=_racks(30_000.0))
    plan = arm(snap, P)
    assert plan.reason is Reason.FAILOVER_SHORT and plan.shortfall_w > 0
    assert arm(_snap(units=(unit("u1", faults=("internal",)),)), P).reason is Reason.FAILOVER_SHORT  # nobody to form it


def test_stale_racks_are_planned_at_nameplate_never_zero() -> None:
    plan = arm(_snap(racks=_racks(0.0, fresh=False)), P)
    assert plan.island_load_w == pytest.approx(6 * 40_000.0)


def test_low_soc_limits_what_the_battery_can_bridge() -> None:
    snap = _snap(units=(unit("u1", soc=0.08), unit("u2", soc=0.08)))
    plan = arm(snap, P)
    # 2 x (0.08 - 0.05) x 1 MWh over 600 s = 360 kW
    assert plan.deliverable_w == pytest.approx(2 * 0.03 * 1e6 * 3600 / 600)


IP = island.IslandParams(plan=P, reconnect_stable_s=10.0, cap_release_s=4.0, has_genset=True,
                         genset_start_after_s=0.0, genset_min_run_s=30.0, genset_charge_w=50_000.0)


def test_ISLANDED() -> None:
    state = island.on_grid_loss(island.IslandState(), 0.0, {}, genset_started=True)
    actions, state = island.step(_snap(grid_ok=False, now_s=1.0), IP, state)
    assert actions.reason is Reason.ISLANDED and not actions.reconnect and state.islanded


def test_genset_starts_after_the_configured_delay() -> None:
    p = replace(IP, genset_start_after_s=5.0)
    state = island.on_grid_loss(island.IslandState(), 0.0, {}, genset_started=False)
    actions, state = island.step(_snap(grid_ok=False, now_s=2.0), p, state)
    assert actions.genset is None
    actions, state = island.step(_snap(grid_ok=False, now_s=5.0), p, state)
    assert actions.genset == "start" and state.genset_started


def test_a_second_outage_starts_the_genset_again() -> None:
    # outage 1's genset failed (or was stopped at its panel): nothing was left to stop after the
    # reconnection, so `genset_started` stayed set. Before: outage 2 never sent the delayed start
    p = replace(IP, genset_start_after_s=5.0)
    after_first = island.IslandState(islanded=False, reconnected_at_s=100.0, genset_started=True)
    _, after_first = island.step(_snap(genset=_genset(GensetState.STOPPED), now_s=200.0), p, after_first)
    state = island.on_grid_loss(after_first, 300.0, {}, genset_started=False)
    actions, state = island.step(_snap(grid_ok=False, genset=_genset(GensetState.STOPPED), now_s=305.0), p, state)
    assert actions.genset == "start" and state.genset_started


def test_a_start_the_genset_did_not_take_is_sent_again_backing_off() -> None:
    # the fast path's start was refused (or ignored): the genset still reports stopped
    state = island.on_grid_loss(island.IslandState(), 0.0, {}, genset_started=True)
    stopped = _genset(GensetState.STOPPED)
    sent = []
    for t in (0.5, 1.0, 2.0, 3.0, 5.0, 6.0, 9.0, 14.0):
        actions, state = island.step(_snap(grid_ok=False, genset=stopped, now_s=t), IP, state)
        if actions.genset == "start":
            sent.append(t)
    assert sent == [2.0, 6.0, 14.0]  # after 2 s, then 4 s, then 8 s: never every period
    actions, state = island.step(_snap(grid_ok=False, genset=_genset(GensetState.STARTING), now_s=40.0), IP, state)
    assert actions.genset is None  # it took it
    actions, _ = island.step(_snap(grid_ok=False, genset=_genset(GensetState.FAILED), now_s=90.0), IP, state)
    assert actions.genset is None  # a reported failure is left to the operator


def test_GENSET_START_FAILED() -> None:
    state = island.on_grid_loss(island.IslandState(), 0.0, {}, genset_started=True)
    snap = _snap(grid_ok=False, genset=_genset(GensetState.FAILED), now_s=20.0)
    actions, _ = island.step(snap, IP, state)
    assert actions.reason is Reason.GENSET_START_FAILED
    # every non-critical rack at its minimum cap; critical row01 kept
    assert {k: v for k, v in actions.caps_w.items() if v is not None} == {
        f"row0{r}-rack0{k}": 10_000.0 for r in (2, 3) for k in (1, 2)}


def test_running_genset_relaxes_caps_and_charges_the_battery() -> None:
    snap = _snap(units=(unit("u1", max_discharge_w=100e3),), grid_ok=False)
    state = island.on_grid_loss(island.IslandState(), 0.0, arm(snap, P).rack_caps_w, genset_started=True)
    running = replace(snap, genset=_genset(GensetState.RUNNING, power_w=150e3), now_s=40.0)
    actions, state = island.step(running, IP, state)
    assert all(v is None for v in actions.caps_w.values())  # 100 kW + 500 kW genset carry 240 kW
    assert actions.genset_charge_w == 50_000.0 and state.caps_w == {}


def test_a_running_genset_that_delivers_nothing_does_not_relax_caps() -> None:
    # running at its 500 kW rating by its state register, 0 W out (its breaker open): the
    # island still rests on the 100 kW battery alone
    snap = _snap(units=(unit("u1", max_discharge_w=100e3),), grid_ok=False)
    caps = arm(snap, P).rack_caps_w
    state = island.on_grid_loss(island.IslandState(), 0.0, caps, genset_started=True)
    idle = replace(snap, genset=_genset(GensetState.RUNNING, power_w=0.0), now_s=40.0)
    actions, _ = island.step(idle, IP, state)
    assert {k: v for k, v in actions.caps_w.items() if v is not None} == caps


def test_RECONNECT_WAIT() -> None:
    state = island.on_grid_loss(island.IslandState(), 0.0, {"row03-rack01": 10_000.0}, genset_started=True)
    actions, state = island.step(_snap(grid_ok=True, now_s=5.0), IP, state)
    assert actions.reason is Reason.RECONNECT_WAIT and not actions.reconnect
    actions, state = island.step(_snap(grid_ok=False, now_s=9.0), IP, state)  # flap: the wait restarts
    assert state.grid_ok_since_s is None and actions.reason is Reason.ISLANDED
    _, state = island.step(_snap(grid_ok=True, now_s=10.0), IP, state)
    actions, state = island.step(_snap(grid_ok=True, now_s=19.0), IP, state)
    assert not actions.reconnect
    actions, state = island.step(_snap(grid_ok=True, now_s=20.0), IP, state)
    assert actions.reconnect and not state.islanded


def test_after_reconnection_caps_ramp_back_and_genset_stops_after_min_run() -> None:
    state = island.IslandState(islanded=False, reconnected_at_s=100.0, genset_started=True,
                               caps_w={"row03-rack01": 10_000.0}, release_from_w={"row03-rack01": 10_000.0})
    actions, state = island.step(_snap(genset=_genset(GensetState.RUNNING, run_s=20.0), now_s=102.0), IP, state)
    assert actions.caps_w == {"row03-rack01": pytest.approx(25_000.0)} and actions.genset is None
    actions, state = island.step(_snap(genset=_genset(GensetState.RUNNING, run_s=31.0), now_s=104.0), IP, state)
    assert actions.caps_w == {"row03-rack01": None} and actions.genset == "stop"
    actions, state = island.step(_snap(genset=_genset(GensetState.COOLDOWN, run_s=32.0), now_s=105.0), IP, state)
    assert actions.genset is None and actions.caps_w == {}


@pytest.mark.parametrize(("pcs_down", "v", "f", "verdict", "cause"), [
    (False, 230.0, 50.0, Verdict.IN_BAND, "in_band"),
    (True, 230.0, 50.0, Verdict.BEYOND, "pcs_grid_status"),
    (False, 0.0, 0.0, Verdict.BEYOND, "voltage"),  # in no region of the curve: at once
    (False, 195.0, 50.0, Verdict.RIDING, "voltage"),  # 0.85 pu: 4.7 s to ride through
    (False, 230.0, 48.5, Verdict.RIDING, "frequency"),  # 0.97 pu: 299 s
    (False, 230.0, 52.0, Verdict.BEYOND, "frequency"),  # 1.04 pu: beyond
    (None, None, None, Verdict.IN_BAND, "in_band"),  # nothing read: no evidence
])
def test_grid_judgement(pcs_down, v, f, verdict, cause) -> None:
    assert judge(FailoverConfig(), pcs_down, v, f)[:2] == (verdict, cause)


@pytest.mark.parametrize(("v_pu", "rides_s"), [
    (0.87, 3.0 + 8.7 * 0.22), (0.65, 3.0), (0.5, 0.32), (0.35, 0.16), (0.2, 0.0), (1.12, 1.0), (1.19, 0.2),
    (1.25, 0.0),
])
def test_category_ii_voltage_curve(v_pu, rides_s) -> None:
    """IEEE 1547-2018 category II: how long a dip to v_pu is ridden through before the site islands."""
    curve, freq = ride_through.CATEGORY_II_VOLTAGE, ride_through.CATEGORY_II_FREQUENCY
    assert ride_through.allowance_s(curve, v_pu) == pytest.approx(rides_s)
    ex, t = None, 0.0
    while t < 10.0:
        verdict, _, ex = ride_through.judge(curve, freq, v_pu, 1.0, t, ex)
        if verdict is Verdict.BEYOND:
            break
        assert verdict is Verdict.RIDING
        t += 0.01
    assert t == pytest.approx(rides_s, abs=0.011)


def test_an_excursion_is_judged_from_its_start_by_where_the_signal_is_now() -> None:
    v, f = ride_through.CATEGORY_II_VOLTAGE, ride_through.CATEGORY_II_FREQUENCY
    verdict, cause, ex = ride_through.judge(v, f, 0.5, 1.0, 0.0, None)
    assert (verdict, cause) == (Verdict.RIDING, "voltage")
    verdict, _, ex = ride_through.judge(v, f, 0.8, 1.0, 0.3, ex)  # recovering to 0.8 pu: 4.3 s from the start
    assert verdict is Verdict.RIDING and ex.worst_voltage_pu == 0.5
    assert ride_through.judge(v, f, 0.8, 1.0, 4.4, ex)[0] is Verdict.BEYOND
    assert ride_through.judge(v, f, 1.0, 1.0, 4.0, ex) == (Verdict.IN_BAND, "in_band", None)


def test_a_curve_must_keep_nominal_continuous() -> None:
    with pytest.raises(ValueError, match=r"1\.0 pu"):
        FailoverConfig.model_validate({"ride_through": {"voltage_pu": [{"low_pu": 0.9, "high_pu": 1.1, "ride_s": 5}]}})
    with pytest.raises(ValueError, match="low_pu"):
        FailoverConfig.model_validate({"ride_through": {"voltage_pu": [{"low_pu": 1.1, "high_pu": 0.9}]}})


async def test_the_watcher_rides_through_inside_the_curve_and_islands_beyond() -> None:
    changes, disturbances = [], []

    async def on_change(v) -> None:
        changes.append(v)

    async def on_disturbance(d) -> None:
        disturbances.append(d)

    w = GridWatcher(FailoverConfig(debounce_samples=2), None, None, on_change, on_disturbance)
    for i in range(100):  # 0.7 pu for 1 s: ridden through (3.4 s allowed)
        await w.judge_sample(False, 161.0, 50.0, i * 0.01)
    await w.judge_sample(False, 230.0, 50.0, 1.0)
    assert changes == [] and [d.outcome for d in disturbances] == ["riding", "back_in_band"]
    assert disturbances[1].duration_s == pytest.approx(1.0) and disturbances[1].worst_voltage_pu == pytest.approx(0.7)
    assert w.ridden_through == 1 and w.excursion is None
    for i in range(60):  # 0.5 pu: 0.32 s, then beyond the curve (after two samples)
        await w.judge_sample(False, 115.0, 50.0, 2.0 + i * 0.01)
    assert [c.ok for c in changes] == [False] and changes[0].cause == "voltage"
    assert [d.outcome for d in disturbances][2:] == ["riding", "beyond_curve"]
    assert disturbances[3].duration_s == pytest.approx(0.34, abs=0.011)
    await w.judge_sample(False, 200.0, 50.0, 3.0)  # 0.87 pu: not yet back
    assert len(changes) == 1
    await w.judge_sample(False, 230.0, 50.0, 3.1)
    assert [c.ok for c in changes] == [False, True]


async def test_one_sample_beyond_is_not_yet_a_loss() -> None:
    changes = []

    async def on_change(v) -> None:
        changes.append(v)

    w = GridWatcher(FailoverConfig(debounce_samples=2), None, None, on_change)
    await w.judge_sample(False, 0.0, 0.0, 0.0)  # a glitch
    await w.judge_sample(False, 230.0, 50.0, 0.01)
    assert changes == []
    await w.judge_sample(False, 0.0, 0.0, 0.02)
    await w.judge_sample(False, 0.0, 0.0, 0.03)
    assert [c.cause for c in changes] == ["voltage"]


def test_reserve_soc_from_critical_load() -> None:
    fc = FailoverConfig.model_validate({"reserve": {"critical_load_w": 1e6, "bridge_s": 900,
                                                    "discharge_efficiency": 0.9, "soc_floor": 0.05}})
    # 1 MW for 15 min = 250 kWh / 0.9 on 5 MWh
    def floor(fc: FailoverConfig) -> float:
        site = BacktestConfig.model_validate({"battery_units": [{"id": "u1"}], "failover": fc.model_dump()})
        return floor_soc(step_params(site).reserve, 5e6)

    assert floor(fc) == pytest.approx(0.05 + 250e3 / 0.9 / 5e6)
    assert floor(FailoverConfig()) == 0.0
    assert floor(fc.model_copy(update={"enabled": False})) == 0.0
