"""The planner's LP kept between solves gives the plans a rebuilt LP gives.

Windows of the shared tariff's signals over a synthetic load: a rolling day moved one
step at a time across a day and a month boundary (demand groups come and go), jumps
(no overlap), a new horizon length, more groups than the kept model has room for, and
every LP preference on. Each window is solved by `ReusedLp` and by `plan_dispatch`; the
optima must agree.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ems.planning.lp import PlanInfeasible, PlanProblem, plan_dispatch
from ems.planning.reused_lp import ReusedLp
from ems.tariff.model import Tariff
from ems.tariff_signals import tariff_signals

URDB = Path(__file__).resolve().parents[3] / "shared" / "data" / "tariffs" / "sam_urdbv7.json"
STEP_S = 900
T0 = datetime(2018, 6, 29)


@pytest.fixture(scope="module")
def tariff() -> Tariff:
    if not URDB.exists():
        pytest.skip("shared data not present")
    from ems.tariff import load_urdb
    return load_urdb(URDB)


def _load_w(k0: int, n: int) -> np.ndarray:
    """A site of ~2-4 MW with a daily hump and some noise, from absolute step k0."""
    k = np.arange(k0, k0 + n)
    rng = np.random.default_rng(k0)
    return 3.0e6 + 1.0e6 * np.sin(2 * np.pi * (k % 96) / 96 - 1.5) + rng.normal(0, 1e5, n)


def _problem(tariff: Tariff, k0: int, n: int, soc: float, **extra: float) -> PlanProblem:
    start = T0 + timedelta(seconds=k0 * STEP_S)
    sig = tariff_signals(tariff, start, STEP_S, n, month_kwh=2e6, reference_peak_kw=4000.0, per_day=True)
    rng = np.random.default_rng(k0 + 7)
    return PlanProblem(
        step_s=STEP_S, net_load_w=_load_w(k0, n),
        import_price_per_kwh=sig.import_price_per_kwh, export_price_per_kwh=sig.export_price_per_kwh,
        capacity_wh=4e6, soc_initial=soc, max_charge_w=2e6, max_discharge_w=2e6,
        soc_min=0.1, soc_max=0.95, reserve_soc=0.2, charge_efficiency=0.96, discharge_efficiency=0.96,
        wear_cost_per_kwh=0.01, demand_charge_per_kw=sig.tou_rates_per_kw.tolist(),
        peak_so_far_kw=rng.uniform(1500, 3500, sig.tou_rates_per_kw.size).tolist(), demand_period=sig.tou_group,
        flat_group=sig.flat_group, flat_demand_charge_per_kw=sig.flat_rates_per_kw.tolist(),
        flat_peak_so_far_kw=rng.uniform(1500, 3500, sig.flat_rates_per_kw.size).tolist(),
        allow_export=False, soc_final_min=min(soc, 0.5), **extra,
    )


PREFERENCES = {"hold_value_per_kwh_h": 0.002, "over_peak_cost_per_kwh": 0.02, "charge_peak_weight": 1.0}


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


@pytest.mark.parametrize("extra", [{}, PREFERENCES, {"final_value_per_kwh": 0.4}],
                         ids=["plain", "preferences", "final value"])
def test_a_rolling_day_across_day_and_month_ends_matches_a_rebuild(tariff: Tariff, extra: dict[str, float]) -> None:
    lp = ReusedLp()
    soc = 0.5
    # from 29 June 00:00, one step at a time over 2 July 00:00 (day ends, then the month end)
    for k0 in [*range(0, 12), *range(90, 100), *range(180, 200)]:
        pb = _problem(tariff, k0, 96, soc, **extra)
        got, want = lp.solve(pb, start_step=k0), plan_dispatch(pb)
        assert _same(got.objective, want.objective), k0
        assert _same(got.expected_cost, want.expected_cost) or not extra, k0
        soc = float(np.clip(got.soc[1], 0.2, 0.95))  # the SoC moves with the plan, as it does live
    assert lp.rebuilds == 1  # one model for all of them


def test_jumps_new_horizons_and_many_groups_still_match(tariff: Tariff) -> None:
    lp = ReusedLp(slots=2)  # fewer than a day's groups: it must grow
    for k0, n in [(0, 96), (500, 96), (501, 96), (3, 48), (4, 48), (40, 192), (41, 192), (0, 96)]:
        pb = _problem(tariff, k0, n, 0.6, **PREFERENCES)
        assert _same(lp.solve(pb, start_step=k0).objective, plan_dispatch(pb).objective), (k0, n)
    assert lp.rebuilds >= 3  # the growth, and each new horizon


def test_a_final_value_fills_the_battery_by_the_end_and_none_leaves_it_at_the_pin(tariff: Tariff) -> None:
    """A kWh stored at the end worth more than any spread: the plan ends full; worth nothing:
    it ends where it is pinned (the LP has no reason to pay for charge it keeps)."""
    for value, end in ((0.0, 0.5), (5.0, 0.95)):
        pb = _problem(tariff, 0, 96, 0.5, final_value_per_kwh=value)
        for plan in (plan_dispatch(pb), ReusedLp().solve(pb)):
            assert plan.soc[-1] == pytest.approx(end, abs=1e-6), value


def test_an_unknown_start_still_solves_right(tariff: Tariff) -> None:
    lp = ReusedLp()
    for k0 in range(0, 8):
        pb = _problem(tariff, k0, 96, 0.5)
        assert _same(lp.solve(pb).objective, plan_dispatch(pb).objective)


def test_an_unreachable_final_soc_is_infeasible_in_both(tariff: Tariff) -> None:
    base = _problem(tariff, 0, 2, 0.5)  # two steps cannot charge 0.3 -> 0.9
    pb = PlanProblem(**{f: getattr(base, f) for f in (
        "step_s", "net_load_w", "import_price_per_kwh", "export_price_per_kwh", "capacity_wh", "max_charge_w",
        "max_discharge_w", "soc_min", "soc_max", "reserve_soc")}, soc_initial=0.3, soc_final_min=0.9)
    with pytest.raises(PlanInfeasible):
        plan_dispatch(pb)
    lp = ReusedLp()
    with pytest.raises(PlanInfeasible):
        lp.solve(pb)
    # and the kept model still solves the next feasible window
    ok = _problem(tariff, 1, 8, 0.5)
    assert _same(lp.solve(ok, start_step=1).objective, plan_dispatch(ok).objective)


def test_a_warm_solve_without_a_verdict_is_solved_again_from_scratch(tariff: Tariff) -> None:
    # a year of 15-min plans had 4 warm solves end "Unknown"; here the kept model is made to
    # stop at once (an iteration limit of 0), which a new model for the same window does not
    lp = ReusedLp()
    first = _problem(tariff, 0, 96, 0.5, **PREFERENCES)
    lp.solve(first, start_step=0)
    assert lp._highs is not None
    lp._highs.setOptionValue("simplex_iteration_limit", 0)
    nxt = _problem(tariff, 1, 96, 0.45, **PREFERENCES)
    got = lp.solve(nxt, start_step=1)
    assert lp.recoveries == 1
    assert _same(got.objective, plan_dispatch(nxt).objective)
    # and the new model goes on warm
    again = _problem(tariff, 2, 96, 0.45, **PREFERENCES)
    assert _same(lp.solve(again, start_step=2).objective, plan_dispatch(again).objective)
    assert lp.recoveries == 1
