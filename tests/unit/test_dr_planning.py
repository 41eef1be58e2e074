"""The planner plans for demand-response events: a soft import cap over the window, priced
at what the program pays and charges (ems/planning/dr_terms.py, ems/planning/lp.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from ems.backtest.config import BacktestConfig
from ems.backtest.engine import Trace, run_backtest
from ems.model.dr import DrEvent
from ems.model.reasons import Reason
from ems.planning.dr_terms import dr_terms, on_local_clock, over_cost_per_kwh
from ems.planning.lp import PlanInputError, PlanProblem, plan_dispatch
from ems.planning.reused_lp import ReusedLp
from ems.tariff import EnergyPeriod, EnergyTier, Tariff
from policies.demand_response import EventTally

STEP_S = 900.0
N = 96  # a day of quarter hours from local midnight (local time = the events' wall clock here)
H = 3600.0
LOAD_W = 1.0e6


def _event(**kw: float) -> DrEvent:
    """16:00-18:00, import at most 600 kW."""
    return DrEvent("ev", 16 * H, 18 * H, target_import_w=6.0e5, **kw)


def _problem(events: list[DrEvent], soc: float = 0.2, prices: np.ndarray | None = None) -> PlanProblem:
    net = np.full(N, LOAD_W)
    terms = dr_terms(events, 0.0, 0.0, STEP_S, net, lambda *_: None)
    return PlanProblem(
        step_s=STEP_S, net_load_w=net, import_price_per_kwh=np.full(N, 0.20) if prices is None else prices,
        export_price_per_kwh=0.0, capacity_wh=2.0e6, soc_initial=soc, max_charge_w=1.0e6, max_discharge_w=1.0e6,
        soc_min=0.1, soc_max=0.95, reserve_soc=0.1, charge_efficiency=0.95, discharge_efficiency=0.95,
        wear_cost_per_kwh=0.01, allow_export=False, soc_final_min=0.0,
        dr_target_w=terms.target_w, dr_over_cost_per_kwh=terms.over_cost_per_kwh)


WINDOW = slice(64, 72)  # 16:00-18:00


def test_a_paying_event_is_charged_for_before_the_window_and_covered_in_it() -> None:
    plan = plan_dispatch(_problem([_event(price_per_kwh=1.0)]))
    # charged before the window (at 0.20 a kWh, plus losses, against 1.00 a kWh of reduction) ...
    assert plan.soc[64] > 0.2 + 0.3
    # ... and in the window the import stays at the target: 800 kWh over 2 h from the battery
    assert np.all(plan.grid_w[WINDOW] <= 6.0e5 + 1.0)
    assert plan.dr_cost == pytest.approx(0.0, abs=1e-6)
    # never more than it needs: charged just enough (less than the full battery)
    assert plan.soc[64] < 0.95 - 0.05


def test_without_payment_or_penalty_the_plan_does_not_charge_at_a_loss() -> None:
    plain = plan_dispatch(_problem([]))
    free = plan_dispatch(_problem([_event()]))  # an event that pays nothing and charges nothing
    assert np.allclose(free.soc, plain.soc, atol=1e-6)
    assert np.allclose(free.charge_w, 0.0, atol=1.0)  # flat prices: charging only loses
    assert np.all(free.grid_w[WINDOW] > 6.0e5 + 1e5)


def test_a_penalty_alone_is_weighed_too() -> None:
    plan = plan_dispatch(_problem([_event(penalty_per_kwh=0.8)]))
    assert np.all(plan.grid_w[WINDOW] <= 6.0e5 + 1.0)


def test_a_payment_smaller_than_the_losses_is_not_chased() -> None:
    # a kWh delivered in the window costs 0.20 / 0.95 / 0.95 + wear (~0.23): a 0.02 payment does not pay
    plan = plan_dispatch(_problem([_event(price_per_kwh=0.02)]))
    assert np.allclose(plan.charge_w, 0.0, atol=1.0)


def test_the_charge_is_kept_for_the_window_rather_than_spent_on_arbitrage_before_it() -> None:
    prices = np.full(N, 0.20)
    prices[56:64] = 0.40  # 14:00-16:00: dear, the plan would discharge there
    plain = plan_dispatch(_problem([], soc=0.6, prices=prices))
    assert plain.soc[64] < 0.6 - 0.2  # drained before 16:00 without the event
    kept = plan_dispatch(_problem([_event(price_per_kw=2.0)], soc=0.6, prices=prices))
    # 2.0 a kW of average reduction over 2 h: 1.00 a kWh over the target
    assert over_cost_per_kwh(_event(price_per_kw=2.0)) == pytest.approx(1.0)
    assert np.all(kept.grid_w[WINDOW] <= 6.0e5 + 1.0)
    assert kept.soc[64] > plain.soc[64] + 0.2


def test_the_reused_lp_plans_the_same() -> None:
    lp = ReusedLp()
    for events in ([], [_event(price_per_kwh=1.0)], [_event(penalty_per_kwh=0.8)], []):
        pb = _problem(events)
        a, b = plan_dispatch(pb), lp.solve(pb, start_step=0)
        assert a.objective == pytest.approx(b.objective, rel=1e-7, abs=1e-6)
        assert a.dr_cost == pytest.approx(b.dr_cost, abs=1e-4)
        # (flat prices leave ties: when to discharge the spare above the reserve is the solver's pick)
        assert a.grid_w[WINDOW].max() == pytest.approx(b.grid_w[WINDOW].max(), abs=1.0)


def test_a_window_the_plan_steps_cut_pays_its_share_and_overlaps_keep_the_one_in_force() -> None:
    net = np.full(N, LOAD_W)
    low = DrEvent("low", 16.25 * H, 17 * H, target_import_w=5e5, price_per_kwh=1.0)  # from 16:15
    high = DrEvent("high", 16.5 * H, 17.5 * H, target_import_w=7e5, price_per_kwh=2.0, priority=5)
    t = dr_terms([low, high], 0.0, 0.0, STEP_S, net, lambda *_: None)
    assert t.event_ids == ("high", "low")
    assert t.target_w[65] == 5e5 and t.over_cost_per_kwh[65] == pytest.approx(1.0)
    assert t.target_w[66] == 7e5 and t.target_w[69] == 7e5 and np.isinf(t.target_w[70])
    shifted = dr_terms([low], 0.0, 16.125 * H, STEP_S, net, lambda *_: None)  # the plan starts at 16:07:30
    assert shifted.over_cost_per_kwh[0] == pytest.approx(0.5)  # a half step of the window is in step 0


def test_a_reduction_takes_the_programs_baseline_else_the_forecast() -> None:
    net = np.full(N, LOAD_W)
    cut = DrEvent("cut", 16 * H, 18 * H, reduction_w=2e5, price_per_kwh=1.0)
    from_program = dr_terms([cut], 0.0, 0.0, STEP_S, net, lambda e, a, b: 9e5, margin_fraction=0.03)
    assert from_program.target_w[64] == pytest.approx(7e5 * 0.97)
    from_forecast = dr_terms([cut], 0.0, 0.0, STEP_S, net, lambda *_: None)
    assert from_forecast.target_w[64] == pytest.approx(8e5)


def test_bad_dr_arrays_name_the_field() -> None:
    with pytest.raises(PlanInputError, match="dr_over_cost_per_kwh"):
        PlanProblem(step_s=STEP_S, net_load_w=np.ones(4), import_price_per_kwh=0.1, export_price_per_kwh=0.0,
                    capacity_wh=1.0, soc_initial=0.5, max_charge_w=1.0, max_discharge_w=1.0,
                    dr_over_cost_per_kwh=np.array([0.0, -1.0, 0.0, 0.0]))
    with pytest.raises(PlanInputError, match="dr_target_w has 3 steps"):
        PlanProblem(step_s=STEP_S, net_load_w=np.ones(4), import_price_per_kwh=0.1, export_price_per_kwh=0.0,
                    capacity_wh=1.0, soc_initial=0.5, max_charge_w=1.0, max_discharge_w=1.0,
                    dr_target_w=np.ones(3))


# --- through the period step: the backtest engine, as live (ems/backtest/engine.py) ---------------

RACKS = {"rows": 4, "racks_per_row": 8, "nameplate_w": 60e3, "gpu_share": 0.8}  # 32 racks at 50 kW
TIERS = {"row01": 1, "row02": 2, "row03": 3, "row04": 4}


def _site(racks: bool = False) -> BacktestConfig:
    """One 1 MW / 2 MWh unit at 25 % behind a flat 2 MW load, arbitrage on a flat 0.20 a kWh
    without its hold-value hedge (so nothing but an event could make charging pay), demand
    response with its defaults; with `racks`, 80 % of the load is 32 GPU racks in four tiers."""
    return BacktestConfig.model_validate({
        "racks": RACKS if racks else None,
        "battery_units": [{"id": "b1", "capacity_wh": 2.0e6, "rated_power_w": 1.0e6, "initial_soc": 0.25,
                           "charge_efficiency": 0.96, "discharge_efficiency": 0.96}],
        "policies": {"battery": {"soc_min": 0.1, "soc_max": 0.95},
                     "arbitrage": {"tariff": "unused.json", "step_s": 900, "horizon_h": 24, "reserve_soc": 0.2,
                                   "hold_value_per_kwh_h": 0.0, "charge_efficiency": 0.96,
                                   "discharge_efficiency": 0.96},
                     "demand_response": {"flex_tiers": TIERS if racks else {}}}})


def _replay(event: DrEvent, racks: bool = False) -> tuple[Trace, EventTally]:
    tariff = Tariff(energy_periods=(EnergyPeriod(tiers=(EnergyTier(rate_per_kwh=0.20),)),))
    load = 2.0e6 + 5e4 * np.sin(np.arange(2 * 1440) / 40.0)  # two days at 60 s, a small swing
    trace = run_backtest(_site(racks), tariff, datetime(2018, 7, 2), 60, load, warmup_w=np.full(2 * 1440, 2.0e6),
                         dr_events=[event])
    (result,) = trace.dr_results
    return trace, result


T0 = (datetime(2018, 7, 2) - datetime(1970, 1, 1)).total_seconds()  # the backtest's clock: the series' own


def test_the_step_follows_the_plan_that_charges_for_a_paying_event() -> None:
    # announced a day ahead (in the book from the start): day 2, 16:00-18:00, at most 1.4 MW
    paid = DrEvent("paid", T0 + 40 * H, T0 + 42 * H, target_import_w=1.4e6, price_per_kwh=1.0)
    trace, result = _replay(paid)
    start = 40 * 60
    # the battery above its reserve could not give 600 kW for 2 h from 25 %: the plan charged it
    assert trace.soc[start - 1] > 0.25 + 0.4
    assert result.minutes == 120 and result.minutes_at_target >= 118 and result.unreachable_s == 0
    assert result.revenue > 0
    # the charge came from the plan (arbitrage), not the fixed pre-charge, which stood down
    charging = set(trace.reason[:start][trace.battery_w[:start] < -1e4].tolist())
    assert Reason.ARBITRAGE_CHARGE.value in charging and Reason.DR_PRECHARGE.value not in charging


def test_an_event_that_pays_nothing_is_not_charged_for() -> None:
    free = DrEvent("free", T0 + 40 * H, T0 + 42 * H, target_import_w=1.4e6)
    trace, result = _replay(free)
    start = 40 * 60
    assert trace.soc[:start].max() <= 0.25 + 1e-3  # no charge at a loss, fixed pre-charge or not
    assert result.minutes_at_target < 10  # so the battery cannot hold the window: what the program asked


def test_with_racks_the_charged_battery_holds_the_window_without_throttling_and_without_it_the_racks_give() -> None:
    paid = DrEvent("paid", T0 + 40 * H, T0 + 42 * H, target_import_w=1.4e6, price_per_kwh=1.0)
    trace, result = _replay(paid, racks=True)
    assert result.minutes_at_target >= 118
    assert sum(trace.gpu_held_wh_by_tier) < 1e3  # the plan's charge covered it: (next to) no GPU work given up
    free = DrEvent("free", T0 + 40 * H, T0 + 42 * H, target_import_w=1.4e6)
    trace, result = _replay(free, racks=True)
    # nothing charged for it: the battery's 5 % above its reserve is soon spent, the racks hold the rest
    held, demand = trace.gpu_held_wh_by_tier, trace.gpu_demand_wh_by_tier
    assert result.minutes_at_target >= 110
    assert held[4] > 500e3 and held[0] == 0.0
    for tier, share in ((1, 0.10), (2, 0.25), (3, 0.50)):  # within each tier's share
        assert held[tier] <= share * demand[tier] + 1.0
    assert result.gpu_throttled_wh == pytest.approx(sum(held), rel=0.1)  # the controller's estimate


async def test_the_live_planner_replans_at_once_for_an_announced_event_in_a_zoned_clock() -> None:
    """`ems run`'s planner: an event added to the book makes a plan due at once (not at the
    next interval); its window, in the site's wall clock, lands on the local plan steps."""
    import asyncio
    from dataclasses import replace
    from zoneinfo import ZoneInfo

    from ems.demand import DemandMeter
    from ems.planning.builder import PlanBuilder, PlannerSettings
    from ems.planning.live import LivePlanner
    from ems.planning.runner import PlanningRunner
    from tests.snapshots import bms, snapshot, unit

    tariff = Tariff(energy_periods=(EnergyPeriod(tiers=(EnergyTier(rate_per_kwh=0.20),)),))
    settings = PlannerSettings(step_s=900.0, horizon_steps=96, soc_min=0.1, soc_max=0.95, reserve_soc=0.2,
                               charge_efficiency=0.96, discharge_efficiency=0.96, wear_cost_per_kwh=0.01)
    b = PlanBuilder(tariff, settings)
    zone = ZoneInfo("Europe/Berlin")  # UTC+2 in July: local = wall + 7200
    wall0 = (datetime(2018, 7, 3) - datetime(1970, 1, 1)).total_seconds()  # 00:00 UTC, 02:00 local
    for k in range(96):
        b.observe(wall0 + 7200 - 86400 + (k + 1) * 900, 900, 2e6)
    lp = LivePlanner(PlanningRunner(b, 3600.0, DemandMeter(tariff, zone)), zone)
    worker = asyncio.create_task(lp.run())

    def snap(wall_s: float, now_s: float):  # 2 MW of load, 2 MWh at 25 %, 1 MW
        units = (unit("u1", bms_reading=replace(bms(soc=0.25), capacity_wh=2e6), rated_w=1e6),)
        return replace(snapshot(2e6, units, now_s=now_s, period_s=60.0), wall_s=wall_s)

    try:
        first = await lp.step(snap(wall0, 0.0), wait_s=5.0)
        assert first is not None and first.dr_event_ids == () and not lp.runner.due(60.0, 0.25)
        # 14:00-16:00 UTC = 16:00-18:00 local: plan steps 56-63 of a plan from 02:00 local
        ev = DrEvent("ev", wall0 + 14 * H, wall0 + 16 * H, target_import_w=1.4e6, price_per_kwh=1.0)
        assert lp.runner.due(60.0, 0.25, [ev])
        view = await lp.step(snap(wall0 + 60.0, 60.0), wait_s=5.0, dr_events=[ev])
        assert view is not None and view is not first and view.dr_event_ids == ("ev",)
        req = lp.runner.request_in_force
        assert req is not None
        cap = req.problem.dr_target_w
        assert np.isinf(cap[55]) and cap[56] == 1.4e6 and np.isinf(cap[64])
        assert view.soc[56] > 0.6 and max(view.grid_w[56:64]) <= 1.4e6 + 1.0
        assert lp.runner.summary(60.0, wall0 + 7260.0)["plan"]["dr_events"] == ["ev"]  # what operators see
    finally:
        worker.cancel()


