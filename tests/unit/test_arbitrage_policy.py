"""Arbitrage and reserve policies as tables, and the shared policy stack (ems/decide.py).

Tests named test_<REASON> cover the reason codes these policies publish.
"""

from __future__ import annotations

import math

import pytest

from ems.decide import PolicyParams, PolicyStates, decide, peak_params_now
from ems.model.reasons import Reason
from policies import arbitrage, reserve
from policies.arbitrage import ArbitrageParams, ArbitrageState, PlanView
from policies.battery_limits import BatteryLimitsParams
from policies.peak_shaving import PeakShavingParams
from tests.snapshots import snapshot, unit

ETA = 0.95
ARB = ArbitrageParams(max_plan_age_s=7200.0, charge_efficiency=ETA, discharge_efficiency=ETA)
LIMITS = BatteryLimitsParams(soc_min=0.1, soc_max=0.95)
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
    d, _ = arbitrage.decide(s, ARB, ArbitrageState(plan() if p is None else p))
    return d


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
    d, state = arbitrage.decide(snap(0.5, now_s=now_s), ARB, ArbitrageState(state_plan))
    assert d.reason is Reason.PLAN_STALE
    assert d.target_w is None and (d.min_w, d.max_w) == (-math.inf, math.inf)  # stands down
    assert state.plan is state_plan


def test_plan_stale_without_available_units() -> None:
    s = snapshot(0.0, (unit("u1", faults=("internal",)),))
    assert arb(s).reason is Reason.PLAN_STALE


# --- reserve floor ------------------------------------------------------------------------
def test_RESERVE_FLOOR() -> None:
    p = reserve.ReserveParams(reserve_soc=0.2, discharge_efficiency=0.96)
    d = reserve.decide(snap(0.2), p)
    assert d is not None and d.reason is Reason.RESERVE_FLOOR and d.max_w == 0.0 and d.min_w == -math.inf
    # a 15-min period may use only what lies above the floor: 5 % of 2 MWh over 0.25 h
    d = reserve.decide(snap(0.25, period_s=900.0), p)
    assert d is not None and d.max_w == pytest.approx(0.05 * CAPACITY_WH * 0.96 / 0.25)


def test_reserve_outranks_peak_shaving() -> None:
    params = PolicyParams(LIMITS, peak=PeakShavingParams(1_000_000, 800_000),
                          reserve=reserve.ReserveParams(0.2))
    out, _ = decide(snap(0.2, grid_w=1_300_000), params, PolicyStates())
    assert out.arbitration.setpoint_w == 0.0  # peak shaving wanted 300 kW
    assert "peak_shaving" in out.arbitration.overruled


# --- the stack: plan + peak shaving ---------------------------------------------------------
STACK = PolicyParams(LIMITS, peak=PeakShavingParams(2_000_000, 800_000), arbitrage=ARB)


def test_fresh_plan_sets_the_peak_shaving_cap_and_stops_its_recharge() -> None:
    states = PolicyStates(arbitrage=ArbitrageState(plan(cap_w=1_000_000.0)))
    p = peak_params_now(snap(0.5), STACK, states)
    assert p is not None and p.grid_import_cap_w == 1_000_000.0 and p.recharge_below_w == 0.0
    # the plan's cap replaces a configured one, lower or higher: it knows the energy it takes
    low = PolicyParams(LIMITS, peak=PeakShavingParams(900_000, 800_000), arbitrage=ARB)
    p = peak_params_now(snap(0.5), low, states)
    assert p is not None and p.grid_import_cap_w == 1_000_000.0


def test_stale_plan_falls_back_to_configured_peak_shaving() -> None:
    out, _ = decide(snap(0.5, grid_w=300_000), STACK, PolicyStates())
    assert out.arbitration.reason is Reason.PEAK_SHAVING_RECHARGE
    assert out.arbitration.setpoint_w == pytest.approx(-500_000)
    assert out.grid_import_cap_w == 2_000_000
    assert {d.policy: d.reason for d in out.decisions}["arbitrage"] is Reason.PLAN_STALE


def test_plan_charge_never_sets_a_new_peak() -> None:
    # a plan that expected to import more than its cap allows (its load forecast was higher)
    states = PolicyStates(arbitrage=ArbitrageState(plan(cap_w=1_000_000.0, grid_w=(1.5e6,) * 3)))
    out, _ = decide(snap(0.5, grid_w=900_000), STACK, states)
    # arbitrage wants ~842 kW of charge; only 100 kW fit under the planned peak
    assert out.arbitration.setpoint_w == pytest.approx(-100_000)
    assert out.arbitration.reason is Reason.PEAK_SHAVING_STANDBY  # its bound set the setpoint
    assert out.grid_import_cap_w == 1_000_000.0


def test_peak_shaving_overrides_a_plan_that_wants_to_charge() -> None:
    states = PolicyStates(arbitrage=ArbitrageState(plan(cap_w=1_000_000.0)))
    out, _ = decide(snap(0.5, grid_w=1_200_000), STACK, states)
    assert out.arbitration.setpoint_w == pytest.approx(200_000)
    assert out.arbitration.reason is Reason.PEAK_SHAVING_ACTIVE


def test_plan_discharge_goes_through_and_is_split_across_units() -> None:
    states = PolicyStates(arbitrage=ArbitrageState(plan(cap_w=1_000_000.0)))
    out, _ = decide(snap(0.6, now_s=1800.0), STACK, states)
    assert out.arbitration.reason is Reason.UNIT_POWER_LIMIT  # 1.52 MW asked, 1 MW available
    assert out.arbitration.setpoint_w == pytest.approx(1_000_000)
    assert sum(out.unit_setpoints_w.values()) == pytest.approx(1_000_000)
