"""The plant model's physics, stepped on its own clock (no sockets)."""

from __future__ import annotations

import numpy as np
import pytest

from ems.model.readings import GensetState, PcsMode
from plant.battery import BessUnitModel
from plant.config import PlantConfig, ScenarioEvent, SimBessConfig, SimRackLoadConfig
from plant.plant import DemandTracker, Plant, SlidingAverage, pv_power_w
from plant.racks import RackFleet


def _unit(**kw) -> BessUnitModel:
    cfg = SimBessConfig(**{"capacity_wh": 1_000_000, "rated_power_w": 500_000, "initial_soc": 0.5,
                           "ramp_w_per_s": 1e9, "heartbeat_timeout_s": 0.0, **kw})
    u = BessUnitModel("u1", cfg)
    u.command_mode(PcsMode.GRID_FOLLOWING, 0.0)
    return u


def test_discharge_integrates_soc_with_efficiency() -> None:
    u = _unit(discharge_efficiency=0.95, soh=1.0)
    u.command_setpoint(250_000)
    for _ in range(3600):
        u.step(0.0, 1.0)  # one hour at 250 kW AC
    assert u.energy_discharged_wh == pytest.approx(250_000)
    assert u.soc == pytest.approx(0.5 - 250_000 / 0.95 / 1_000_000)


def test_charge_integrates_soc_with_efficiency() -> None:
    u = _unit(charge_efficiency=0.9, soh=1.0)
    u.command_setpoint(-100_000)
    for _ in range(3600):
        u.step(0.0, 1.0)
    assert u.soc == pytest.approx(0.5 + 100_000 * 0.9 / 1_000_000)


def test_setpoint_tracks_with_ramp_and_rating() -> None:
    u = _unit(ramp_w_per_s=100_000)
    u.command_setpoint(1_000_000)
    u.step(0.0, 1.0)
    assert u.power_w == pytest.approx(100_000)
    for _ in range(10):
        u.step(0.0, 1.0)
    assert u.power_w == pytest.approx(500_000)  # rating


def test_discharge_derates_near_empty_and_charge_near_full() -> None:
    empty = _unit(initial_soc=0.03)
    assert 0 < empty.allowed_discharge_w() < 0.5 * empty.cfg.rated_power_w
    full = _unit(initial_soc=0.985)
    assert 0 < full.allowed_charge_w() < 0.5 * full.cfg.rated_power_w
    drained = _unit(initial_soc=0.02)
    drained.command_setpoint(500_000)
    drained.step(0.0, 1.0)
    assert drained.power_w == 0.0


def test_heartbeat_timeout_reverts_to_standby_at_zero() -> None:
    u = _unit(heartbeat_timeout_s=2.0)
    u.command_heartbeat(1, now_s=0.0)
    u.command_setpoint(200_000)
    u.step(1.0, 1.0)
    assert u.mode is PcsMode.GRID_FOLLOWING and u.power_w == 200_000
    u.step(3.0, 2.0)
    assert u.mode is PcsMode.STANDBY and u.setpoint_w == 0 and u.power_w == 0
    assert u.heartbeat_timeouts == 1


def test_fault_trips_to_zero_until_cleared_and_recommanded() -> None:
    u = _unit()
    u.command_setpoint(200_000)
    u.step(0.0, 1.0)
    u.inject_fault()
    assert u.power_w == 0 and u.mode is PcsMode.STANDBY
    u.command_mode(PcsMode.GRID_FOLLOWING, 0.0)
    assert u.mode is PcsMode.STANDBY  # a faulted PCS ignores mode commands
    u.clear_fault()
    u.command_mode(PcsMode.GRID_FOLLOWING, 0.0)
    u.step(1.0, 1.0)
    assert u.power_w == 200_000


def _fleet(model: str = "training", n: int = 16, **kw) -> RackFleet:
    cfg = SimRackLoadConfig(model=model, **kw)
    ids = [f"row01-rack{i + 1:02d}" for i in range(n)]
    return RackFleet(ids, ["row01"] * n, 40_000.0, cfg, np.random.default_rng(1))


def test_training_swings_between_low_and_high_in_step() -> None:
    f = _fleet(mean_job_s=1e9, checkpoint_every_s=1e9, racks_per_job=16)
    samples = []
    for k in range(400):
        f.step(10.0 + k * 0.01, 0.01)
        samples.append(f.power_w.copy())
    s = np.array(samples) / 40_000.0
    assert s.min() >= 0.40 * 0.97 - 1e-9 and s.max() <= 1.0 + 1e-9
    assert s.max() - s.min() > 0.4  # a real swing, not noise
    # synchronous: all racks of the job move together
    assert np.corrcoef(s[:, 0], s[:, 5])[0, 1] > 0.99


def test_long_steps_report_the_average_not_a_sample() -> None:
    f = _fleet(mean_job_s=1e9, checkpoint_every_s=1e9, racks_per_job=16)
    f.step(1000.0, 600.0)
    frac = f.power_w / 40_000.0 / f._jitter
    assert frac == pytest.approx(np.full(16, 0.7), abs=0.02)


