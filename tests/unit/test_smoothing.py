"""Smoothing: the grid ramp constraint in the period step, the fast core, the GPU lever."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from ems.envelope import EnvelopeParams
from ems.model.racks import SmoothingProfile
from ems.model.reasons import Reason
from ems.period import StepParams, StepState, step
from policies import gpu_smoothing, smoothing
from policies.battery_limits import BatteryLimitsParams
from policies.grid_ramp import GridRampParams
from policies.peak_shaving import PeakShavingParams
from tests.snapshots import racks, snapshot, unit

RAMP = StepParams(limits=BatteryLimitsParams(0.1, 0.95), envelope=EnvelopeParams(0.1, 0.95),
                  grid_ramp=GridRampParams(limit_w=100_000.0, window_s=60.0))


def test_RAMP_LIMITED() -> None:
    """A job starts: the load jumps 400 kW in a second. The grid may move 100 kW a minute:
    the battery takes the rest, and gives it back no faster than the limit allows."""
    state = StepState()
    for t in range(5):  # a steady 800 kW
        r = step(snapshot(800_000, now_s=float(t)), RAMP, state)
        state = r.state
        assert r.setpoint_w == 0.0
    r = step(snapshot(1_200_000, now_s=5.0), RAMP, state)
    assert r.reason is Reason.RAMP_LIMITED and r.setpoint_w == pytest.approx(300_000)  # grid 900 kW
    grid = [800_000.0] * 5 + [1_200_000 - r.setpoint_w]
    state = r.state
    for t in range(6, 200):  # the battery hands the step to the grid within the limit
        battery = r.setpoint_w
        r = step(snapshot(1_200_000 - battery, units=(unit("u1", power_w=battery / 2), unit("u2", power_w=battery / 2)),
                          now_s=float(t)), RAMP, state)
        state = r.state
        grid.append(1_200_000 - r.setpoint_w)
    g = np.array(grid)
    worst = max(abs(g[i] - g[max(0, i - 59):i + 1]).max() for i in range(len(g)))
    assert worst <= 100_000 + 1.0
    assert g[-1] == pytest.approx(1_200_000, abs=1_000)  # and the grid does get there


def test_the_ramp_limit_ranks_below_the_reserve_and_above_peak_shaving() -> None:
    p = replace(RAMP, peak=PeakShavingParams(850_000, 0.0))
    state = step(snapshot(800_000, now_s=0.0), p, StepState()).state
    r = step(snapshot(700_000, now_s=1.0), p, state)  # the load drops 100 kW, within the limit
    assert r.setpoint_w == 0.0
    r = step(snapshot(500_000, now_s=1.0), p, state)  # drops 300 kW: the battery charges to hold the grid
    assert r.reason is Reason.RAMP_LIMITED and r.setpoint_w == pytest.approx(-200_000)


def test_a_window_the_battery_could_not_hold_is_restarted_from_the_meter_not_pushed() -> None:
    """The battery saturates (200 kW against a 600 kW jump): what the period aimed for left the
    limit far behind. The constraint does not drive the battery to a bound for a grid that
    never happened; it starts again from the measured grid."""
    small = replace(RAMP, limits=BatteryLimitsParams(0.1, 0.95))
    units = (unit("u1", max_discharge_w=100_000), unit("u2", max_discharge_w=100_000))
    state = step(snapshot(800_000, units, now_s=0.0), small, StepState()).state
    r = step(snapshot(1_400_000, units, now_s=1.0), small, state)
    assert r.setpoint_w == pytest.approx(200_000)  # all it has: the grid goes to 1.2 MW anyway
    assert r.state.ramp.recent_grid == ((1.0, 1_400_000.0),)  # no guide any more: restarted from the meter
    # the next period lets the grid stay where the meter saw it, instead of charging for a grid 600 kW under it
    units = (unit("u1", power_w=100_000, max_discharge_w=100_000), unit("u2", power_w=100_000, max_discharge_w=100_000))
    r = step(snapshot(1_200_000, units, now_s=2.0, last_setpoint_w=200_000), small, r.state)
    assert r.setpoint_w == 0.0 and r.reason is Reason.IDLE


PARAMS = smoothing.SmoothingParams(tau_s=20.0, ramp_w_per_s=100_000 / 60)


def _run(loads: np.ndarray, dt_s: float, lo_w: float = -1e6, hi_w: float = 1e6) -> tuple[np.ndarray, list]:
    state = smoothing.SmoothingState()
    grid, ticks = [], []
    for load in loads:
        t, state = smoothing.tick(float(load), 0.0, lo_w, hi_w, dt_s, PARAMS, state)
        grid.append(load - t.battery_w)
        ticks.append(t)
    return np.array(grid), ticks


def test_SMOOTHING_ACTIVE() -> None:
    """A 1 Hz swing of +-300 kW around 1 MW: the battery takes it, the grid stays flat."""
    dt = 0.05
    t = np.arange(0, 120, dt)
    load = 1e6 + 300e3 * np.sign(np.sin(2 * math.pi * 1.0 * t))
    grid, ticks = _run(load, dt)
    assert np.ptp(grid[200:]) < 0.05 * np.ptp(load)  # after the filter settles
    assert sum(x.reason is Reason.SMOOTHING_ACTIVE for x in ticks) > 0.9 * len(ticks)
    assert abs(np.mean([x.battery_w for x in ticks[200:]])) < 20e3  # on average the base (0 W)


def test_SMOOTHING_CLIPPED() -> None:
    dt = 0.05
    t = np.arange(0, 60, dt)
    load = 1e6 + 300e3 * np.sign(np.sin(2 * math.pi * 0.5 * t))
    grid, ticks = _run(load, dt, lo_w=-100e3, hi_w=100e3)  # the battery can hold only a third
    assert any(x.reason is Reason.SMOOTHING_CLIPPED for x in ticks)
    assert all(-100e3 <= x.battery_w <= 100e3 for x in ticks)
    assert np.ptp(grid[200:]) == pytest.approx(400e3, rel=0.05)  # what the bounds let through


def test_the_lead_answers_a_battery_that_acts_one_tick_late() -> None:
    """Live, the command lands a tick after the reading: without the lead the grid sees the swing's
    change over one tick; with it (linear extrapolation) only its curvature."""
    dt = 0.05
    t = np.arange(0, 60, dt)
    load = 1e6 + 300e3 * np.sin(2 * math.pi * 0.5 * t)

    def late_grid(lead_ticks: float) -> float:
        p = smoothing.SmoothingParams(tau_s=20.0, ramp_w_per_s=None, lead_ticks=lead_ticks)
        state, acting_w, grid = smoothing.SmoothingState(), 0.0, []
        for x in load:
            grid.append(x - acting_w)  # the battery still answers the previous tick's command
            tick, state = smoothing.tick(float(x), 0.0, -1e6, 1e6, dt, p, state)
            acting_w = tick.battery_w
        return float(np.ptp(np.array(grid[400:])))

    without, with_lead = late_grid(0.0), late_grid(1.0)
    assert without > 0.1 * np.ptp(load)  # 2 pi f dt of the swing gets through
    assert with_lead < 0.3 * without


def test_the_fast_core_follows_a_level_change_within_the_ramp_limit() -> None:
    dt = 0.05
    load = np.concatenate([np.full(400, 1e6), np.full(4000, 1.5e6)])
    grid, _ = _run(load, dt)
    assert np.max(np.abs(np.diff(grid))) <= PARAMS.ramp_w_per_s * dt + 1.0  # never faster than the limit
    assert grid[-1] > 1.3e6  # and it does follow


GPU = gpu_smoothing.GpuSmoothingParams(floor_fraction=0.7, ramp_w_per_s=2000.0, release_after_s=60.0,
                                       critical_rows=frozenset({"row02"}))


def test_GPU_SMOOTHING() -> None:
    reading = racks(4)
    reading = replace(reading, rack_ids=(*reading.rack_ids[:3], "row02-rack01"),
                      row_of_rack=(*reading.row_of_rack[:3], "row02"))
    profiles, why, state = gpu_smoothing.decide(0.0, 600e3, 200e3, 0.0, reading, GPU, gpu_smoothing.GpuSmoothingState())
    assert why is Reason.GPU_SMOOTHING and state.engaged
    assert profiles["row01-rack01"] == SmoothingProfile(0.7 * 40e3, 2000.0)
    assert profiles["row02-rack01"] is None  # critical rows are never touched
    # the swing fits the battery again: released only after it has fitted for a while
    _, why, state = gpu_smoothing.decide(10.0, 100e3, 300e3, 0.0, reading, GPU, state)
    assert why is Reason.GPU_SMOOTHING
    profiles, why, state = gpu_smoothing.decide(80.0, 100e3, 300e3, 0.0, reading, GPU, state)
    assert why is None and not state.engaged and set(profiles.values()) == {None}


def test_the_gpu_lever_stays_off_while_the_battery_holds_the_swing() -> None:
    profiles, why, state = gpu_smoothing.decide(0.0, 400e3, 300e3, 0.0, racks(4), GPU,
                                                gpu_smoothing.GpuSmoothingState())
    assert why is None and not state.engaged and set(profiles.values()) == {None}


def test_the_gpu_lever_engages_when_the_grid_oscillates_past_its_limit_all_the_same() -> None:
    """The battery has the power but answers too late for the swing's edges: the grid's band
    RMS is over the limit, so the floors go on, and stay on while the swing could break it."""
    p = replace(GPU, oscillation_limit_w_rms=50e3)
    _, why, state = gpu_smoothing.decide(0.0, 400e3, 1e6, 80e3, racks(4), p, gpu_smoothing.GpuSmoothingState())
    assert why is Reason.GPU_SMOOTHING
    _, why, state = gpu_smoothing.decide(100.0, 400e3, 1e6, 10e3, racks(4), p, state)  # the floors work
    assert why is Reason.GPU_SMOOTHING  # half the swing (200 kW) could still break 50 kW unsmoothed
    _, why, state = gpu_smoothing.decide(200.0, 60e3, 1e6, 10e3, racks(4), p, state)  # the jobs stopped
    _, why, state = gpu_smoothing.decide(300.0, 60e3, 1e6, 10e3, racks(4), p, state)
    assert why is None
