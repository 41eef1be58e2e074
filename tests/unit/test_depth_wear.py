"""Wear that grows with the depth of discharge in the dispatch LP (ems/planning/depth_wear.py):
the segments draw from the top first, a deep kWh is dearer than a shallow one, the plan's
wear matches the depth each kWh left from, and bad costs are refused by name."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ems.planning import PlanInputError, plan_dispatch
from ems.planning.depth_wear import Segments, WearPrice, segment_cost_per_kwh
from ems.planning.lp import PlanProblem
from ems.planning.reused_lp import ReusedLp
from tests.unit.test_planner_lp import DAY, N_DAY, NIGHT, assert_invariants, problem

# an evening spike worth 0.20 a kWh more than the night: enough for some depth only
SPIKE = np.where(DAY, 0.30, 0.10)


def test_equal_segment_costs_plan_as_the_same_flat_wear() -> None:
    flat = problem(import_price_per_kwh=SPIKE, wear_cost_per_kwh=0.05)
    segmented = replace(flat, wear_cost_per_kwh=0.01, wear_depth_cost_per_kwh=(0.04,) * 4)
    a, b = plan_dispatch(flat), plan_dispatch(segmented)
    assert_invariants(segmented, b)
    assert b.expected_cost == pytest.approx(a.expected_cost, rel=1e-6)
    assert b.wear_cost == pytest.approx(a.wear_cost, rel=1e-6)  # (the dispatch may differ among equal optima)


def test_a_deep_kwh_that_costs_more_than_it_earns_stays_in_the_battery() -> None:
    """From 95 %, a discharge into the spike earns ~0.18 a kWh after losses; the bottom two
    of four segments (below 50 %) cost more than that, the top two less."""
    pb = problem(import_price_per_kwh=SPIKE, soc_initial=0.95, reserve_soc=0.05, soc_final_min=0.0,
                 wear_cost_per_kwh=0.0, max_discharge_w=1e6)
    deep = replace(pb, wear_depth_cost_per_kwh=(0.0, 0.02, 0.5, 0.5))
    flat_plan, deep_plan = plan_dispatch(pb), plan_dispatch(deep)
    assert_invariants(deep, deep_plan)
    assert flat_plan.soc.min() == pytest.approx(0.05, abs=1e-6)  # without depth wear: to the floor
    assert deep_plan.soc.min() == pytest.approx(0.50, abs=1e-6)  # with it: the top two segments only
    discharged_kwh = (0.95 - 0.50) * 1000.0 * 0.95  # per kWh delivered, after the discharge loss
    assert deep_plan.wear_cost == pytest.approx(0.02 * discharged_kwh / 2, rel=1e-6)


def test_the_plan_wear_is_the_depth_each_kwh_left_from() -> None:
    """A discharge from near the top, rolled out along the plan: each step priced at the
    segments it draws (the shallowest first) gives the LP's own wear cost."""
    costs = (0.0, 0.01, 0.03, 0.06)
    pb = problem(import_price_per_kwh=SPIKE, soc_initial=0.9, reserve_soc=0.05, wear_cost_per_kwh=0.005,
                 wear_depth_cost_per_kwh=costs, max_discharge_w=2.5e5)
    plan = plan_dispatch(pb)
    dt_h = pb.step_s / 3600.0
    dis_kwh = plan.discharge_w / 1000.0 * dt_h
    assert dis_kwh.sum() > 100  # it does discharge
    price = WearPrice(pb.wear_cost_per_kwh, costs, pb.soc_min, pb.soc_max)
    rolled = float(price.per_step(dis_kwh, plan.soc[:-1], plan.soc[1:]).sum())
    assert plan.wear_cost == pytest.approx(rolled, rel=1e-6)


def test_the_backtest_prices_a_plans_path_at_the_plans_own_wear() -> None:
    """From 10 %, two cheap-dear cycles of ~29 % each (window 0..1 in two halves: 0 above
    50 %, 0.02 below): the LP refills the empty top half and draws it again, so it prices
    the cycles as that depth from the top. The backtest's price of the plan's own path
    (`WearPrice.per_step`) is the plan's wear, or net savings and the bound disagree."""
    costs = (0.0, 0.02)
    pb = PlanProblem(step_s=3600.0, net_load_w=np.full(8, 50e3), import_price_per_kwh=np.tile([0.1, 0.1, 0.5, 0.5], 2),
                     export_price_per_kwh=0.0, capacity_wh=100e3, soc_initial=0.1, max_charge_w=15e3,
                     max_discharge_w=15e3, wear_cost_per_kwh=0.005, wear_depth_cost_per_kwh=costs)
    plan = plan_dispatch(pb)
    dis_kwh = plan.discharge_w / 1000.0
    assert dis_kwh.sum() > 50 and plan.soc.max() < 0.5  # it cycles, low in the window
    price = WearPrice(pb.wear_cost_per_kwh, costs, pb.soc_min, pb.soc_max)
    assert float(price.per_step(dis_kwh, plan.soc[:-1], plan.soc[1:]).sum()) == pytest.approx(plan.wear_cost,
                                                                                              rel=1e-9)
    assert plan.wear_cost == pytest.approx(0.005 * dis_kwh.sum(), rel=1e-9)  # the top half's: no depth cost


