"""Tariff -> planner signals (ems/tariff_signals.py), flat demand groups in the LP, and the
plan builder (ems/planning/runner.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from ems.demand import DemandMeter
from ems.forecast import load_forecast, pv_forecast
from ems.planning import PlanProblem, plan_dispatch
from ems.planning.builder import BatteryNow, PlanBuilder, PlannerSettings
from ems.planning.history import StepHistory
from ems.planning.live import LivePlanner
from ems.planning.runner import PlanningRunner
from ems.tariff import PriceSeries, load_urdb
from ems.tariff_signals import tariff_signals
from tests.snapshots import bms, snapshot, unit

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
URDB = SHARED / "tariffs" / "sam_urdbv7.json"
# The shared rate (see shared/data/README.md): energy period 0 = weekday 15:00-20:00 in
# May-Oct; tier break 100 kWh. TOU demand period 0 = weekday 15:00-20:00 all year, tier
# break 100 kW. Flat demand: 6.46 in Jan, 13.87 in May-Oct.
RAW = __import__("json").loads(URDB.read_text())
E = RAW["energyratestructure"]
D = RAW["demandratestructure"]
F = RAW["flatdemandstructure"]


@pytest.fixture(scope="module")
def tariff():
    if not URDB.exists():
        pytest.skip("shared data not present")
    return load_urdb(URDB)


def test_energy_prices_follow_the_tou_schedule_and_the_tier_of_the_month(tariff) -> None:
    # Tue 2018-07-03 14:00 for 3 h at 1 h: 14:00 off-peak, 15:00 and 16:00 peak
    s = tariff_signals(tariff, datetime(2018, 7, 3, 14), 3600, 3, month_kwh=1e6, reference_peak_kw=500)
    top_off, top_peak = E[1][1]["rate"], E[0][1]["rate"]
    np.testing.assert_allclose(s.import_price_per_kwh, [top_off, top_peak, top_peak])
    np.testing.assert_allclose(s.export_price_per_kwh, s.import_price_per_kwh)  # net metering
    small = tariff_signals(tariff, datetime(2018, 7, 3, 15), 3600, 1, month_kwh=50, reference_peak_kw=50)
    assert small.import_price_per_kwh[0] == pytest.approx(E[0][0]["rate"])  # still in the first tier


def test_weekends_are_off_peak(tariff) -> None:
    s = tariff_signals(tariff, datetime(2018, 7, 7, 15), 3600, 1, month_kwh=1e6, reference_peak_kw=500)  # Sat
    assert s.import_price_per_kwh[0] == pytest.approx(E[1][1]["rate"])
    assert s.tou_keys == ((2018, 7, 1),)


def test_demand_groups_split_by_month_and_period_with_marginal_rates(tariff) -> None:
    # Tue 2018-07-31 12:00 for 16 h at 15 min: July off-peak, July peak, August off-peak
    s = tariff_signals(tariff, datetime(2018, 7, 31, 12), 900, 64, month_kwh=1e6, reference_peak_kw=500)
    keys = [s.tou_keys[g] for g in s.tou_group]
    assert keys[:12] == [(2018, 7, 1)] * 12 and keys[12:32] == [(2018, 7, 0)] * 20
    assert keys[32:48] == [(2018, 7, 1)] * 16 and keys[48:] == [(2018, 8, 1)] * 16
    rates = dict(zip(s.tou_keys, s.tou_rates_per_kw, strict=True))
    assert rates[(2018, 7, 0)] == pytest.approx(D[0][1]["rate"])  # 500 kW: beyond the 100 kW break
    assert rates[(2018, 7, 1)] == pytest.approx(D[1][1]["rate"])
    assert [s.flat_keys[g] for g in s.flat_group[[0, -1]]] == [(2018, 7), (2018, 8)]
    np.testing.assert_allclose(s.flat_rates_per_kw, [F[2][0]["rate"], F[2][0]["rate"]])
    low = tariff_signals(tariff, datetime(2018, 1, 2, 15), 900, 1, month_kwh=1e6, reference_peak_kw=50)
    assert low.tou_rates_per_kw[0] == pytest.approx(D[0][0]["rate"])  # first tier at 50 kW
    assert low.flat_rates_per_kw[0] == pytest.approx(F[0][0]["rate"])


def test_dynamic_prices_replace_energy_and_hold_their_ends(tariff) -> None:
    prices = PriceSeries(start=datetime(2018, 7, 3, 0), step_s=3600, buy_per_kwh=(0.1, 0.3),
                         sell_per_kwh=(0.05, 0.5), mode="replace")
    t = tariff.model_copy(update={"dynamic_prices": prices})
    s = tariff_signals(t, datetime(2018, 7, 2, 23), 3600, 4, month_kwh=1e6, reference_peak_kw=500)
    np.testing.assert_allclose(s.import_price_per_kwh, [0.1, 0.1, 0.3, 0.3])
    np.testing.assert_allclose(s.export_price_per_kwh, [0.05, 0.05, 0.3, 0.3])  # never above buy


def test_lp_flat_group_shaves_the_month_peak_and_sets_the_cap() -> None:
    n = 8
    load = np.full(n, 2e6)
    load[5] = 3e6  # one 15-min spike
    pb = PlanProblem(step_s=900, net_load_w=load, import_price_per_kwh=0.1, export_price_per_kwh=0.0,
                     capacity_wh=2e6, soc_initial=0.5, max_charge_w=1e6, max_discharge_w=1e6,
                     charge_efficiency=1.0, discharge_efficiency=1.0,
                     flat_group=np.zeros(n, dtype=np.int64), flat_demand_charge_per_kw=10.0,
                     flat_peak_so_far_kw=1500.0, allow_export=False, soc_final_min=0.0)
    plan = plan_dispatch(pb)
    assert plan.flat_peak_kw[0] == pytest.approx(2000.0)  # 1 MW for 15 min covers the spike
    assert plan.demand_cost == pytest.approx(10.0 * 500.0)  # above the 1.5 MW already set
    np.testing.assert_allclose(plan.import_cap_w(pb), 2e6)


def test_step_history_averages_steps_and_fills_gaps() -> None:
    h = StepHistory(900.0, keep_steps=10)
    for t in range(60, 1860, 60):  # two steps at 1 min: 1 MW then 3 MW
        h.observe(float(t), 1e6 if t <= 900 else 3e6, 60.0)
    h.observe(3600.0 + 60.0, 5e6, 60.0)  # the loop was away for 30 min
    np.testing.assert_allclose(h.complete_until(4500.0), [1e6, 3e6, 3e6, 3e6, 5e6])


def test_the_demand_meter_keeps_month_and_tou_peaks_for_the_planner(tariff) -> None:
    m = DemandMeter(tariff)  # fed naive tariff time, as the planner and the backtest read it
    t0 = (datetime(2018, 7, 3, 15) - datetime(1970, 1, 1)).total_seconds()  # Tue, TOU period 0
    for k, kw in enumerate([400, 800, 600]):
        m.add(kw * 1e3, 900, t0 + (k + 1) * 900)
    m.add(900e3, 900, t0 + 6 * 3600)  # 20:45: off-peak period 1; closes the 15:30 interval
    assert m.tou_peak_kw((2018, 7, 0)) == pytest.approx(800)
    assert m.peak_kw((2018, 7)) == pytest.approx(800)  # 20:45's interval is still open
    m.add(-100e3, 900, t0 + 6 * 3600 + 900)
    assert m.tou_peak_kw((2018, 7, 1)) == pytest.approx(900) and m.peak_kw((2018, 7)) == pytest.approx(900)


SETTINGS = PlannerSettings(step_s=900, horizon_steps=96, soc_min=0.1, soc_max=0.95, reserve_soc=0.2,
                           charge_efficiency=0.95, discharge_efficiency=0.95, wear_cost_per_kwh=0.01)


def builder_with_a_day(tariff) -> tuple[PlanBuilder, DemandMeter, float]:
    b = PlanBuilder(tariff, SETTINGS)
    peaks = DemandMeter(tariff)
    t0 = (datetime(2018, 7, 2) - datetime(1970, 1, 1)).total_seconds()  # Monday
    for k in range(96):
        load = 3e6 if 60 <= k < 80 else 2e6  # 15:00-20:00 higher
        b.observe(t0 + (k + 1) * 900, 900, load)
        peaks.add(load, 900, t0 + (k + 1) * 900)
    return b, peaks, t0 + 86400


def test_plan_builder_uses_the_peaks_so_far_and_the_forecast(tariff) -> None:
    b, peaks, now = builder_with_a_day(tariff)
    req = b.request(now + 60.0, BatteryNow(0.5, 4e6, 2e6, 2e6), peaks)
    pb = req.problem
    assert req.start_local_s == now and pb.net_load_w.size == 96
    assert pb.net_load_w[60] == pytest.approx(3e6) and pb.net_load_w[0] == pytest.approx(2e6)
    assert list(pb.peaks_so_far) == pytest.approx([3000.0, 2000.0])  # TOU keys sort: period 0, 1
    assert pb.flat_peaks_so_far[0] == pytest.approx(3000.0)
    assert pb.reserve_soc == 0.2 and pb.soc_initial == 0.5
    plan = plan_dispatch(pb)
    # yesterday's 3 MW is billed already: nothing to gain by shaving today below it
    assert plan.peak_kw[0] == pytest.approx(3000.0)


def _snapshot_at(local_s: float, now_s: float, soc: float = 0.5):
    """A site whose wall clock reads `local_s` (UTC): 2 units of 2 MWh, 1 MW each, 2 MW of load."""
    units = tuple(unit(uid, bms_reading=replace(bms(soc=soc), capacity_wh=2e6), rated_w=1e6) for uid in ("u1", "u2"))
    return replace(snapshot(2e6, units, now_s=now_s, period_s=60.0), wall_s=local_s)


async def _live(tariff) -> tuple[LivePlanner, float, asyncio.Task[None]]:
    from zoneinfo import ZoneInfo

    b, peaks, now = builder_with_a_day(tariff)
    lp = LivePlanner(PlanningRunner(b, 3600.0, peaks), ZoneInfo("UTC"))
    return lp, now, asyncio.create_task(lp.run())


async def test_live_planner_solves_off_the_loop_and_uses_a_quick_plan_in_the_same_period(tariff) -> None:
    lp, now, worker = await _live(tariff)
    try:
        assert lp.runner.due(0.0)
        view = await lp.step(_snapshot_at(now, 100.0), wait_s=5.0)  # a few ms to solve: used at once
        assert view is not None and view.start_s == 100.0 and len(view.soc) == 97
        assert view.soc[0] == pytest.approx(0.5) and lp.runner.solves == 1
        assert not lp.runner.due(3000.0) and lp.runner.due(3800.0)
        summary = lp.runner.summary(100.0, now)
        assert summary["plan"]["schedule"][0]["start"] == "2018-07-03T00:00"
        # without waiting, a solve started in a period is picked up in a later one
        later = await lp.step(_snapshot_at(now + 3700.0, 3800.0), wait_s=0.0)
        assert later is view and lp.busy
        await asyncio.sleep(0.5)
        assert await lp.step(_snapshot_at(now + 3760.0, 3860.0)) is not view and not lp.busy
    finally:
        worker.cancel()


async def test_live_planner_replans_early_when_the_soc_drifts_off_the_plan(tariff) -> None:
    """Same rule as the backtest (replan_due): at most once a planning step, before the
    interval is over, when the site's SoC is more than replan_soc_deviation off the plan."""
    lp, now, worker = await _live(tariff)
    try:
        view = await lp.step(_snapshot_at(now, 0.0), wait_s=5.0)
        assert view is not None
        on_plan = view.soc[1]  # where the plan expects the SoC after its first step
        assert not lp.runner.due(900.0, on_plan)
        assert not lp.runner.due(600.0, on_plan + 0.2)  # within the first step: too soon
        assert lp.runner.due(900.0, on_plan + 0.2)
        assert not lp.runner.due(900.0)  # no SoC: only the interval counts
    finally:
        worker.cancel()