def test_the_csv_carries_a_penalty_and_the_racks_name_known_rows(tmp_path) -> None:
    from ems.backtest.dr_events import load_dr_events
    from ems.model.errors import ConfigError
    from ems.topology import validated

    p = tmp_path / "e.csv"
    p.write_text("start,end,target_kw,penalty_per_kwh\n2018-07-02T15:00,2018-07-02T16:00,100,0.75\n")
    (e,) = load_dr_events(p)
    assert e.penalty_per_kwh == 0.75 and over_cost_per_kwh(e) == 0.75
    bad = _site(racks=True).model_dump() | {"policies": {"demand_response": {"flex_tiers": {"row09": 4}}}}
    with pytest.raises(ConfigError, match="flex_tiers names unknown rows"):
        validated(BacktestConfig, bad, "site.yaml", "backtest configuration")


def test_an_unknown_baseline_rule_names_its_field() -> None:
    from ems.config import DemandResponseConfig

    with pytest.raises(ValueError, match=r"baseline\.rule"):
        DemandResponseConfig.model_validate({"baseline": {"rule": "ten_of_ten"}})



def test_an_event_past_a_daylight_saving_change_is_planned_on_its_own_local_hours() -> None:
    # planned on Saturday 2026-03-28 22:00 in Berlin (CET, +1 h); the event is Sunday 17:00-18:00
    # local, after the clocks went forward (CEST, +2 h): 15:00-16:00 UTC
    zone = ZoneInfo("Europe/Berlin")
    now_wall_s = datetime(2026, 3, 28, 21, 0, tzinfo=UTC).timestamp()
    offset_s = 3600.0  # the local clock's lead now
    start_local_s = now_wall_s + offset_s
    step_s, n = 900.0, 96
    ev = DrEvent("ev", datetime(2026, 3, 29, 15, 0, tzinfo=UTC).timestamp(),
                 datetime(2026, 3, 29, 16, 0, tzinfo=UTC).timestamp(), target_import_w=5e5)
    terms = dr_terms(on_local_clock([ev], zone, offset_s), offset_s, start_local_s, step_s,
                     np.full(n, 1e6), lambda *_: None)
    capped = np.flatnonzero(np.isfinite(terms.target_w))
    # the plan's steps count naive local time from Saturday 22:00: Sunday 17:00 is 19 h on
    assert capped.tolist() == list(range(19 * 4, 20 * 4))
    # an event that does not cross a change is the same event (its key for re-plans unchanged)
    same = DrEvent("same", now_wall_s + 3600.0, now_wall_s + 7200.0, target_import_w=5e5)
    assert on_local_clock([same], zone, offset_s) == [same]
