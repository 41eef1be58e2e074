"""An off-grid site under control, over real Modbus and MQTT on loopback (docs/off-grid.md).

No grid at all: the BESS forms the island, PV feeds it, one genset (or two, each on its own
Modbus device) is the last resort. The
controller runs the period step every period (the microgrid balance and the genset
dispatch) and carries out the dispatch on the genset device. Each scenario asserts the
plant's own ground truth: no PCS trip, no lost rack, the island never collapsed.

The site clock runs at 120x so an evening passes in seconds: the battery is small (2 x
100 kWh) so the night drains it to the genset's start within minutes of site time.
"""

from __future__ import annotations

from typing import Any

import pytest

from ems.broker import free_port
from ems.clock import ScaledClock
from ems.model.readings import GensetState, PcsMode
from ems.model.reasons import Reason
from tests.conftest import running_controller, running_site, wait_for

pytestmark = pytest.mark.integration

SPEED = 120.0
RACKS = {"rows": 4, "racks_per_row": 8, "nameplate_w": 40_000.0, "critical_rows": ["row01"]}
# 32 racks x 40 kW x 0.4 x PUE 1.25 = 640 kW, day and night; the BESS is 2 x 500 kW / 100 kWh
GENSET = {"start_delay_s": 10.0, "warmup_s": 20.0, "cooldown_s": 60.0}


def _cfg(make_site: Any, url: str, *, soc: float, start_hour: float, pv_w: float = 0.0,
         fails: bool = False, second: bool = False, genset_plan: bool = False, speed: float = SPEED) -> Any:
    sim: dict[str, Any] = {
        "seed": 3, "speed": speed, "pue": 1.25, "start_hour": start_hour,
        "bess": [{"capacity_wh": 100_000, "rated_power_w": 500_000, "initial_soc": soc,
                  "ramp_w_per_s": 2_000_000, "heartbeat_timeout_s": 60.0}],
        "racks": {"model": "steady", "steady_fraction": 0.4, "telemetry_period_s": 10.0, "cap_response_s": 1.0},
        "grid": {"connected": False},
        "genset": {"rated_power_w": 1_000_000, "ramp_w_per_s": 500_000, **GENSET, "fails_to_start": fails},
    }
    gensets = [{"id": "gen-1", "rated_power_w": 1_000_000, "efficient_load_fraction": 0.9, "min_run_s": 120.0,
                **GENSET}]
    more: dict[str, Any] = {}
    if second:  # a second genset on its own Modbus device
        sim["gensets"] = [{"rated_power_w": 1_000_000, "ramp_w_per_s": 500_000, **GENSET}]
        gensets.append({**gensets[0], "id": "gen-2"})
        more["gensets"] = [{"id": "gen-2", "port": free_port(), "profile": "genset_v1"}]
    if pv_w:  # a short day: sun from 11:36 to 12:24
        sim["pv"] = {"peak_w": pv_w, "sunrise_h": 11.6, "sunset_h": 12.4}
    return make_site(
        url, racks=RACKS, period_s=4.0,
        control={"period_s": 4.0, "setpoint_deadband_w": 500.0, "bess_stale_after_s": 60.0,
                 "meter_stale_after_s": 60.0},
        genset={"port": free_port(), "profile": "genset_v1"},
        policies={"battery": {"soc_min": 0.1, "soc_max": 0.95}},
        grid_connection={"import_limit_w": None, "export_limit_w": 0},
        microgrid={"mode": "off_grid", "start_soc": 0.3, "stop_soc": 0.6, "gensets": gensets, "shed_step_s": 20.0,
                   **({"genset_plan": {"every_s": 600.0}} if genset_plan else {})},
        simulation=sim, **more)


def _no_damage(site: Any) -> None:
    s = site.plant.summary()
    island = site.plant.grid.outages[0]
    assert s["pcs_trips"] == 0 and s["lost_racks"] == 0 and not island.collapsed, island


def _soc(site: Any) -> float:
    units = site.plant.units.values()
    return sum(u.soc for u in units) / len(units)


