"""Demand response in the period step: the battery first, then GPU racks by flex tier."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ems.config import parse_config
from ems.envelope import EnvelopeParams
from ems.fast_sim import simulate
from ems.model.dr import DrEvent
from ems.model.errors import ConfigError
from ems.model.racks import RacksReading
from ems.model.reasons import Reason
from ems.period import StepParams, StepState, step
from plant.config import PlantConfig
from policies import demand_response as dr
from policies.battery_limits import BatteryLimitsParams
from tests.snapshots import snapshot, unit

T0 = 1e9  # tests/snapshots.py's wall clock at now_s = 0
ROWS = ("row01", "row02", "row03", "row04")
PARAMS = dr.DrParams({"row01": 1, "row02": 2, "row03": 3, "row04": 4}, 0, frozenset(), precharge_s=600.0,
                     shortfall_tau_s=0.0)


def racks(power_w: float = 30e3, rows: tuple[str, ...] = ROWS, per_row: int = 2) -> RacksReading:
    ids = tuple(f"{r}-rack{k + 1:02d}" for r in rows for k in range(per_row))
    n = len(ids)
    return RacksReading(ids, tuple(i.split("-")[0] for i in ids), np.full(n, power_w), np.full(n, np.nan),
                        np.full(n, 40e3), np.zeros(n), 5.0)


def step_params(p: dr.DrParams = PARAMS) -> StepParams:
    return StepParams(BatteryLimitsParams(0.1, 0.95), EnvelopeParams(0.1, 0.95), dr=p)


def snap(grid_w: float, now_s: float = 0.0, soc: float = 0.5, max_discharge_w: float = 500e3,
         r: RacksReading | None = None):
    units = (unit("u1", soc=soc, max_discharge_w=max_discharge_w), unit("u2", soc=soc, max_discharge_w=max_discharge_w))
    return replace(snapshot(grid_w, units, now_s=now_s), racks=r or racks())


EVENT = DrEvent("e1", T0 + 100, T0 + 100 + 3600, target_import_w=1.0e6)


def test_DR_EVENT_ACTIVE() -> None:
    # 1.4 MW of load, a target of 1 MW: the battery takes the 400 kW and more (its room)
    res = step(snap(1.4e6, now_s=150), step_params(), StepState(), dr=EVENT)
    assert res.reason is Reason.DR_EVENT_ACTIVE
    assert res.setpoint_w >= 1.4e6 - 0.97e6 - 1.0
    assert res.dr is not None and res.dr.phase == "active" and res.dr.target_w == 1.0e6
    # no GPU cut while the battery alone holds it
    assert res.dr.gpu_reason is None and all(c is None for c in res.dr.caps_w.values())


def test_the_battery_spreads_its_energy_over_the_window() -> None:
    # 10 % of SoC above soc_min in 2 x 1 MWh = 200 kWh over the hour left: about 200 kW, not 1 MW
    res = step(snap(1.4e6, now_s=100, soc=0.2), step_params(), StepState(), dr=EVENT)
    assert res.dr is not None
    assert res.dr.battery_room_w == pytest.approx(0.95 * 200e3, rel=0.01)
    assert res.setpoint_w == pytest.approx(0.95 * 200e3, rel=0.01)
    # and no more than the load over the aim needs: what it does not give now is there later
    res = step(snap(1.1e6, now_s=100, soc=0.2), step_params(), StepState(), dr=EVENT)
    assert res.setpoint_w == pytest.approx(1.1e6 - 0.97e6, rel=0.01)


def test_DR_PRECHARGE() -> None:
    # 50 s before the window (within precharge_s): charge towards precharge_soc, within the units' limits
    res = step(snap(0.5e6, now_s=50), step_params(), StepState(), dr=EVENT)
    assert res.reason is Reason.DR_PRECHARGE and res.setpoint_w < 0
    # long before it: nothing
    early = replace(EVENT, start_s=T0 + 10_000, end_s=T0 + 20_000)
    res = step(snap(0.5e6, now_s=50), step_params(), StepState(), dr=early)
    assert res.reason is Reason.IDLE and res.setpoint_w == 0


def run_event(grid_over_w: float, p: dr.DrParams = PARAMS, periods: int = 40, r: RacksReading | None = None):
    """Periods of an event with the battery at its room and the grid `grid_over_w` over the target."""
    state, out = StepState(), []
    for k in range(periods):
        res = step(snap(1.0e6 + grid_over_w, now_s=100 + k, max_discharge_w=0.0, r=r), step_params(p), state,
                   dr=EVENT)
        state = res.state
        out.append(res)
    return out


def test_DR_GPU_THROTTLE() -> None:
    # the battery has no room: the grid's excess over the aim comes off the racks, tier 4 first
    last = run_event(60e3, periods=2)[-1]
    assert last.dr is not None and last.dr.gpu_reason is Reason.DR_GPU_THROTTLE
    caps = last.dr.caps_w
    assert all(caps[f"row04-rack0{k}"] is not None for k in (1, 2))
    assert all(caps[f"row01-rack0{k}"] is None for k in (1, 2))  # tier 1 is the last to give


def test_DR_TARGET_UNREACHABLE() -> None:
    # every row at tier 0 and no battery: nothing can give, the target cannot be reached
    p = replace(PARAMS, tier_of_row={})
    last = run_event(200e3, p=p, periods=3)[-1]
    assert last.reason is Reason.DR_TARGET_UNREACHABLE
    assert last.dr is not None and all(c is None for c in last.dr.caps_w.values())
    assert last.state.dr.tally is not None and last.state.dr.tally.unreachable_s > 0


def test_tiers_give_in_order_and_never_past_their_share() -> None:
    r = racks(30e3)
    peak = np.full(8, 30e3)
    # 8 racks at 30 kW: tier 4 may give 60 kW (2 racks), tier 3 30 kW, tier 2 15 kW, tier 1 6 kW
    caps, left = dr.allocate(r, peak, 70e3, PARAMS)
    assert caps["row04-rack01"] == 0.0 and caps["row03-rack01"] is not None and caps["row02-rack01"] is None
    caps, left = dr.allocate(r, peak, 1e9, PARAMS)
    assert left > 0
    share = {"row01": 0.10, "row02": 0.25, "row03": 0.50, "row04": 1.0}
    for rid, cap in caps.items():
        assert cap is not None and cap >= (1 - share[rid.split("-")[0]]) * 30e3 - 0.02 * 40e3


def test_critical_rows_give_last() -> None:
    p = replace(PARAMS, tier_of_row=dict.fromkeys(ROWS, 2), critical_rows=frozenset({"row01"}))
    caps, _ = dr.allocate(racks(30e3), np.full(8, 30e3), 3 * 2 * 7.5e3, p)  # all the non-critical rows' room
    assert caps["row01-rack01"] is None and caps["row02-rack01"] is not None
    caps, _ = dr.allocate(racks(30e3), np.full(8, 30e3), 3 * 2 * 7.5e3 + 1e3, p)
    assert caps["row01-rack01"] is not None


def test_an_event_that_ends_releases_the_caps_and_reports_its_figures() -> None:
    results = run_event(60e3, periods=20)
    state = results[-1].state
    res = step(snap(1.0e6, now_s=200), step_params(), state, dr=None)  # cancelled
    assert res.dr is not None and res.dr.finished is not None
    assert all(c is None for c in res.dr.caps_w.values())
    s = res.dr.finished.summary()
    assert s["event_id"] == "e1" and s["duration_s"] == pytest.approx(20.0)
    assert s["target_w"] == 1.0e6 and s["achieved_w"] == pytest.approx(1.06e6)


def test_a_reduction_is_from_the_sites_own_baseline() -> None:
    ev = DrEvent("e2", T0 + 100, T0 + 200, reduction_w=300e3, price_per_kwh=0.5)
    state = StepState()
    for k in range(0, 30):  # no event yet: the baseline learns the import
        state = step(snap(2.0e6, now_s=k), step_params(replace(PARAMS, precharge_s=0.0)), state, dr=ev).state
    res = step(snap(2.0e6, now_s=100), step_params(), state, dr=ev)
    assert res.dr is not None and res.dr.target_w == pytest.approx(1.7e6)


def test_an_event_needs_one_target() -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        DrEvent("x", 0, 10)
    with pytest.raises(ValueError, match="end after"):
        DrEvent("x", 10, 10, target_import_w=1.0)


def _site(tiers: dict[str, int]) -> dict[str, object]:
    return {"meter": {"port": 1, "profile": "meter_v1"},
            "bess_units": [{"id": "b1", "bms": {"port": 2, "profile": "bms_v1"},
                            "pcs": {"port": 3, "profile": "pcs_v1"}}],
            "racks": {"rows": 2, "racks_per_row": 2, "nameplate_w": 40e3},
            "policies": {"demand_response": {"flex_tiers": tiers}}}


def test_a_bad_flex_tier_names_the_field() -> None:
    with pytest.raises(ConfigError, match="flex_tiers"):
        parse_config(_site({"row09": 1}))
    with pytest.raises(ConfigError, match="flex_tiers"):
        parse_config(_site({"row01": 5}))
    assert parse_config(_site({"row01": 4})).policies.demand_response is not None


def test_the_simulated_site_holds_the_target_by_the_minute() -> None:
    """The fast simulator (the same step) on a training site: 25 % under the baseline for 5 minutes."""
    site = _site({"row01": 1, "row02": 4})
    # a meter that averages over a second, as real ones do: a swing sampled once a period aliases
    site["meter"] = {"port": 1, "profile": "meter_v1", "average_s": 1.0}
    site["racks"] = {"rows": 2, "racks_per_row": 8, "nameplate_w": 40e3}
    site["policies"] = {"smoothing": {"enabled": False, "rate_hz": 5},
                        "demand_response": {"flex_tiers": {"row01": 1, "row02": 4}, "precharge_s": 120.0,
                                            "baseline_s": 120.0}}
    plant = PlantConfig.model_validate({
        "seed": 3, "bess": [{"capacity_wh": 200e3, "rated_power_w": 100e3, "initial_soc": 0.5,
                             "heartbeat_timeout_s": 0.0}],
        "racks": {"model": "training", "racks_per_job": 8, "mean_job_s": 36000.0, "mean_idle_s": 60.0}})
    run = simulate(parse_config(site), plant, 900.0, smoothing_on=False,
                   dr_events=[DrEvent("e", 540.0, 840.0, reduction_w=0.0)])
    (t,) = run.dr_results
    baseline = t.baseline_w
    run2 = simulate(parse_config(site), plant, 900.0, smoothing_on=False,
                    dr_events=[DrEvent("e", 540.0, 840.0, target_import_w=0.75 * baseline)])
    (t2,) = run2.dr_results
    assert t2.minutes == 5 and t2.minutes_at_target == 5
    assert t2.battery_wh > 0 and t2.gpu_throttled_wh > 0
    per_s = round(1 / run2.tick_s)
    grid = run2.grid_w[: run2.grid_w.size // per_s * per_s].reshape(-1, per_s).mean(axis=1)
    assert grid[570:840].mean() <= 0.75 * baseline  # from 30 s in, measured at the plant's meter
    assert (grid[540:840].reshape(-1, 60).mean(axis=1) <= 0.75 * baseline).all()  # every minute
    assert grid[300:420].mean() > 0.75 * baseline  # and not before: the event did it
    assert run2.dr_held_back_wh is not None and run2.dr_demand_wh is not None
    tier1 = run2.dr_held_back_wh[:8].sum() / run2.dr_demand_wh[:8].sum()
    assert tier1 <= 0.10


def test_flex_tiers_reload_live_and_the_channels_need_a_restart() -> None:
    from ems.config_reload import needs_restart
    base = _site({"row01": 1})
    running = parse_config(base)
    tiers = parse_config({**base, "policies": {"demand_response": {"flex_tiers": {"row01": 4}}}})
    assert needs_restart(running, tiers) == []
    ven = parse_config({**base, "policies": {"demand_response": {"flex_tiers": {"row01": 1}, "openadr": {
        "vtn_url": "http://127.0.0.1:1/OpenADR2/Simple/2.0b", "ven_name": "x"}}}})
    assert needs_restart(running, ven) == ["policies.demand_response.openadr"]
    assert "policies.demand_response (added, removed, enabled or disabled)" in needs_restart(
        running, parse_config({**base, "policies": {}}))