def test_cap_is_obeyed_after_response_delay_down_to_floor() -> None:
    f = _fleet("steady", steady_fraction=0.9, cap_response_s=0.2, min_cap_fraction=0.25)
    f.step(0.0, 0.1)
    f.command_cap(0, 20_000.0, now_s=0.0)
    f.command_cap(1, 1_000.0, now_s=0.0)
    f.step(0.1, 0.1)
    assert f.power_w[0] > 30_000  # not yet
    f.step(0.3, 0.2)
    assert f.power_w[0] == pytest.approx(20_000)
    assert f.power_w[1] == pytest.approx(10_000)  # the floor: 25 % of nameplate
    f.command_cap(0, None, now_s=0.3)
    f.step(0.6, 0.3)
    assert f.power_w[0] > 30_000


def test_jobs_cycle_through_idle_and_checkpoints() -> None:
    f = _fleet(mean_job_s=600, mean_idle_s=300, checkpoint_every_s=120, checkpoint_s=20,
               racks_per_job=4, ramp_s=30)
    seen = set()
    for k in range(2000):
        f.step(k * 5.0, 5.0)
        seen.update(int(s) for s in f.job_state)
    assert seen == {0, 1, 2, 3, 4}


def _plant(**sim) -> Plant:
    cfg = PlantConfig(**{"racks": {"model": "steady", "steady_fraction": 0.5}, "pue": 1.25,
                              "bess": [{"initial_soc": 0.5, "heartbeat_timeout_s": 0}], **sim})
    ids = [f"row01-rack{i + 1:02d}" for i in range(8)]
    return Plant(cfg, ["u1", "u2"], ids, ["row01"] * 8, 40_000.0)


def test_grid_balance() -> None:
    p = _plant(pv={"peak_w": 50_000}, start_hour=12.0)
    for u in p.units.values():
        u.command_mode(PcsMode.GRID_FOLLOWING, 0.0)
        u.command_setpoint(20_000)
    p.advance_to(10.0)
    racks = 8 * 40_000 * 0.5 * p.racks._jitter.mean()
    expected = racks * 1.25 - p.pv_w - 40_000
    assert p.pv_w > 0
    assert p.meter.grid_power_w == pytest.approx(expected, rel=1e-9)
    assert p.grid_without_battery_w == pytest.approx(expected + 40_000, rel=1e-9)


def test_scenario_events_apply_at_their_time() -> None:
    p = _plant(scenario=[ScenarioEvent(at_s=5.0, action="rack_load", fraction=0.9),
                         ScenarioEvent(at_s=6.0, action="pcs_fault", unit="u2")])
    p.advance_to(4.0)
    before = p.racks.total_power_w
    p.advance_to(7.0)
    assert p.racks.total_power_w == pytest.approx(before * 0.9 / 0.5)
    assert p.units["u2"].faults == ("internal",) and not p.units["u1"].faults


def test_demand_tracker_averages_over_intervals() -> None:
    d = DemandTracker(900.0)
    d.add(100.0, 450.0)
    d.add(300.0, 450.0)  # first interval: average 200
    d.add(50.0, 900.0)
    assert d.peak_w == pytest.approx(200.0)


def test_pv_is_zero_at_night_and_peaks_at_noon() -> None:
    assert pv_power_w(100.0, 6, 18, 3.0) == 0.0
    assert pv_power_w(100.0, 6, 18, 12.0) == pytest.approx(100.0)


def test_the_meters_average_covers_its_window_and_no_more() -> None:
    avg = SlidingAverage(20.0)
    assert avg.add(1000.0, 1.0) == pytest.approx(1000.0)
    for _ in range(19):
        avg.add(1000.0, 1.0)
    for _ in range(10):
        out = avg.add(2000.0, 1.0)
    assert out == pytest.approx(1500.0)  # half the window at each level
    for _ in range(10):
        out = avg.add(2000.0, 1.0)
    assert out == pytest.approx(2000.0)  # the old level has left the window


def test_the_swing_between_intervals_is_tracked() -> None:
    d = DemandTracker(60.0)
    for level in (100.0, 300.0, 250.0):
        d.add(level, 60.0)
    assert d.peak_w == 300.0 and d.step_w(100) == pytest.approx(200.0) and d.step_w(0) == pytest.approx(50.0)


def test_the_plant_meter_averages_a_fast_swing_away() -> None:
    cfg = PlantConfig.model_validate({"meter_average_s": 10.0, "max_substep_s": 0.02,
                                      "racks": {"swing_hz_min": 1.0, "swing_hz_max": 1.0, "mean_idle_s": 1.0,
                                                "ramp_s": 0.0, "mean_job_s": 1e6}})
    ids = [f"row01-rack{i:02d}" for i in range(1, 9)]
    plant = Plant(cfg, ["u1"], ids, ["row01"] * 8, 40_000.0)
    instants, averages = [], []
    for k in range(3000):
        plant.advance_to(k * 0.02)
        if k > 1500:  # training, the window full
            instants.append(plant.meter.grid_power_w)
            averages.append(plant.meter.average_w)
    assert np.std(instants) > 20e3  # the racks swing
    assert np.std(averages) < 0.2 * np.std(instants)
    assert np.mean(averages) == pytest.approx(np.mean(instants), rel=0.05)