async def test_a_day_with_pv_and_a_night_without(broker: Any, make_site: Any) -> None:
    # noon: 1.2 MW of PV over a 640 kW load fills the battery, then PV is curtailed; after
    # sunset the battery carries the night down to 30 %, where the genset starts and recharges it
    cfg = _cfg(make_site, broker.url, soc=0.85, start_hour=12.0, pv_w=1_200_000.0)
    clock = ScaledClock(SPEED)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        plant = site.plant
        await wait_for(lambda: ctl.last is not None and ctl.last.step.microgrid is not None)
        assert all(u.mode is PcsMode.GRID_FORMING for u in plant.units.values())
        await wait_for(lambda: plant.battery_power_w < -200_000, timeout_s=5)  # PV charges it
        await wait_for(lambda: plant.stats.pv_curtailed_wh > 1000, timeout_s=20)  # full: PV curtailed
        assert ctl.events.count("genset_start") == 0  # the day needs no diesel
        await wait_for(lambda: plant.pv_w == 0.0, timeout_s=20)  # sunset
        await wait_for(lambda: plant.genset.state is not GensetState.STOPPED, timeout_s=60)
        assert _soc(site) <= 0.31
        await wait_for(lambda: ctl.events.count("genset_start") == 1, timeout_s=5)
        start = ctl.events.query(kind="genset_start")[0]
        assert start.reason == Reason.GENSET_START_LOW_SOC.code and start.data["genset"] == "gen-1"
        assert [e.data["command"] for e in ctl.events.query(kind="genset_command")] == ["start"]
        await wait_for(lambda: plant.genset.state is GensetState.RUNNING and plant.genset.power_w > 600_000,
                       timeout_s=10)
        low = _soc(site)
        # running at its efficient load: the load and a surplus into the battery
        await wait_for(lambda: plant.battery_power_w < -100_000 and _soc(site) > low + 0.02, timeout_s=20)
        assert plant.genset.charge_request_w > 100_000
        _no_damage(site)
        mg = ctl.last.step.state.microgrid
        assert mg.unserved_wh == pytest.approx(0.0, abs=1.0)
        assert mg.surplus_wh > 0  # the curtailed PV, seen by the step too
        s = plant.summary()
        assert s["pv_energy_wh"] > 0 and s["genset_energy_wh"] > 0


async def test_a_genset_failing_to_start_sheds_row_by_row_in_shed_order(broker: Any, make_site: Any) -> None:
    # at 30 % the genset should relieve the battery; it fails and there is no other: no relief is
    # coming, so the non-critical rows go to their minimum cap (25 % of 40 kW) one after the other in
    # shed order (the last row first), and row01 (critical) is kept
    cfg = _cfg(make_site, broker.url, soc=0.32, start_hour=22.0, fails=True)
    clock = ScaledClock(SPEED)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        plant = site.plant
        await wait_for(lambda: plant.genset.state is GensetState.FAILED, timeout_s=20)
        await wait_for(lambda: ctl.events.count("genset_failed") == 1, timeout_s=5)
        failed = ctl.events.query(kind="genset_failed")[0]
        assert failed.reason == Reason.GENSET_START_FAILED.code and failed.data["genset"] == "gen-1"
        await wait_for(lambda: ctl.events.count("offgrid_shed") == 3, timeout_s=10)
        steps = sorted(ctl.events.query(kind="offgrid_shed"), key=lambda e: e.data["rows"])
        assert [(e.data["row"], e.data["rows"]) for e in steps] == [("row04", 1), ("row03", 2), ("row02", 3)]
        assert all(e.reason == Reason.OFFGRID_SHED.code and e.data["no_relief"] for e in steps)
        assert len({e.wall_s for e in steps}) == 3  # one step at a time, not all at once
        racks = plant.racks
        await wait_for(lambda: sum(c == c for c in racks.cap_w) == 24, timeout_s=5)
        capped = [rid for rid, cap in zip(racks.rack_ids, racks.cap_w, strict=True) if cap == cap]  # not NaN
        assert not any(rid.startswith("row01") for rid in capped) and len(capped) == 24
        assert ctl.last.status["microgrid"]["shed_rows"] == 3
        # 8 x 16 kW + 24 x 10 kW, x 1.25: the battery's load falls from 640 to 460 kW
        await wait_for(lambda: plant.battery_power_w < 480_000, timeout_s=5)
        at = _soc(site)
        await wait_for(lambda: _soc(site) < at - 0.02, timeout_s=10)  # still the battery's night
        # not tried again while it reports the failure (a stop would acknowledge it): one start sent
        assert [e.data["command"] for e in ctl.events.query(kind="genset_command")] == ["start"]
        assert plant.genset.state is GensetState.FAILED and plant.genset.starts == 1
        _no_damage(site)


async def test_a_genset_failing_to_start_the_next_one_covers(broker: Any, make_site: Any) -> None:
    # two gensets on two Modbus devices; gen-1 fails at the end of its start delay, gen-2 is staged in
    # at once and carries the island and the recharge: nothing shed, nothing unserved
    cfg = _cfg(make_site, broker.url, soc=0.32, start_hour=22.0, fails=True, second=True)
    clock = ScaledClock(SPEED)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        plant = site.plant
        gen2 = plant.gensets["gen-2"]
        await wait_for(lambda: ctl.events.count("genset_failed") == 1, timeout_s=30)
        await wait_for(lambda: gen2.state is GensetState.RUNNING and gen2.power_w > 600_000, timeout_s=10)
        starts = [(e.data["genset"], e.reason) for e in ctl.events.query(kind="genset_start")]
        low_soc = Reason.GENSET_START_LOW_SOC.code
        assert sorted(starts) == [("gen-1", low_soc), ("gen-2", low_soc)]
        failed = ctl.events.query(kind="genset_failed")[0]
        assert failed.data["genset"] == "gen-1" and failed.reason == Reason.GENSET_START_FAILED.code
        commands = sorted((e.data["genset"], e.data["command"]) for e in ctl.events.query(kind="genset_command"))
        assert commands == [("gen-1", "start"), ("gen-2", "start")]  # gen-1 left failed, not retried
        low = _soc(site)
        await wait_for(lambda: _soc(site) > low + 0.02, timeout_s=20)  # gen-2 recharges the battery
        assert gen2.charge_request_w > 100_000 and plant.genset.state is GensetState.FAILED
        assert ctl.events.count("offgrid_shed") == 0 and not any(c == c for c in plant.racks.cap_w)
        assert ctl.last.step.state.microgrid.unserved_wh == pytest.approx(0.0, abs=1.0)
        _no_damage(site)


