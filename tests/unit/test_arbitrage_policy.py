"""Arbitrage and reserve policies as tables (the step that combines them: test_period.py).

Tests named test_<REASON> cover the reason codes these policies publish.
"""

from __future__ import annotations

import math

import pytest

from ems.model.plan import PlanView
from ems.model.reasons import Reason
from policies import arbitrage, reserve
from policies.arbitrage import ArbitrageParams
from tests.snapshots import snapshot, unit

ETA = 0.95
ARB = ArbitrageParams(max_plan_age_s=7200.0, charge_efficiency=ETA, discharge_efficiency=ETA)
CAPACITY_WH = 2e6  # tests/snapshots: two units of 1 MWh, 500 kW each


def plan(soc=(0.5, 0.6, 0.6, 0.4), cap_w=1_000_000.0, made_at_s=0.0, start_s=0.0,
         battery_w=None, grid_w=None) -> PlanView:
    """A plan of 15-min steps; by default it imports up to its cap without discharging."""
    n = len(soc) - 1
    return PlanView(made_at_s=made_at_s, start_s=start_s, step_s=900.0, soc=tuple(soc),
                    battery_w=battery_w or (0.0,) * n, grid_w=grid_w or (cap_w,) * n,
                    import_cap_w=(cap_w,) * n, expected_savings=10.0)


def snap(soc: float, grid_w: float = 0.0, now_s: float = 0.0, period_s: float = 1.0):
    return snapshot(grid_w, (unit("u1", soc=soc), unit("u2", soc=soc)), now_s=now_s, period_s=period_s)


def arb(s, p=None):
    return arbitrage.decide(s, ARB, plan() if p is None else p)


# --- arbitrage: snapshot + plan -> decision ---------------------------------------------
# site SoC, time in the step -> expected target W (> 0 discharge), reason
CHARGE_W = -(0.1 * CAPACITY_WH / ETA) / 0.25  # 10 % of 2 MWh in the 15-min step, before losses
ARB_TABLE = [
    (0.5, 0.0, CHARGE_W, Reason.ARBITRAGE_CHARGE),  # plan: 0.5 -> 0.6 in step 0
    (0.55, 450.0, CHARGE_W, Reason.ARBITRAGE_CHARGE),  # half way, half the gap left: same power
    (0.6, 900.0, 0.0, Reason.ARBITRAGE_HOLD),  # step 1: plan holds 0.6
    (0.6, 1800.0, 0.2 * CAPACITY_WH * ETA / 0.25, Reason.ARBITRAGE_DISCHARGE),  # 0.6 -> 0.4
    (0.65, 900.0, 0.05 * CAPACITY_WH * ETA / 0.25, Reason.ARBITRAGE_DISCHARGE),  # above plan: give back
]


@pytest.mark.parametrize(("soc", "now_s", "target_w", "reason"), ARB_TABLE)
def test_arbitrage_table(soc, now_s, target_w, reason) -> None:
    d = arb(snap(soc, now_s=now_s))
    assert d.reason is reason
    assert d.target_w == pytest.approx(target_w)
    assert (d.min_w, d.max_w) == (-math.inf, math.inf)  # a wish, never a bound


def test_ARBITRAGE_CHARGE() -> None:
    d = arb(snap(0.5))
    assert d.reason is Reason.ARBITRAGE_CHARGE and d.target_w == pytest.approx(CHARGE_W)


def test_ARBITRAGE_DISCHARGE() -> None:
    d = arb(snap(0.6, now_s=1800.0))
    assert d.reason is Reason.ARBITRAGE_DISCHARGE and d.target_w > 0


def test_ARBITRAGE_HOLD() -> None:
    d = arb(snap(0.6, now_s=900.0))
    assert d.reason is Reason.ARBITRAGE_HOLD and d.target_w == 0.0
    # a gap worth less than the hold band is not chased
    tiny = (0.6 + 100.0 * 0.25 / CAPACITY_WH,) * 2  # 100 W for the step
    d = arb(snap(0.6, now_s=0.0), plan(soc=tiny))
    assert d.reason is Reason.ARBITRAGE_HOLD