def test_a_cycle_low_in_the_window_costs_the_top_segments() -> None:
    """Window 0..1 in two halves (0 above 50 %, 0.1 below), from 10 %: up to 50 % and back
    goes through the top half in the LP's allocation; the first drop, from the energy the
    battery started with, is the bottom half's."""
    before, after = np.array([0.1, 0.5, 0.1, 0.1]), np.array([0.5, 0.1, 0.1, 0.05])
    got = segment_cost_per_kwh((0.0, 0.1), before, after, 0.0, 1.0)
    np.testing.assert_allclose(got, [0.0, 0.0, 0.1, 0.1])


def test_segments_fill_from_the_bottom_and_widen_for_a_start_outside_the_window() -> None:
    seg = Segments.of(1000.0, 0.1, 0.9, 0.5, 4)
    np.testing.assert_allclose(seg.size_kwh, [200, 200, 200, 200])
    np.testing.assert_allclose(seg.initial_kwh, [0, 0, 200, 200])
    assert seg.base_kwh == pytest.approx(100)
    low = Segments.of(1000.0, 0.1, 0.9, 0.05, 4)
    assert low.base_kwh == pytest.approx(50) and low.size_kwh[-1] == pytest.approx(250)
    np.testing.assert_allclose(low.initial_kwh, 0.0)
    high = Segments.of(1000.0, 0.1, 0.9, 0.95, 4)
    assert high.size_kwh[0] == pytest.approx(250)
    np.testing.assert_allclose(high.initial_kwh, high.size_kwh)


def test_a_start_below_the_window_still_plans() -> None:
    pb = problem(import_price_per_kwh=SPIKE, soc_initial=0.02, wear_depth_cost_per_kwh=(0.0, 0.01, 0.02))
    plan = plan_dispatch(pb)
    assert_invariants(pb, plan)
    assert plan.soc[-1] >= 0.02 - 1e-9


@pytest.mark.parametrize("costs, why", [
    ((0.05, 0.01), "must not fall with depth"),
    ((0.0, float("nan")), "finite and >= 0"),
    ((-0.01, 0.0), "finite and >= 0"),
    ((0.0,) * 11, "at most 10"),
])
def test_bad_depth_costs_are_refused_by_name(costs: tuple[float, ...], why: str) -> None:
    with pytest.raises(PlanInputError, match=f"wear_depth_cost_per_kwh: .*{why}"):
        problem(wear_depth_cost_per_kwh=costs)


def test_the_kept_lp_refuses_segments_it_does_not_have() -> None:
    with pytest.raises(PlanInputError, match="depth"):
        ReusedLp().solve(problem(wear_depth_cost_per_kwh=(0.0, 0.01)))


def test_night_charge_for_the_spike_uses_the_cheap_top_segments() -> None:
    """From 50 %, charging at night to discharge into the spike: the refill lands in the top
    segments and the evening draws them, so the deep half is never touched when it is dear."""
    pb = problem(import_price_per_kwh=SPIKE, soc_initial=0.5, reserve_soc=0.05,
                 wear_depth_cost_per_kwh=(0.0, 0.0, 0.5, 0.5))
    plan = plan_dispatch(pb)
    assert plan.soc[NIGHT.size] >= 0.5 - 1e-6 and plan.soc.min() >= 0.5 - 1e-6
    assert plan.discharge_w[DAY].sum() > 0
    assert plan.battery_w.size == N_DAY


def test_a_backtest_plans_and_prices_its_wear_by_depth() -> None:
    """The live step with depth wear over a month end: every plan built (the kept LP has no
    segments), the run's wear is the depth its kWh left from, and no month beats its bound
    (whose wear the same LP prices)."""
    from datetime import datetime

    from ems.backtest.config import load_backtest_config
    from ems.backtest.foresight import month_slices
    from ems.backtest.run import BacktestOptions, run
    from tests.unit.test_backtest import LOAD, SITE, URDB

    if not LOAD.exists() or not URDB.exists():
        pytest.skip("shared data not present")
    cfg = load_backtest_config(SITE)
    arb = cfg.policies.arbitrage
    assert arb is not None
    costs = [0.03, 0.035, 0.04, 0.045]
    cfg = cfg.model_copy(update={"policies": cfg.policies.model_copy(update={"arbitrage": arb.model_copy(
        update={"wear_cost_per_kwh": 0.0, "wear_depth_cost_per_kwh": costs})})})
    bt = run(cfg, BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, start=datetime(2018, 6, 28),
                                  days=5))
    tr, total = bt.trace, bt.result.total
    assert tr.plans > 0 and tr.plan_failures == 0
    b = cfg.policies.battery
    dis_kwh = np.maximum(tr.battery_w, 0.0) * tr.step_s / 3.6e6
    soc_before = np.concatenate([[tr.soc_initial], tr.soc[:-1]])
    # each month priced from its own start, as its bound's LP
    along = np.concatenate([segment_cost_per_kwh(costs, soc_before[sl], tr.soc[sl], b.soc_min, b.soc_max)
                            for sl in month_slices(tr.start, tr.step_s, tr.soc.size)])
    assert total["wear_cost"] == pytest.approx(float(np.sum(dis_kwh * along)), rel=1e-9)
    assert costs[0] * total["discharged_kwh"] < total["wear_cost"] < costs[-1] * total["discharged_kwh"]
    for m in bt.result.months:
        assert m.share is not None and m.share <= 1.0 + 1e-6, m.month
    assert bt.setup.wear_depth_cost_per_kwh == tuple(costs)
