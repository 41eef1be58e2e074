"""The period step (ems/period.py): the ordered constraints, the plan's cap, the reserve and
the envelope, as the live loop and the backtest both run them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ems.envelope import EnvelopeParams
from ems.model.plan import PlanView
from ems.model.reasons import Reason
from ems.period import StepParams, StepState, step
from policies.arbitrage import ArbitrageParams
from policies.battery_limits import BatteryLimitsParams
from policies.grid_limits import GridLimitsParams
from policies.operator_force import ForceParams
from policies.peak_shaving import PeakShavingParams
from policies.reserve import ReserveParams
from tests.snapshots import snapshot, unit

ETA = 0.95
ARB = ArbitrageParams(max_plan_age_s=7200.0, charge_efficiency=ETA, discharge_efficiency=ETA)
BASE = StepParams(limits=BatteryLimitsParams(0.1, 0.95), envelope=EnvelopeParams(0.1, 0.95))
STACK = replace(BASE, peak=PeakShavingParams(2_000_000, 800_000), arbitrage=ARB)


def plan(soc=(0.5, 0.6, 0.6, 0.4), cap_w=1_000_000.0, grid_w=None) -> PlanView:
    n = len(soc) - 1
    return PlanView(made_at_s=0.0, start_s=0.0, step_s=900.0, soc=tuple(soc), battery_w=(0.0,) * n,
                    grid_w=grid_w or (cap_w,) * n, import_cap_w=(cap_w,) * n, expected_savings=10.0)


def snap(soc: float, grid_w: float | None = 0.0, now_s: float = 0.0, **unit_kw):
    return snapshot(grid_w, (unit("u1", soc=soc, **unit_kw), unit("u2", soc=soc, **unit_kw)), now_s=now_s)


def policies(result) -> dict[str, Reason]:
    return {d.policy: d.reason for d in result.decisions}


def test_the_setpoint_returned_is_what_the_units_are_given() -> None:
    r = step(snap(0.5, grid_w=2_300_000), STACK, StepState())
    assert r.reason is Reason.PEAK_SHAVING_ACTIVE and r.setpoint_w == pytest.approx(300_000)
    assert r.setpoint_w == sum(r.unit_setpoints_w.values()) and set(r.unit_setpoints_w) == {"u1", "u2"}


def test_reserve_outranks_peak_shaving() -> None:
    p = replace(BASE, peak=PeakShavingParams(1_000_000, 800_000), reserve=ReserveParams(0.2))
    r = step(snap(0.2, grid_w=1_300_000), p, StepState())
    assert r.setpoint_w == 0.0 and "peak_shaving" in r.arbitration.overruled
    assert r.reason is Reason.CAP_UNREACHABLE and r.reserve_soc == 0.2


def test_a_fresh_plan_puts_its_cap_in_place_of_the_configured_one() -> None:
    for configured in (900_000.0, 2_000_000.0):  # lower or higher: the plan knows the energy it takes
        p = replace(STACK, peak=PeakShavingParams(configured, 800_000))
        r = step(snap(0.5, grid_w=900_000, now_s=900.0), p, StepState(), plan())
        assert r.cap_w == 1_000_000.0
        assert "peak_shaving" not in policies(r) and policies(r)["plan_cap"] is Reason.PLAN_CAP


def test_PLAN_CAP() -> None:
    # the plan holds 0.6 in step 1: nothing to do but keep the import under the plan's cap
    r = step(snap(0.6, grid_w=900_000, now_s=900.0), STACK, StepState(), plan())
    assert policies(r)["plan_cap"] is Reason.PLAN_CAP and r.setpoint_w == 0.0
    cap = next(d for d in r.decisions if d.policy == "plan_cap")
    assert cap.min_w == pytest.approx(-100_000)  # charging allowed up to the cap


def test_a_stale_plan_falls_back_to_configured_peak_shaving() -> None:
    r = step(snap(0.5, grid_w=300_000), STACK, StepState())
    assert r.reason is Reason.PEAK_SHAVING_RECHARGE and r.setpoint_w == pytest.approx(-500_000)
    assert r.cap_w == 2_000_000 and policies(r)["arbitrage"] is Reason.PLAN_STALE


def test_a_plan_charge_never_sets_a_new_peak() -> None:
    # a plan that expected to import more than its cap allows (its load forecast was higher)
    r = step(snap(0.5, grid_w=900_000), STACK, StepState(), plan(grid_w=(1.5e6,) * 3))
    # arbitrage wants ~842 kW of charge; only 100 kW fit under the planned peak
    assert r.setpoint_w == pytest.approx(-100_000) and r.reason is Reason.PLAN_CAP


def test_the_plan_cap_overrides_a_plan_that_wants_to_charge() -> None:
    r = step(snap(0.5, grid_w=1_200_000), STACK, StepState(), plan())
    assert r.setpoint_w == pytest.approx(200_000) and r.reason is Reason.PEAK_SHAVING_ACTIVE


def test_while_pv_exports_the_plans_charge_is_not_cut_to_a_recharge_target() -> None:
    # the site exports 100 kW; the plan charges ~842 kW. Peak shaving's own recharge target
    # (its threshold minus the load) used to win and charge only 100 kW.
    r = step(snap(0.5, grid_w=-100_000), STACK, StepState(), plan())
    assert r.reason is Reason.ARBITRAGE_CHARGE
    assert r.setpoint_w == pytest.approx(-(0.1 * 2e6 / ETA) / 0.25)


def test_below_the_reserve_the_battery_charges_back_within_the_cap() -> None:
    p = replace(BASE, peak=PeakShavingParams(1_000_000, 800_000), reserve=ReserveParams(0.3, recovery_s=3600.0))
    r = step(snap(0.15, grid_w=500_000), p, StepState())
    assert r.reason is Reason.RESERVE_RECOVERY
    assert r.setpoint_w == pytest.approx(-0.15 * 2e6 / 0.96)  # 15 % of 2 MWh within the hour
    r = step(snap(0.15, grid_w=900_000), p, StepState())  # only 100 kW of room under the cap
    assert r.setpoint_w == pytest.approx(-100_000) and r.reason is Reason.PEAK_SHAVING_STANDBY


def test_an_operator_force_stands_in_for_the_cap_and_arbitrage_and_is_clamped_to_what_units_can() -> None:
    r = step(snap(0.5, grid_w=0.0), STACK, StepState(), plan(), ForceParams(5e6))
    assert set(policies(r)) == {"battery_limits", "operator_force", "idle"}
    assert r.setpoint_w == pytest.approx(1e6) and r.reason is Reason.UNIT_POWER_LIMIT  # 2 x 500 kW
    assert "operator_force" in r.arbitration.overruled


def test_a_unit_ramp_limit_is_split_within_not_clipped_after() -> None:
    p = replace(STACK, envelope=EnvelopeParams(0.1, 0.95, unit_ramp_w_per_s=100e3))
    s = snapshot(2_200_000, (unit("u1", soc=0.5, power_w=0.0), unit("u2", soc=0.5, power_w=300_000)))
    r = step(s, p, StepState())
    # 500 kW asked: u1 may go to 100 kW, u2 to 400 kW; the dispatcher knew, so nothing is clamped
    assert r.unit_setpoints_w == pytest.approx({"u1": 100_000, "u2": 400_000})
    assert r.clamped == () and r.reason is Reason.PEAK_SHAVING_ACTIVE
    r = step(s, p, StepState(), force=ForceParams(900_000))
    assert r.setpoint_w == pytest.approx(500_000) and r.reason is Reason.RAMP_LIMIT


def test_without_a_meter_the_plan_cap_takes_the_safe_action() -> None:
    r = step(snap(0.5, grid_w=None, now_s=10.0), STACK, StepState(), plan())
    assert policies(r)["plan_cap"] is Reason.STALE_METER and r.setpoint_w == 0.0


GRID = replace(STACK, grid=GridLimitsParams(import_limit_w=2_500_000.0, export_limit_w=0.0))


def test_EXPORT_LIMIT() -> None:
    # the site draws 100 kW: a plan that wants to discharge 1 MW may give it 100 kW, not export
    r = step(snap(0.6, grid_w=100_000, now_s=1800.0), GRID, StepState(), plan())
    assert r.reason is Reason.EXPORT_LIMIT and r.setpoint_w == pytest.approx(100_000)
    # PV exports 200 kW: with no export allowed the battery absorbs it, even with no plan
    r = step(snap(0.5, grid_w=-200_000), replace(GRID, peak=None, arbitrage=None), StepState())
    assert r.reason is Reason.EXPORT_LIMIT and r.setpoint_w == pytest.approx(-200_000)


def test_IMPORT_LIMIT() -> None:
    # the load is 2.7 MW on a 2.5 MW connection and peak shaving's cap (2 MW) stands down
    # for a fresh plan whose cap is 3 MW: the import limit still discharges the excess
    r = step(snap(0.5, grid_w=2_700_000), GRID, StepState(), plan(cap_w=3_000_000.0))
    assert r.reason is Reason.IMPORT_LIMIT and r.setpoint_w == pytest.approx(200_000)
    # a plan charge is cut where it would import past the rating
    r = step(snap(0.5, grid_w=2_400_000), GRID, StepState(), plan(cap_w=3_000_000.0, grid_w=(3e6,) * 3))
    assert r.setpoint_w == pytest.approx(-100_000) and r.reason is Reason.IMPORT_LIMIT


def test_without_a_meter_the_export_limit_allows_no_more_than_the_held_setpoint() -> None:
    s = replace(snap(0.5, grid_w=None, now_s=10.0), last_setpoint_w=300_000, meter_invalid_since_s=5.0)
    p = replace(GRID, meter_invalid_hold_s=30.0, grid=replace(GRID.grid, meter_invalid_hold_s=30.0))
    r = step(s, p, StepState(), force=ForceParams(900_000))
    assert r.setpoint_w == pytest.approx(300_000)  # held; the operator's 900 kW could export
    r = step(replace(s, now_s=60.0), p, StepState(), force=ForceParams(900_000))
    assert r.setpoint_w == 0.0  # the hold is over: no discharge on an unknown load


def test_a_forced_setpoint_the_site_cannot_deliver_says_what_held_it() -> None:
    from ems.demand import DemandMeter
    from ems.status import site_status
    from ems.validity import ValidityParams, ValidityTracker

    s = snap(0.5, grid_w=100_000)
    r = step(s, GRID, StepState(), force=ForceParams(900_000))
    status = site_status("s", 1, s, r, duration_s=0.0, lateness_s=0.0, overruns=0, devices_down=[],
                         status_failures=0, plan=None, failover=None, demand=DemandMeter(),
                         validity=ValidityTracker(ValidityParams(1e9, 0.0, 1.0)), periods_clamped=0,
                         forced_w=900_000.0)
    assert status["forced"] == {"asked_w": 900_000.0, "written_w": 100_000.0, "held_by": "EXPORT_LIMIT"}
    assert status["battery_setpoint_w"] == 100_000.0  # what the units were given, never the wish


def test_RIDE_THROUGH() -> None:
    """While a dip is ridden through the battery holds what it had: the grid sees no step,
    although peak shaving would discharge more, and the reserve would have it recharge."""
    s = replace(snapshot(2_300_000, (unit("u1", soc=0.5), unit("u2", soc=0.5)), last_setpoint_w=100_000),
                riding_through="voltage")
    r = step(s, STACK, StepState())
    assert r.reason is Reason.RIDE_THROUGH and r.setpoint_w == pytest.approx(100_000)
    assert "peak_shaving" in r.arbitration.overruled
    low = replace(s, units=(unit("u1", soc=0.15), unit("u2", soc=0.15)), last_setpoint_w=0.0)
    r = step(low, replace(STACK, reserve=ReserveParams(0.3)), StepState())  # no recharge to the reserve yet
    assert r.reason is Reason.RIDE_THROUGH and r.setpoint_w == 0.0
    assert step(replace(s, riding_through=None), STACK, StepState()).setpoint_w == pytest.approx(300_000)


def test_a_periods_policies_act_on_the_meters_average_and_the_limits_on_the_instant() -> None:
    """A swing sampled at its crest reads 2.3 MW; its average over the period is 1.9 MW, under
    the 2 MW cap: nothing to shave. The export limit still holds the instant."""
    s = snap(0.5, grid_w=2_300_000)
    avg = replace(s, meter=replace(s.meter, average_w=1_900_000), battery_avg_w=0.0)
    assert step(s, STACK, StepState()).setpoint_w == pytest.approx(300_000)
    # without the battery's average over the same window the sum would mix two times: the instant stands
    assert step(replace(avg, battery_avg_w=None), STACK, StepState()).setpoint_w == pytest.approx(300_000)
    r = step(avg, STACK, StepState())
    assert r.reason is not Reason.PEAK_SHAVING_ACTIVE and r.setpoint_w <= 0.0
    # the average asks for 300 kW of shaving; at this instant the site imports 50 kW only
    low = replace(s, meter=replace(s.meter, grid_power_w=50_000, average_w=2_300_000), battery_avg_w=0.0)
    assert step(low, STACK, StepState()).setpoint_w == pytest.approx(300_000)
    r = step(low, replace(STACK, grid=GridLimitsParams(export_limit_w=0.0)), StepState())
    assert r.setpoint_w == pytest.approx(50_000)  # no export now, whatever the average says
