"""Genset dispatch and the off-grid / weak-grid balance: pure, table-driven where it helps."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ems.envelope import EnvelopeParams
from ems.model.reasons import Reason
from ems.period import StepParams, StepState, step
from policies import genset_dispatch as gd
from policies.battery_limits import BatteryLimitsParams
from policies.fuel_curve import DEFAULT_L_PER_H, FuelCurve
from policies.grid_limits import GridLimitsParams
from policies.microgrid import MicrogridParams, Mode
from tests.snapshots import snapshot, unit

MW = 1e6


def spec(gid: str = "g1", rated_w: float = 1.5 * MW, **kw: float) -> gd.GensetSpec:
    base = dict(start_delay_s=10.0, warmup_s=60.0, min_run_s=1800.0, cooldown_s=300.0)
    base.update(kw)
    return gd.GensetSpec(gid, rated_w, FuelCurve.default_for(rated_w), **base)  # type: ignore[arg-type]


def params(*gensets: gd.GensetSpec) -> gd.DispatchParams:
    return gd.DispatchParams(gensets or (spec(),), start_soc=0.3, stop_soc=0.8)


def inputs(now_s: float, soc: float, demand_w: float = 1 * MW, allowance_w: float = 0.0,
           discharge_w: float = 2 * MW, charge_w: float = 2 * MW, period_s: float = 10.0) -> gd.DispatchInputs:
    return gd.DispatchInputs(now_s, period_s, soc, demand_w, allowance_w, discharge_w, charge_w)


def run(p: gd.DispatchParams, state: gd.DispatchState, t0: float, t1: float, soc: float, dt: float = 10.0,
        **kw: float) -> tuple[list[gd.Dispatch], gd.DispatchState]:
    out = []
    t = t0
    while t < t1:
        d, state = gd.decide(inputs(t, soc, period_s=dt, **kw), p, state)
        out.append(d)
        t += dt
    return out, state


# --- the fuel curve --------------------------------------------------------------------------
def test_the_default_fuel_curve_is_a_1_5_mw_units_scaled_by_rating() -> None:
    c = FuelCurve.default_for(1.5 * MW)
    assert c.l_per_h(1.0) == pytest.approx(DEFAULT_L_PER_H[-1])
    assert c.l_per_h(0.625) == pytest.approx((205.6 + 294.6) / 2)
    assert FuelCurve.default_for(3 * MW).l_per_h(0.5) == pytest.approx(2 * 205.6)
    assert c.best_load_fraction() == 0.75  # fewest litres per kWh


# --- starts and stops, each with its reason -------------------------------------------------
def test_GENSET_START_LOW_SOC() -> None:
    p = params()
    d, s = gd.decide(inputs(0.0, soc=0.29), p, gd.initial_state(p))
    assert [(e.genset_id, e.action, e.reason) for e in d.events] == [("g1", "start", Reason.GENSET_START_LOW_SOC)]
    assert d.output_w["g1"] == 0.0 and d.phases["g1"] is gd.Phase.STARTING
    # start delay, then warm-up without load, then it carries load
    ds, s = run(p, s, 10.0, 70.0, soc=0.29)
    assert all(x.output_w["g1"] == 0.0 for x in ds) and ds[-1].phases["g1"] is gd.Phase.WARMUP
    ds, s = run(p, s, 70.0, 90.0, soc=0.29)
    assert ds[-1].phases["g1"] is gd.Phase.RUNNING and ds[-1].output_w["g1"] > 0
    assert s.units[0].starts == 1


def test_a_soc_between_the_thresholds_changes_nothing_hysteresis() -> None:
    p = params()
    d, s = gd.decide(inputs(0.0, soc=0.5), p, gd.initial_state(p))
    assert d.events == () and not s.recharge
    _, s = gd.decide(inputs(10.0, soc=0.3), p, s)
    ds, s = run(p, s, 20.0, 4000.0, soc=0.6)  # recovering, still under stop_soc: keeps running
    assert all(x.events == () for x in ds) and ds[-1].phases["g1"] is gd.Phase.RUNNING


def test_GENSET_CHARGING() -> None:
    p = params()
    _, s = run(p, gd.initial_state(p), 0.0, 100.0, soc=0.25, demand_w=0.4 * MW)
    d, s = gd.decide(inputs(100.0, 0.25, demand_w=0.4 * MW), p, s)
    # the load is 0.4 MW; the genset runs at its efficient 75 % and the rest charges the battery
    assert d.output_w["g1"] == pytest.approx(0.75 * 1.5 * MW)
    assert d.reason is Reason.GENSET_CHARGING


def test_a_genset_gives_no_more_than_the_load_and_the_battery_can_take() -> None:
    p = params()
    _, s = run(p, gd.initial_state(p), 0.0, 100.0, soc=0.25, demand_w=0.2 * MW)
    d, s = gd.decide(inputs(100.0, 0.25, demand_w=0.2 * MW, charge_w=0.3 * MW), p, s)
    assert d.output_w["g1"] == pytest.approx(0.5 * MW)
    d, s = gd.decide(inputs(110.0, 0.25, demand_w=0.2 * MW, charge_w=0.0), p, s)
    assert d.output_w["g1"] == pytest.approx(0.2 * MW)  # under its minimum: counted as wet stacking
    assert s.units[0].below_min_load_s == pytest.approx(10.0)


def test_GENSET_MIN_RUN_HOLD() -> None:
    p = params(spec(min_run_s=1800.0))
    _, s = run(p, gd.initial_state(p), 0.0, 100.0, soc=0.25)
    d, s = gd.decide(inputs(100.0, soc=0.85), p, s)  # recovered after 30 s of running
    assert d.events == () and d.held == ("g1",) and d.phases["g1"] is gd.Phase.RUNNING
    assert d.reason is Reason.GENSET_MIN_RUN_HOLD


def test_GENSET_STOP_SOC_RECOVERED() -> None:
    p = params(spec(min_run_s=600.0))
    _, s = run(p, gd.initial_state(p), 0.0, 100.0, soc=0.25)
    _, s = run(p, s, 100.0, 700.0, soc=0.85)
    assert s.units[0].phase is gd.Phase.COOLDOWN
    # its stop was for the recovered SoC; cool-down then off
    p2 = params(spec(min_run_s=0.0))
    _, s2 = run(p2, gd.initial_state(p2), 0.0, 100.0, soc=0.25)
    d, s2 = gd.decide(inputs(100.0, soc=0.85), p2, s2)
    assert [(e.action, e.reason) for e in d.events] == [("stop", Reason.GENSET_STOP_SOC_RECOVERED)]
    ds, s2 = run(p2, s2, 110.0, 500.0, soc=0.85)
    assert ds[-1].phases["g1"] is gd.Phase.OFF and ds[-1].output_w["g1"] == 0.0


def test_GENSET_START_LOAD() -> None:
    p = params(spec("g1"), spec("g2"))
    # 3 MW of load, a battery that can give 2 MW, SoC fine: the first genset is staged in
    d, s = gd.decide(inputs(0.0, soc=0.6, demand_w=3 * MW, discharge_w=2 * MW), p, gd.initial_state(p))
    assert [(e.genset_id, e.reason) for e in d.events] == [("g1", Reason.GENSET_START_LOAD)]
    # 4.5 MW: the second too
    d, s = gd.decide(inputs(10.0, soc=0.6, demand_w=4.5 * MW, discharge_w=2 * MW), p, s)
    assert [(e.genset_id, e.reason) for e in d.events] == [("g2", Reason.GENSET_START_LOAD)]


def test_GENSET_STOP_LOAD_FELL() -> None:
    p = params(spec("g1", min_run_s=0.0), spec("g2", min_run_s=0.0))
    _, s = run(p, gd.initial_state(p), 0.0, 200.0, soc=0.6, demand_w=4.5 * MW, discharge_w=2 * MW)
    assert [u.phase for u in s.units] == [gd.Phase.RUNNING, gd.Phase.RUNNING]
    # the load falls to 2.5 MW: one genset (1.5 MW at 70 %) and the battery carry it, the last in stops
    d, s = gd.decide(inputs(200.0, soc=0.6, demand_w=2.5 * MW, discharge_w=2 * MW), p, s)
    assert [(e.genset_id, e.action, e.reason) for e in d.events] == [("g2", "stop", Reason.GENSET_STOP_LOAD_FELL)]


def test_the_genset_with_fewest_hours_starts_first() -> None:
    p = params(spec("g1"), spec("g2"))
    worn = gd.DispatchState((gd.GensetUnitState(run_s=5000.0), gd.GensetUnitState(run_s=100.0)))
    d, _ = gd.decide(inputs(0.0, soc=0.2), p, worn)
    assert [e.genset_id for e in d.events] == ["g2"]


def test_fuel_and_hours_accumulate_from_the_curve() -> None:
    p = params(spec(start_delay_s=0.0, warmup_s=0.0, min_run_s=1e9))
    s = gd.initial_state(p)
    _, s = gd.decide(inputs(0.0, soc=0.2, demand_w=1.125 * MW, charge_w=0.0, period_s=3600.0), p, s)
    _, s = gd.decide(inputs(3600.0, soc=0.2, demand_w=1.125 * MW, charge_w=0.0, period_s=3600.0), p, s)
    litres, hours, starts = gd.fleet_totals(s)
    # the first hour starting (0 % load), the second at 75 %
    assert litres == pytest.approx(30.0 + 294.6) and hours == pytest.approx(2.0) and starts == 1


# --- the period step: the balance ------------------------------------------------------------
LIMITS = BatteryLimitsParams(0.1, 0.95)


def offgrid(*gensets: gd.GensetSpec, mode: Mode = Mode.OFF_GRID, import_limit_w: float = 0.0) -> StepParams:
    return StepParams(limits=LIMITS, envelope=EnvelopeParams(0.1, 0.95),
                      grid=GridLimitsParams(import_limit_w or None, 0.0),
                      microgrid=MicrogridParams(mode, gd.DispatchParams(gensets), import_limit_w))


def test_MICROGRID_BALANCE() -> None:
    # off-grid, no genset running: the battery carries the whole load (the "meter" reads what is
    # left for other sources: the load less the battery's output)
    r = step(snapshot(600e3, (unit("u1", soc=0.6), unit("u2", soc=0.6))), offgrid(spec()), StepState())
    assert r.reason is Reason.MICROGRID_BALANCE and r.setpoint_w == pytest.approx(600e3)
    assert r.microgrid is not None and r.microgrid.dispatch.events == ()


def test_UNSERVED_LOAD() -> None:
    # 1.5 MW of load, two 500 kW units, no genset: 500 kW cannot be served
    r = step(snapshot(1.5 * MW, (unit("u1", soc=0.6), unit("u2", soc=0.6))), offgrid(), StepState())
    assert r.reason is Reason.UNSERVED_LOAD and r.setpoint_w == pytest.approx(1 * MW)


def test_PV_CURTAILED() -> None:
    # PV gives 400 kW more than the load; the battery is full: nowhere to put it
    full = (unit("u1", soc=0.95), unit("u2", soc=0.95))
    r = step(snapshot(-400e3, full), offgrid(), StepState())
    assert r.reason is Reason.PV_CURTAILED and r.setpoint_w == pytest.approx(0.0)
    # with room in the battery it charges instead
    r = step(snapshot(-400e3, (unit("u1", soc=0.6), unit("u2", soc=0.6))), offgrid(), StepState())
    assert r.reason is Reason.MICROGRID_BALANCE and r.setpoint_w == pytest.approx(-400e3)


def test_on_a_weak_grid_the_grid_gives_its_limit_and_the_battery_the_rest() -> None:
    p = offgrid(mode=Mode.WEAK_GRID, import_limit_w=300e3)
    units = (unit("u1", soc=0.6), unit("u2", soc=0.6))
    r = step(snapshot(900e3, units), p, StepState())
    assert r.setpoint_w == pytest.approx(600e3)
    # under the limit the battery charges with the grid's spare room
    r = step(snapshot(100e3, units), p, StepState())
    assert r.setpoint_w == pytest.approx(-200e3)


def test_on_a_weak_grid_a_genset_runs_in_parallel_for_what_battery_and_import_cannot_give() -> None:
    # 2 MW of load, 300 kW of import, a battery that can give 1 MW: a genset is staged in for power,
    # and once running carries what the grid and the battery do not; the import stays at its limit
    p = offgrid(spec(rated_w=1.5 * MW, start_delay_s=0.0, warmup_s=0.0), mode=Mode.WEAK_GRID,
                import_limit_w=300e3)
    units = (unit("u1", soc=0.6), unit("u2", soc=0.6))
    r = step(snapshot(2 * MW, units, now_s=0.0), p, StepState())
    assert r.microgrid is not None
    assert [e.reason for e in r.microgrid.dispatch.events] == [Reason.GENSET_START_LOAD]
    assert r.setpoint_w == pytest.approx(1 * MW)  # meanwhile the battery gives all it can: 700 kW short
    assert r.reason is Reason.UNSERVED_LOAD
    r = step(snapshot(2 * MW, units, now_s=1.0), p, r.state)  # the meter: the load less battery and genset (both 0 W)
    assert r.microgrid is not None and r.microgrid.dispatch.total_w >= 700e3
    # the grid's import after the battery and the genset: at its limit, not beyond
    grid_w = r.microgrid.demand_w - r.microgrid.dispatch.total_w - r.setpoint_w  # type: ignore[operator]
    assert grid_w == pytest.approx(300e3)
    assert r.reason in (Reason.MICROGRID_BALANCE, Reason.GENSET_CHARGING)


def test_a_running_genset_carries_its_part_and_the_battery_takes_the_surplus() -> None:
    p = offgrid(spec(rated_w=1 * MW, start_delay_s=0.0, warmup_s=0.0))
    low = (unit("u1", soc=0.2), unit("u2", soc=0.2))
    state = StepState()
    r = step(snapshot(300e3, low, now_s=0.0), p, state)
    assert [e.reason for e in r.microgrid.dispatch.events] == [Reason.GENSET_START_LOW_SOC]  # type: ignore[union-attr]
    r = step(snapshot(300e3, low, now_s=1.0), p, r.state)
    # running at 75 % of 1 MW: 300 kW to the load, 450 kW into the battery
    assert r.reason is Reason.GENSET_CHARGING and r.setpoint_w == pytest.approx(-450e3)
    # the next period's meter reads the load less battery and genset: the balance holds
    snap = snapshot(300e3 - (-450e3) - 750e3, tuple(replace(u, pcs=replace(u.pcs, power_w=-225e3))  # type: ignore[arg-type]
                                                     for u in low), now_s=2.0)
    r = step(snap, p, r.state)
    assert r.microgrid is not None and r.microgrid.demand_w == pytest.approx(300e3)
    assert r.setpoint_w == pytest.approx(-450e3)


def test_grid_connected_sites_run_as_before() -> None:
    base = StepParams(limits=LIMITS, envelope=EnvelopeParams(0.1, 0.95))
    r = step(snapshot(600e3), base, StepState())
    assert r.microgrid is None and r.reason is Reason.IDLE


# --- live KPIs: the status section and /metrics, read from the period result ------------------
def test_the_status_and_metrics_report_diesel_co2_hours_starts_and_energy() -> None:
    from prometheus_client.core import CollectorRegistry
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import Collector

    from ems.microgrid_kpis import microgrid_metrics, microgrid_status

    p = offgrid(spec(rated_w=1 * MW, start_delay_s=0.0, warmup_s=0.0))
    low = (unit("u1", soc=0.28), unit("u2", soc=0.28))  # 360 kWh above soc_min: an hour of the load
    r = step(snapshot(300e3, low, now_s=0.0, period_s=3600.0), p, StepState())
    r = step(snapshot(300e3, low, now_s=3600.0, period_s=3600.0), p, r.state)
    status = microgrid_status(r)
    assert status is not None and status["mode"] == "off_grid" and status["genset_starts"] == 1
    assert status["recharging"] and status["events"] == []  # its start was the period before
    assert status["gensets"]["g1"] == {"phase": "running", "power_w": 750e3}
    # an hour idling (starting), an hour at 75 % of a 1 MW unit (the default curve, scaled)
    litres = (30.0 + 294.6) / 1.5
    assert status["diesel_l"] == pytest.approx(litres, abs=0.01)
    assert status["co2_kg"] == pytest.approx(2.68 * litres, abs=0.1) and status["genset_hours"] == pytest.approx(2.0)
    assert status["served_kwh"] == pytest.approx(600.0) and status["unserved_kwh"] == 0.0
    assert status["pue"] is None  # no facility overhead configured
    with_overhead = replace(p, microgrid=replace(p.microgrid, facility_overhead_w=200e3))  # type: ignore[type-var]
    r2 = step(snapshot(300e3, low, now_s=0.0, period_s=3600.0), with_overhead, StepState())
    assert microgrid_status(r2, racks_w=800e3)["pue"] == pytest.approx(1.25)  # type: ignore[index]

    class Step(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return microgrid_metrics(r)

    reg = CollectorRegistry()
    reg.register(Step())
    text = generate_latest(reg).decode()
    assert "ems_diesel_litres_total 216.4" in text and "ems_genset_starts_total 1.0" in text
    assert 'ems_genset_power_watts{genset="g1"} 750000.0' in text
    # a grid-connected site has no such section
    assert microgrid_status(step(snapshot(0.0), StepParams(limits=LIMITS, envelope=EnvelopeParams(0.1, 0.95)),
                                 StepState())) is None


def test_without_a_trusted_meter_there_is_no_balance_and_gensets_keep_to_soc() -> None:
    p = offgrid(spec())
    low = (unit("u1", soc=0.2), unit("u2", soc=0.2))
    r = step(snapshot(600e3, low), p, StepState())
    r = step(snapshot(None, low, now_s=1.0), p, r.state)
    assert "microgrid" not in {d.policy for d in r.decisions} and r.setpoint_w == 0.0
    assert r.microgrid is not None and r.microgrid.battery_target_w is None
    assert r.microgrid.dispatch.phases["g1"] is gd.Phase.STARTING  # the SoC latch still holds it on


def test_while_recharging_a_second_genset_stops_only_well_below_the_load_that_started_it() -> None:
    p = params(spec("g1", min_run_s=0.0), spec("g2", min_run_s=0.0))
    # recharging: 1.3 MW is more than one 1.5 MW unit gives at its efficient 75 % (1.125 MW): both run
    _, s = run(p, gd.initial_state(p), 0.0, 200.0, soc=0.25, demand_w=1.3 * MW)
    assert [u.phase for u in s.units] == [gd.Phase.RUNNING, gd.Phase.RUNNING]
    ds, s = run(p, s, 200.0, 400.0, soc=0.25, demand_w=1.0 * MW)  # under the start point: both keep running
    assert all(d.events == () for d in ds)
    d, s = gd.decide(inputs(400.0, soc=0.25, demand_w=0.7 * MW), p, s)  # under 70 % of it: the last in stops
    assert [(e.genset_id, e.action, e.reason) for e in d.events] == [("g2", "stop", Reason.GENSET_STOP_LOAD_FELL)]


def test_a_genset_that_fails_to_start_is_out_and_the_next_one_starts_at_once() -> None:
    p = params(spec("g1"), spec("g2"))
    d, s = gd.decide(inputs(0.0, soc=0.2), p, gd.initial_state(p))
    assert [e.genset_id for e in d.events] == ["g1"]
    d, s = gd.decide(replace(inputs(20.0, soc=0.2), failed=frozenset({"g1"})), p, s)
    assert [(e.genset_id, e.action, e.reason) for e in d.events] == [
        ("g1", "failed", Reason.GENSET_START_FAILED), ("g2", "start", Reason.GENSET_START_LOW_SOC)]
    # while it reports the failure it is not tried again, whatever the need
    d, s = gd.decide(replace(inputs(30.0, soc=0.2, demand_w=5 * MW), failed=frozenset({"g1"})), p, s)
    assert d.phases["g1"] is gd.Phase.OFF and all(e.genset_id != "g1" for e in d.events)


def test_the_site_genset_device_reporting_a_failed_start_is_the_first_of_the_list() -> None:
    from ems.model.readings import GensetReading, GensetState

    p = offgrid(spec("g1"), spec("g2"))
    low = (unit("u1", soc=0.2), unit("u2", soc=0.2))
    r = step(snapshot(300e3, low), p, StepState())
    failed = GensetReading(GensetState.FAILED, 0.0, 1.5 * MW, 0.0, 0.0, 0.0, 1, 20.0)
    snap = replace(snapshot(300e3, low, now_s=20.0), genset=failed)
    r = step(snap, p, r.state)
    assert r.microgrid is not None
    assert [(e.genset_id, e.reason) for e in r.microgrid.dispatch.events] == [
        ("g1", Reason.GENSET_START_FAILED), ("g2", Reason.GENSET_START_LOW_SOC)]


def test_a_genset_device_still_stopped_after_its_start_delay_is_out_until_it_reports_otherwise() -> None:
    # it took the start command and did nothing (or stopped by itself without saying failed):
    # believed running, it would carry the island on paper only
    from ems.model.readings import GensetReading, GensetState

    p = offgrid(spec("g1"), spec("g2"))
    low = (unit("u1", soc=0.2), unit("u2", soc=0.2))
    stopped = GensetReading(GensetState.STOPPED, 0.0, 1.5 * MW, 0.0, 0.0, 0.0, 0, 0.0)
    r = step(replace(snapshot(300e3, low), genset=stopped), p, StepState())
    assert r.microgrid is not None and [e.genset_id for e in r.microgrid.dispatch.events] == ["g1"]
    r = step(replace(snapshot(300e3, low, now_s=5.0), genset=stopped), p, r.state)  # starting: not yet
    assert r.microgrid is not None and r.microgrid.dispatch.events == ()
    r = step(replace(snapshot(300e3, low, now_s=12.0), genset=stopped), p, r.state)  # past 10 s: warm-up
    r = step(replace(snapshot(300e3, low, now_s=14.0), genset=stopped), p, r.state)
    assert r.microgrid is not None
    assert [(e.genset_id, e.reason) for e in r.microgrid.dispatch.events] == [
        ("g1", Reason.GENSET_START_FAILED), ("g2", Reason.GENSET_START_LOW_SOC)]
    r = step(replace(snapshot(300e3, low, now_s=30.0), genset=stopped), p, r.state)  # not tried again
    assert r.microgrid is not None and r.microgrid.dispatch.phases["g1"] is gd.Phase.OFF
    assert r.microgrid.dispatch.events == ()
    starting = replace(stopped, state=GensetState.STARTING)  # started at its panel: back in service
    r = step(replace(snapshot(300e3, low, now_s=40.0), genset=starting), p, r.state)
    assert r.state.microgrid.silent == frozenset()


def test_the_site_genset_device_s_measured_power_is_part_of_the_demand() -> None:
    # live, the genset follows the island's load: what it gives is read off it, not assumed.
    # The open PCC's meter reads 0 W, the battery gives 200 kW, the genset 400 kW: 600 kW of demand
    from ems.model.readings import GensetReading, GensetState

    p = offgrid(spec("g1"), spec("g2"))
    genset = GensetReading(GensetState.RUNNING, 400e3, 1.5 * MW, 0.0, 0.0, 0.0, 1, 0.0)
    units = (unit("u1", soc=0.6, power_w=100e3), unit("u2", soc=0.6, power_w=100e3))
    r = step(replace(snapshot(0.0, units), genset=genset), p, StepState())
    assert r.microgrid is not None and r.microgrid.demand_w == pytest.approx(600e3)
    # without a reading, the dispatch's own figure of the period before (nothing yet)
    r = step(snapshot(0.0, units), p, StepState())
    assert r.microgrid is not None and r.microgrid.demand_w == pytest.approx(200e3)


# --- several genset devices live: each by its dispatch id -------------------------------------
def _reading(state: str, power_w: float = 0.0) -> object:
    from ems.model.readings import GensetReading, GensetState

    return GensetReading(GensetState(state), power_w, 1.5 * MW, 0.0, 0.0, 0.0, 1, 0.0)


def test_GENSET_TRIPPED() -> None:
    # g1 runs and trips (its device reports `failed`): out of service, g2 staged in at once
    p = offgrid(spec("g1", start_delay_s=0.0, warmup_s=0.0), spec("g2"))
    low = (unit("u1", soc=0.2), unit("u2", soc=0.2))
    r = step(snapshot(300e3, low), p, StepState())
    r = step(snapshot(300e3, low, now_s=1.0), p, r.state)
    assert r.microgrid is not None and r.microgrid.dispatch.phases["g1"] is gd.Phase.RUNNING
    snap = replace(snapshot(300e3, low, now_s=2.0), gensets={"g1": _reading("failed"), "g2": _reading("stopped")})
    r = step(snap, p, r.state)  # type: ignore[arg-type]
    assert [(e.genset_id, e.action, e.reason) for e in r.microgrid.dispatch.events] == [  # type: ignore[union-attr]
        ("g1", "failed", Reason.GENSET_TRIPPED), ("g2", "start", Reason.GENSET_START_LOW_SOC)]
    # a start that fails (it never ran: still in its start delay) keeps its own reason
    p = offgrid(spec("g1"), spec("g2"))
    r = step(snapshot(300e3, low), p, StepState())
    snap = replace(snapshot(300e3, low, now_s=5.0), gensets={"g1": _reading("failed")})
    r = step(snap, p, r.state)  # type: ignore[arg-type]
    assert r.microgrid is not None and r.microgrid.dispatch.events[0].reason is Reason.GENSET_START_FAILED


def test_every_genset_device_s_measured_power_is_part_of_the_demand() -> None:
    # two gensets share the island's load: 300 + 200 kW measured, the battery 100 kW: 600 kW
    p = offgrid(spec("g1"), spec("g2"))
    units = (unit("u1", soc=0.6, power_w=50e3), unit("u2", soc=0.6, power_w=50e3))
    snap = replace(snapshot(0.0, units), gensets={"g1": _reading("running", 300e3), "g2": _reading("running", 200e3)})
    r = step(snap, p, StepState())  # type: ignore[arg-type]
    assert r.microgrid is not None and r.microgrid.demand_w == pytest.approx(600e3)