def _offgrid(soc: float, start_hour: float, pv_w: float = 0.0, genset: bool = False) -> Plant:
    sim = {"start_hour": start_hour, "pue": 1.25, "grid": {"connected": False},
           "bess": [{"capacity_wh": 100_000, "rated_power_w": 500_000, "initial_soc": soc}],
           "racks": {"model": "steady", "steady_fraction": 0.4}}
    if pv_w:
        sim["pv"] = {"peak_w": pv_w, "sunrise_h": 11.6, "sunset_h": 12.4}
    if genset:
        sim["genset"] = {"rated_power_w": 1_000_000, "start_delay_s": 1, "warmup_s": 1, "ramp_w_per_s": 1e6}
    return Plant(PlantConfig.model_validate(sim), ["bess-1", "bess-2"], [f"r{i}" for i in range(32)],
                 [f"row{i // 8 + 1:02d}" for i in range(32)], 40_000.0)


def test_off_grid_the_bess_forms_the_island_and_the_grid_never_returns() -> None:
    p = _offgrid(0.6, 0.0)
    assert all(u.mode is PcsMode.GRID_FORMING for u in p.units.values())
    p.restore_grid()  # there is no grid to come back
    p.advance_to(60.0)
    assert p.grid.islanded and p.meter.grid_power_w == 0.0
    assert p.battery_power_w == pytest.approx(640_000, rel=0.01)  # 32 x 40 kW x 0.4 x 1.25
    s = p.summary()
    assert s["pcs_trips"] == 0 and s["lost_racks"] == 0 and s["outages"] == 1  # the island's own record


def test_off_grid_pv_feeds_the_island_and_is_curtailed_when_the_battery_is_full() -> None:
    p = _offgrid(0.9, 12.0, pv_w=1_200_000)
    p.advance_to(60.0)
    assert p.battery_power_w < -500_000 and p.stats.pv_curtailed_wh == 0  # charging from PV
    p.advance_to(1800.0)
    s = p.summary()
    assert s["pv_curtailed_wh"] > 0 and s["pcs_trips"] == 0  # full: PV cut, never a charge overload
    assert max(u.soc for u in p.units.values()) < 0.995


def test_off_grid_the_genset_carries_the_load_and_its_charge_request() -> None:
    p = _offgrid(0.3, 0.0, genset=True)
    assert p.genset is not None
    p.command_genset(True, 0.0)
    p.genset.charge_request_w = 200_000
    p.advance_to(30.0)
    assert p.genset.power_w == pytest.approx(840_000, rel=0.01)
    assert p.battery_power_w == pytest.approx(-200_000, rel=0.02)


def test_off_grid_several_gensets_share_the_load_by_rating_and_one_can_trip() -> None:
    sim = {"start_hour": 0.0, "pue": 1.25, "grid": {"connected": False},
           "bess": [{"capacity_wh": 100_000, "rated_power_w": 500_000, "initial_soc": 0.5}],
           "racks": {"model": "steady", "steady_fraction": 0.4},
           "genset": {"rated_power_w": 1_000_000, "start_delay_s": 1, "warmup_s": 1, "ramp_w_per_s": 1e6},
           "gensets": [{"rated_power_w": 500_000, "start_delay_s": 1, "warmup_s": 1, "ramp_w_per_s": 1e6}],
           "scenario": [{"at_s": 60.0, "action": "genset_trip", "genset": "gen-2"}]}
    p = Plant(PlantConfig.model_validate(sim), ["bess-1", "bess-2"], [f"r{i}" for i in range(32)],
              [f"row{i // 8 + 1:02d}" for i in range(32)], 40_000.0, ["gen-2"])
    assert set(p.gensets) == {"genset", "gen-2"}
    p.command_genset(True, 0.0)
    p.command_genset(True, 0.0, "gen-2")
    p.advance_to(30.0)
    # 640 kW shared 2:1 by rating; the battery gives nothing
    assert p.gensets["genset"].power_w == pytest.approx(640_000 * 2 / 3, rel=0.01)
    assert p.gensets["gen-2"].power_w == pytest.approx(640_000 / 3, rel=0.01)
    assert abs(p.battery_power_w) < 5_000
    p.advance_to(90.0)  # gen-2 tripped at 60 s: failed, its share on gen-1
    assert p.gensets["gen-2"].state is GensetState.FAILED and p.gensets["gen-2"].power_w == 0.0
    assert p.gensets["genset"].power_w == pytest.approx(640_000, rel=0.01)
    s = p.summary()
    assert s["genset_starts"] == 2 and s["pcs_trips"] == 0
