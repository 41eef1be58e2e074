"""LP dispatch planner: behaviour on table-driven scenarios, invariants, errors, timing."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ems.planning import (
    Plan,
    PlanInfeasible,
    PlanInputError,
    PlanProblem,
    cost_without_battery,
    plan_dispatch,
)

STEP_S = 900.0
N_DAY = 96
HOUR = np.arange(N_DAY) * STEP_S / 3600.0
NIGHT = HOUR < 6
DAY = (HOUR >= 12) & (HOUR < 20)


def problem(**overrides: Any) -> PlanProblem:
    """A 1 MWh / 500 kW battery on a 2 MW site, flat 0.10 prices, no demand charge."""
    base: dict[str, Any] = {
        "step_s": STEP_S,
        "net_load_w": np.full(N_DAY, 2e6),
        "import_price_per_kwh": np.full(N_DAY, 0.10),
        "export_price_per_kwh": np.full(N_DAY, 0.02),
        "capacity_wh": 1e6,
        "soc_initial": 0.5,
        "soc_min": 0.05,
        "soc_max": 0.95,
        "reserve_soc": 0.2,
        "max_charge_w": 5e5,
        "max_discharge_w": 5e5,
        "charge_efficiency": 0.95,
        "discharge_efficiency": 0.95,
        "wear_cost_per_kwh": 0.01,
    }
    base.update(overrides)
    return PlanProblem(**base)


def assert_invariants(pb: PlanProblem, plan: Plan) -> None:
    """Energy balance, SoC dynamics and every bound, checked from the returned arrays."""
    n = pb.net_load_w.size
    dt_h = pb.step_s / 3600.0
    tol_w = 1e-6 * max(1.0, float(np.abs(pb.net_load_w).max()), pb.max_charge_w)
    assert plan.battery_w.shape == plan.grid_w.shape == (n,)
    assert plan.soc.shape == (n + 1,)
    np.testing.assert_allclose(
        plan.grid_w, pb.net_load_w + plan.charge_w - plan.discharge_w, atol=tol_w
    )
    np.testing.assert_allclose(plan.battery_w, plan.discharge_w - plan.charge_w, atol=tol_w)
    d_wh = (
        pb.charge_efficiency * plan.charge_w - plan.discharge_w / pb.discharge_efficiency
    ) * dt_h
    np.testing.assert_allclose(np.diff(plan.soc) * pb.capacity_wh, d_wh, atol=1e-6 * pb.capacity_wh)
    assert plan.soc[0] == pytest.approx(pb.soc_initial)
    assert np.all(plan.charge_w >= -tol_w) and np.all(plan.charge_w <= pb.max_charge_w + tol_w)
    assert np.all(plan.discharge_w >= -tol_w)
    assert np.all(plan.discharge_w <= pb.max_discharge_w + tol_w)
    floor = min(max(pb.soc_min, pb.reserve_soc), pb.soc_initial)
    assert np.all(plan.soc >= floor - 1e-7)
    assert np.all(plan.soc <= max(pb.soc_max, pb.soc_initial) + 1e-7)
    final = pb.soc_initial if pb.soc_final_min is None else pb.soc_final_min
    assert plan.soc[-1] >= final - 1e-7
    if pb.grid_import_limit_w is not None:
        assert np.all(plan.grid_w <= pb.grid_import_limit_w + tol_w)
    if not pb.allow_export:
        assert np.all(plan.grid_w >= np.minimum(pb.net_load_w, 0.0) - tol_w)


def test_flat_prices_without_demand_charge_leave_the_battery_idle() -> None:
    pb = problem()
    plan = plan_dispatch(pb)
    assert_invariants(pb, plan)
    assert np.abs(plan.battery_w).max() < 1.0
    assert plan.expected_savings == pytest.approx(0.0, abs=1e-6)


def test_cheap_night_expensive_day_charges_at_night_discharges_by_day() -> None:
    price = np.where(NIGHT, 0.05, np.where(DAY, 0.30, 0.10))
    pb = problem(import_price_per_kwh=price, export_price_per_kwh=price * 0.5)
    plan = plan_dispatch(pb)
    assert_invariants(pb, plan)
    assert plan.charge_w[NIGHT].sum() > 0
    assert plan.discharge_w[NIGHT].sum() == pytest.approx(0.0, abs=1.0)
    assert plan.discharge_w[DAY].sum() > 0
    assert plan.charge_w[DAY].sum() == pytest.approx(0.0, abs=1.0)
    # The day is long enough to empty the battery down to the reserve floor, not below.
    assert plan.soc.min() == pytest.approx(pb.reserve_soc, abs=1e-6)
    assert plan.soc.max() == pytest.approx(pb.soc_max, abs=1e-6)
    assert plan.expected_savings > 0


def test_demand_charge_shaves_a_load_peak() -> None:
    net = np.full(N_DAY, 2e6)
    net[60:64] = 2.4e6  # one hour at +400 kW
    pb = problem(net_load_w=net, demand_charge_per_kw=20.0, peak_so_far_kw=1500.0)
    plan = plan_dispatch(pb)
    assert_invariants(pb, plan)
    assert plan.grid_w.max() < net.max() - 1e5
    assert plan.peak_kw[0] == pytest.approx(plan.grid_w.max() / 1000.0, rel=1e-6)
    assert plan.demand_cost < 20.0 * (2400.0 - 1500.0)  # the unshaved demand increase
    assert plan.expected_cost < plan.cost_without_battery


def test_peak_so_far_is_a_floor_the_plan_does_not_pay_to_undercut() -> None:
    # The month's peak is already 2.5 MW: shaving the 2.4 MW hour below it earns nothing,
    # so with wear cost the battery stays idle.
    net = np.full(N_DAY, 2e6)
    net[60:64] = 2.4e6
    pb = problem(net_load_w=net, demand_charge_per_kw=20.0, peak_so_far_kw=2500.0)
    plan = plan_dispatch(pb)
    assert np.abs(plan.battery_w).max() < 1.0
    assert plan.demand_cost == 0.0


def test_over_peak_cost_charges_under_the_billed_peak() -> None:
    # An evening of 2.6 MW the battery cannot shave to the 2.0 MW peak so far: the planned
    # peak rises anyway. Without the over-peak cost, charging up to that planned peak is
    # free, and with a hold value the plan does it at once; with it, the plan charges
    # under the billed peak (the night has room) and only the evening goes over.
    net = np.full(N_DAY, 1.6e6)
    net[72:80] = 2.6e6  # 18-20 h
    base = {"net_load_w": net, "demand_charge_per_kw": 20.0, "peak_so_far_kw": 2000.0,
            "soc_initial": 0.2, "hold_value_per_kwh_h": 0.002}
    eager = plan_dispatch(problem(**base))
    pb = problem(**base, over_peak_cost_per_kwh=0.02)
    plan = plan_dispatch(pb)
    assert_invariants(pb, plan)
    assert eager.grid_w[:72].max() > 2.0e6 + 1e4  # the charging alone lifts the import
    assert plan.grid_w[:72].max() <= 2.0e6 + 1.0
    assert plan.peak_kw[0] == pytest.approx(eager.peak_kw[0], rel=1e-6)  # same planned peak
    assert plan.expected_cost == pytest.approx(eager.expected_cost, rel=1e-3)  # a preference, not money


def test_charge_peak_weight_keeps_charging_from_making_a_peak_at_month_start() -> None:
    # A month's first day: no peak billed yet, a flat 1.6 MW and a forecast 2.6 MW evening
    # the battery shaves to ~2.24 MW. Without the weight, charging anywhere up to that
    # planned peak looks free (the over-peak cost alone cannot tell, the billed peak is 0);
    # with it, charging that lifts the import above the load is priced as a peak of its
    # own, so the plan charges as flat as it can and the evening plan is the same.
    net = np.full(N_DAY, 1.6e6)
    net[72:80] = 2.6e6  # 18-20 h
    base = {"net_load_w": net, "demand_charge_per_kw": 20.0, "peak_so_far_kw": 0.0, "soc_initial": 0.2,
            "hold_value_per_kwh_h": 0.002, "over_peak_cost_per_kwh": 0.02}
    eager = plan_dispatch(problem(**base))
    pb = problem(**base, charge_peak_weight=1.0)
    plan = plan_dispatch(pb)
    assert_invariants(pb, plan)
    assert eager.grid_w[:72].max() >= 2.0e6  # charging at full power lifts the day's import
    assert plan.charge_w.max() < 0.2 * eager.charge_w.max()
    assert plan.grid_w[:72].max() < 1.7e6
    assert plan.peak_kw[0] == pytest.approx(eager.peak_kw[0], rel=1e-6)
    assert plan.soc.max() == pytest.approx(eager.soc.max(), abs=1e-6)  # still full for the evening


def test_tou_demand_periods_shave_only_the_charged_period() -> None:
    net = np.full(N_DAY, 2e6)
    net[20:24] = 2.4e6  # morning spike, period 0 (no charge)
    net[68:72] = 2.4e6  # evening spike, period 1 (charged)
    period = np.where((HOUR >= 16) & (HOUR < 20), 1, 0)
    pb = problem(
        net_load_w=net,
        demand_period=period,
        demand_charge_per_kw=(0.0, 25.0),
        peak_so_far_kw=(0.0, 1800.0),
    )
    plan = plan_dispatch(pb)
    assert_invariants(pb, plan)
    assert plan.grid_w[68:72].max() < 2.4e6 - 1e5
    assert plan.grid_w[20:24].max() == pytest.approx(2.4e6, rel=1e-6)


@pytest.mark.parametrize("soc_final_min", [0.3, 0.5, 0.9])
def test_terminal_soc_is_respected(soc_final_min: float) -> None:
    price = np.where(DAY, 0.30, 0.10)  # selling the stored energy by day pays
    pb = problem(import_price_per_kwh=price, soc_final_min=soc_final_min)
    plan = plan_dispatch(pb)
    assert_invariants(pb, plan)
    assert plan.soc[-1] >= soc_final_min - 1e-7


def test_default_terminal_soc_keeps_the_start_level() -> None:
    price = np.where(DAY, 0.30, 0.10)
    plan = plan_dispatch(problem(import_price_per_kwh=price))
    assert plan.soc[-1] >= 0.5 - 1e-7


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"grid_import_limit_w": 1.2e6}, "limit 800 kW under the load, battery only 500 kW"),
        ({"grid_import_limit_w": 1.6e6}, "400 kW short for 24 h: more energy than stored"),
        ({"soc_final_min": 1.0}, "terminal above soc_max"),
    ],
)
def test_infeasible_problems_raise(overrides: dict[str, Any], why: str) -> None:
    with pytest.raises(PlanInfeasible):
        plan_dispatch(problem(**overrides))


def test_import_limit_the_battery_can_cover_is_met() -> None:
    net = np.full(N_DAY, 1e6)
    net[60:64] = 1.4e6
    pb = problem(net_load_w=net, grid_import_limit_w=1.2e6)
    plan = plan_dispatch(pb)
    assert_invariants(pb, plan)


def test_no_export_keeps_the_battery_from_exporting() -> None:
    net = np.where(DAY, -3e5, 1e5)  # the site exports by day on its own
    price = np.where(DAY, 0.30, 0.05)
    pb = problem(
        net_load_w=net,
        import_price_per_kwh=price,
        export_price_per_kwh=price,
        allow_export=False,
    )
    plan = plan_dispatch(pb)
    assert_invariants(pb, plan)
    free = replace(pb, allow_export=True)
    assert plan_dispatch(free).grid_w.min() < plan.grid_w.min() - 1e3


def test_start_below_reserve_is_not_infeasible() -> None:
    pb = problem(soc_initial=0.1)
    plan = plan_dispatch(pb)
    assert_invariants(pb, plan)
    assert plan.soc.min() >= 0.1 - 1e-7


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"net_load_w": np.zeros(0)}, "net_load_w"),
        ({"import_price_per_kwh": np.ones(3)}, "import_price_per_kwh"),
        ({"export_price_per_kwh": np.full(N_DAY, 0.5)}, "export_price_per_kwh"),
        ({"capacity_wh": 0.0}, "capacity_wh"),
        ({"reserve_soc": 0.01}, "reserve_soc"),
        ({"charge_efficiency": 1.2}, "charge_efficiency"),
        ({"soc_initial": 1.5}, "soc_initial"),
        ({"net_load_w": np.full(N_DAY, np.nan)}, "net_load_w"),
        ({"demand_charge_per_kw": (1.0, 2.0)}, "demand_charge_per_kw"),
        ({"demand_period": np.full(N_DAY, 3), "demand_charge_per_kw": (1.0,)}, "demand_period"),
        ({"final_value_per_kwh": -0.1}, "final_value_per_kwh"),
        ({"final_value_per_kwh": float("nan")}, "final_value_per_kwh"),
        ({"final_value_per_kwh": float("inf")}, "final_value_per_kwh"),
    ],
)
def test_bad_inputs_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(PlanInputError, match=field):
        problem(**overrides)


def test_solve_times_48h_and_a_month_at_15_min() -> None:
    rng = np.random.default_rng(3)

    def timed(n: int) -> float:
        hour = np.arange(n) * 0.25 % 24
        price = np.where((hour >= 16) & (hour < 21), 0.25, np.where(hour < 6, 0.05, 0.12))
        pb = problem(
            net_load_w=2e6 + 3e5 * np.sin(hour / 24 * 2 * np.pi) + rng.normal(0, 1e5, n),
            import_price_per_kwh=price,
            export_price_per_kwh=price * 0.5,
            demand_charge_per_kw=15.0,
            peak_so_far_kw=2100.0,
        )
        plan = plan_dispatch(pb)
        assert_invariants(pb, plan)
        return plan.solve_time_s

    assert timed(192) < 0.1
    assert timed(2976) < 5.0


@st.composite
def problems(draw: st.DrawFn) -> PlanProblem:
    n = draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    net = rng.uniform(-2e5, 1e6, n)
    imp = rng.uniform(-0.05, 0.5, n)
    exp = imp - rng.uniform(0.0, 0.2, n)
    soc_min = draw(st.floats(0.0, 0.3))
    soc_max = draw(st.floats(0.7, 1.0))
    reserve = draw(st.floats(soc_min, 0.5))
    n_periods = draw(st.integers(1, 3))
    periods = rng.integers(-1, n_periods, n)
    limit = draw(st.one_of(st.none(), st.floats(max(float(net.max()), 0.0), 2e6)))  # a limit is >= 0
    return PlanProblem(
        step_s=draw(st.sampled_from([300.0, 900.0, 3600.0])),
        net_load_w=net,
        import_price_per_kwh=imp,
        export_price_per_kwh=exp,
        capacity_wh=draw(st.floats(1e4, 5e6)),
        soc_initial=draw(st.floats(soc_min, soc_max)),
        soc_min=soc_min,
        soc_max=soc_max,
        reserve_soc=reserve,
        max_charge_w=draw(st.floats(0.0, 1e6)),
        max_discharge_w=draw(st.floats(0.0, 1e6)),
        charge_efficiency=draw(st.floats(0.8, 1.0)),
        discharge_efficiency=draw(st.floats(0.8, 1.0)),
        wear_cost_per_kwh=draw(st.floats(0.0, 0.05)),
        demand_period=periods,
        demand_charge_per_kw=tuple(rng.uniform(0.0, 30.0, n_periods)),
        peak_so_far_kw=tuple(rng.uniform(0.0, 800.0, n_periods)),
        grid_import_limit_w=limit,
        allow_export=draw(st.booleans()),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_plan_costs_no_more_than_idle_and_respects_bounds(pb: PlanProblem) -> None:
    # Idling is feasible here (import cap above the load, terminal = initial SoC), so the
    # optimum can only be cheaper.
    plan = plan_dispatch(pb)
    assert_invariants(pb, plan)
    idle = cost_without_battery(pb)
    assert plan.cost_without_battery == idle
    # Solver tolerances are relative to the size of the cash flows, not of their sum.
    gross = float(np.sum(np.abs(pb.import_price_per_kwh * pb.net_load_w))) * pb.step_s / 3.6e6
    assert plan.expected_cost <= idle + 1e-6 * max(1.0, abs(idle), gross)