def test_a_plan_that_cannot_be_built_is_counted_with_its_kind(tariff) -> None:
    runner = PlanningRunner(PlanBuilder(tariff, SETTINGS), 900.0, DemandMeter(tariff))
    assert runner.request(0.0, 0.0, BatteryNow(0.5, 4e6, 2e6, 2e6)) is None  # no history yet
    assert runner.failures == 1 and runner.last_error == "NotEnoughHistory" and runner.view is None


def test_plan_builder_forecasts_gross_load_and_pv_apart(tariff) -> None:
    """With PV metered, the net load ahead is the gross load's forecast (net + PV, by the
    load's week) less PV's own (by the sun's day), each from its own history."""
    b = PlanBuilder(tariff, SETTINGS)
    peaks = DemandMeter(tariff)
    t0 = (datetime(2018, 7, 2) - datetime(1970, 1, 1)).total_seconds()
    pv_w = np.array([500e3 if 40 <= k < 60 else 0.0 for k in range(96)])  # 10:00-15:00
    gross_w = np.array([3e6 if 60 <= k < 80 else 2e6 for k in range(96)])
    for k in range(96):
        b.observe(t0 + (k + 1) * 900, 900, gross_w[k] - pv_w[k], pv_w=pv_w[k])
    req = b.request(t0 + 86400 + 60.0, BatteryNow(0.5, 4e6, 2e6, 2e6), peaks)
    s = SETTINGS
    expected = load_forecast(gross_w, s.step_s, 96, weeks=s.history_weeks, envelope_days=s.envelope_days,
                             correction_tau_s=s.correction_tau_s) - pv_forecast(pv_w, s.step_s, 96)
    expected = np.where(expected > 0, expected * (1 + s.forecast_margin), expected)
    assert req.problem.net_load_w == pytest.approx(expected)
    assert req.problem.net_load_w[50] == pytest.approx((2e6 - 500e3) * (1 + s.forecast_margin), rel=1e-3)