def test_where_the_plan_holds_its_cap_only_the_actual_excess_is_discharged() -> None:
    # step 2 discharges to hold 1 MW of import on a forecast; the load turned out otherwise
    p = plan(battery_w=(0.0, 0.0, 600e3), grid_w=(5e5, 5e5, 1e6))
    d = arb(snap(0.6, grid_w=1_200_000, now_s=1800.0), p)  # 1.2 MW: 200 kW over the cap
    assert d.reason is Reason.ARBITRAGE_DISCHARGE and d.target_w == pytest.approx(200_000)
    d = arb(snap(0.6, grid_w=900_000, now_s=1800.0), p)  # under the cap: keep the energy
    assert d.reason is Reason.ARBITRAGE_HOLD and d.target_w == 0.0


def test_catching_up_on_charge_stays_under_the_planned_import() -> None:
    # the plan charges 0.5 -> 0.6 importing 700 kW in step 0; the site draws 600 kW itself
    p = plan(grid_w=(700e3, 700e3, 700e3))
    d = arb(snap(0.5, grid_w=600_000), p)
    assert d.reason is Reason.ARBITRAGE_CHARGE and d.target_w == pytest.approx(-100_000)
    d = arb(snap(0.5, grid_w=800_000), p)  # the load alone is above the plan: no charging now
    assert d.reason is Reason.ARBITRAGE_HOLD


def test_near_step_end_asks_no_more_than_one_period_can_do() -> None:
    # 1 s before the step ends, the gap is closed over one period (not over 1e-9 s)
    d = arb(snap(0.59, now_s=899.5, period_s=1.0), plan(grid_w=(1e12,) * 3))
    assert d.target_w == pytest.approx(-(0.01 * CAPACITY_WH / ETA) / (1.0 / 3600.0))


@pytest.mark.parametrize(("state_plan", "now_s"), [
    (None, 0.0),  # no plan yet
    (plan(made_at_s=0.0), 7300.0),  # older than max_plan_age_s
    (plan(start_s=100.0), 50.0),  # before the plan starts
    (plan(), 2700.0),  # after its last step
])
def test_PLAN_STALE(state_plan, now_s) -> None:
    d = arbitrage.decide(snap(0.5, now_s=now_s), ARB, state_plan)
    assert d.reason is Reason.PLAN_STALE
    assert d.target_w is None and (d.min_w, d.max_w) == (-math.inf, math.inf)  # stands down


def test_plan_stale_without_available_units() -> None:
    s = snapshot(0.0, (unit("u1", faults=("internal",)),))
    assert arb(s).reason is Reason.PLAN_STALE


# --- reserve floor ------------------------------------------------------------------------
def test_RESERVE_FLOOR() -> None:
    p = reserve.ReserveParams(reserve_soc=0.2, discharge_efficiency=0.96)
    out = reserve.decide(snap(0.2), p)
    assert out is not None
    d, floor = out
    assert floor == 0.2 and d.reason is Reason.RESERVE_FLOOR and d.max_w == 0.0 and d.min_w == -math.inf
    # a 15-min period may use only what lies above the floor: 5 % of 2 MWh over 0.25 h
    out = reserve.decide(snap(0.25, period_s=900.0), p)
    assert out is not None and out[0].max_w == pytest.approx(0.05 * CAPACITY_WH * 0.96 / 0.25)


def test_RESERVE_RECOVERY() -> None:
    # after an outage the battery sits at 12 %, under a 20 % floor: charge back within the hour
    p = reserve.ReserveParams(reserve_soc=0.2, charge_efficiency=0.96, recovery_s=3600.0)
    out = reserve.decide(snap(0.12), p)
    assert out is not None
    d, _ = out
    assert d.reason is Reason.RESERVE_RECOVERY and d.max_w == 0.0
    assert d.target_w == pytest.approx(-0.08 * CAPACITY_WH / 0.96)
    # just under the floor (within the deadband): no discharge, but no recovery charge either
    out = reserve.decide(snap(0.195), p)
    assert out is not None and out[0].reason is Reason.RESERVE_FLOOR and out[0].target_w is None


def test_the_outage_reserve_covers_the_critical_load_on_top_of_the_hardware_floor() -> None:
    o = reserve.OutageReserve(critical_load_w=500e3, bridge_s=1800.0, discharge_efficiency=0.9, soc_floor=0.05)
    p = reserve.ReserveParams(reserve_soc=0.1, outage=o)
    assert reserve.floor_soc(p, 5e6) == pytest.approx(0.05 + 250e3 / 0.9 / 5e6)
    assert reserve.floor_soc(reserve.ReserveParams(reserve_soc=0.3, outage=o), 5e6) == 0.3  # the higher
    assert reserve.floor_soc(reserve.ReserveParams(), 5e6) == 0.0