async def test_a_running_genset_that_trips_is_replaced_by_the_next(broker: Any, make_site: Any) -> None:
    # gen-1 starts at 29 %, runs and carries the island; then it trips (the simulator's fault injection):
    # gen-2 starts at once (GENSET_TRIPPED for gen-1), the battery bridges its start delay and warm-up
    cfg = _cfg(make_site, broker.url, soc=0.29, start_hour=2.0, second=True)
    clock = ScaledClock(SPEED)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        plant = site.plant
        gen2 = plant.gensets["gen-2"]
        await wait_for(lambda: plant.genset.state is GensetState.RUNNING and plant.genset.power_w > 600_000,
                       timeout_s=10)
        assert site.control("genset_trip")
        await wait_for(lambda: ctl.events.count("genset_failed") == 1, timeout_s=5)
        tripped = ctl.events.query(kind="genset_failed")[0]
        assert tripped.data["genset"] == "gen-1" and tripped.reason == Reason.GENSET_TRIPPED.code
        await wait_for(lambda: gen2.state is GensetState.RUNNING and gen2.power_w > 600_000, timeout_s=10)
        assert [e.data["genset"] for e in ctl.events.query(kind="genset_start")] == ["gen-2", "gen-1"]  # newest first
        assert ctl.events.count("offgrid_shed") == 0
        assert ctl.last.step.state.microgrid.unserved_wh == pytest.approx(0.0, abs=1.0)
        _no_damage(site)


async def test_the_battery_near_empty_starts_the_genset_and_recovers(broker: Any, make_site: Any) -> None:
    # From 16 % the start delay and warm-up (30 s) take the battery to ~13 %: 37 s of site time
    # above the floor are left for everything before the controller's first period, and the plant
    # runs from the clock's creation. The site and controller take ~0.2 s of wall time to come up
    # on an idle machine and ~0.6 s on a loaded 2-core one: 24-72 s of site time at 120x, the
    # battery at the floor before the first period. At 24x the same start-up is 5-15 s.
    speed = SPEED / 5
    cfg = _cfg(make_site, broker.url, soc=0.16, start_hour=2.0, speed=speed)
    clock = ScaledClock(speed)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        plant = site.plant
        await wait_for(lambda: ctl.events.count("genset_start") == 1, timeout_s=5)
        assert ctl.events.query(kind="genset_start")[0].reason == Reason.GENSET_START_LOW_SOC.code
        await wait_for(lambda: plant.genset.state is GensetState.RUNNING, timeout_s=10)
        low = _soc(site)
        assert low > 0.1  # the start delay and warm-up bridged above the floor
        await wait_for(lambda: _soc(site) > low + 0.05, timeout_s=20)
        assert ctl.last.step.reason is Reason.GENSET_CHARGING
        _no_damage(site)
        assert ctl.last.step.state.microgrid.unserved_wh == pytest.approx(0.0, abs=1.0)


async def test_the_planner_s_milp_schedule_starts_the_genset_before_the_battery_runs_low(
        broker: Any, make_site: Any) -> None:
    # SoC 50 %: between the thresholds, which would let the battery run down to 30 % first. The
    # planner (persistence: the demand of the moment, 640 kW, for 24 h) sees the 2 x 100 kWh battery
    # cannot carry the hour: its schedule has the genset on now, and the step starts it on the plan
    cfg = _cfg(make_site, broker.url, soc=0.5, start_hour=22.0, genset_plan=True)
    clock = ScaledClock(SPEED)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        plant = site.plant
        assert ctl.genset_planner is not None
        await wait_for(lambda: ctl.events.count("genset_start") == 1, timeout_s=10)
        start = ctl.events.query(kind="genset_start")[0]
        assert start.reason == Reason.GENSET_START_PLAN.code and start.data["genset"] == "gen-1"
        assert ctl.genset_planner.solves >= 1 and ctl.genset_planner.schedule is not None
        assert ctl.genset_planner.schedule.on[0] == 1
        await wait_for(lambda: ctl.last.status["microgrid"]["genset_plan"] is not None, timeout_s=5)
        assert ctl.last.status["microgrid"]["genset_plan"]["on"][0] == 1
        assert _soc(site) > 0.4  # long before the threshold
        await wait_for(lambda: plant.genset.state is GensetState.RUNNING and plant.genset.power_w > 600_000,
                       timeout_s=10)
        assert ctl.last.step.state.microgrid.unserved_wh == pytest.approx(0.0, abs=1.0)
        _no_damage(site)
