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
from policies.load_predictor import LoadPredictor
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
    RMS stays over the limit (PERSIST_S: longer than one step holds the window up), so the
    floors go on. Once the grid has been calm for the hold, they go: a trial of the battery
    alone, given TRIAL_GRACE_S to settle. It fails (over the limit after that), so the floors
    come back and the next trial waits twice as long; a trial that holds resets the hold."""
    p = replace(GPU, oscillation_limit_w_rms=50e3)
    _, why, state = gpu_smoothing.decide(0.0, 400e3, 1e6, 80e3, racks(4), p, gpu_smoothing.GpuSmoothingState())
    assert why is None  # one step in the window would do that too
    _, why, state = gpu_smoothing.decide(15.0, 400e3, 1e6, 80e3, racks(4), p, state)
    assert why is Reason.GPU_SMOOTHING and state.swing_before_w == 400e3
    _, why, state = gpu_smoothing.decide(100.0, 150e3, 1e6, 10e3, racks(4), p, state)  # the floors work
    assert why is Reason.GPU_SMOOTHING
    _, why, state = gpu_smoothing.decide(130.0, 150e3, 1e6, 45e3, racks(4), p, state)  # over 3/4: not calm
    _, why, state = gpu_smoothing.decide(180.0, 150e3, 1e6, 10e3, racks(4), p, state)
    assert why is Reason.GPU_SMOOTHING  # calm since 180 only
    _, why, state = gpu_smoothing.decide(240.0, 150e3, 1e6, 10e3, racks(4), p, state)
    assert why is None and state.released_at_s == 240.0  # the trial
    _, why, state = gpu_smoothing.decide(250.0, 400e3, 1e6, 80e3, racks(4), p, state)
    assert why is None  # settling: the predictor learns the unfloored swing
    _, why, state = gpu_smoothing.decide(270.0, 400e3, 1e6, 80e3, racks(4), p, state)  # the battery cannot
    assert why is Reason.GPU_SMOOTHING and state.hold_s == 120.0
    _, why, state = gpu_smoothing.decide(280.0, 150e3, 1e6, 10e3, racks(4), p, state)
    _, why, state = gpu_smoothing.decide(350.0, 150e3, 1e6, 10e3, racks(4), p, state)
    assert why is Reason.GPU_SMOOTHING  # 70 s calm: not the 120 it now waits for
    _, why, state = gpu_smoothing.decide(400.0, 150e3, 1e6, 10e3, racks(4), p, state)
    assert why is None
    _, why, state = gpu_smoothing.decide(1000.0, 400e3, 1e6, 80e3, racks(4), p, state)
    _, why, state = gpu_smoothing.decide(1015.0, 400e3, 1e6, 80e3, racks(4), p, state)  # long after: held
    assert why is Reason.GPU_SMOOTHING and state.hold_s == 60.0


def test_floors_the_battery_has_not_the_power_for_are_not_tried_without() -> None:
    """The floors went on for a swing twice the battery's headroom: under them the swing and the
    grid are calm, but that says nothing of the battery alone; they stay while the swing could
    break the oscillation limit unsmoothed."""
    p = replace(GPU, oscillation_limit_w_rms=50e3)
    _, why, state = gpu_smoothing.decide(0.0, 800e3, 300e3, 80e3, racks(4), p, gpu_smoothing.GpuSmoothingState())
    for now_s in (10.0, 100.0, 1000.0):
        _, why, state = gpu_smoothing.decide(now_s, 200e3, 300e3, 5e3, racks(4), p, state)
        assert why is Reason.GPU_SMOOTHING


def _training_swing(t: np.ndarray) -> np.ndarray:
    """Two jobs' compute/communication waves (tanh-squared, fast edges) at unrelated rates."""
    def wave(hz: float, phase: float) -> np.ndarray:
        return 0.5 + 0.5 * np.tanh(3.0 * np.sin(2 * math.pi * (hz * t + phase))) / np.tanh(3.0)

    return 1e6 + 300e3 * wave(0.7, 0.1) + 250e3 * wave(2.3, 0.6)


def _band_rms(x: np.ndarray, dt_s: float, low_hz: float = 0.1) -> float:
    spectrum = np.fft.rfft(x - x.mean())
    freqs = np.fft.rfftfreq(x.size, dt_s)
    return float(np.sqrt(2.0 * np.sum(np.abs(spectrum[freqs >= low_hz]) ** 2)) / x.size)


def _late_grid(load: np.ndarray, dt_s: float, lead_ticks: float, predictor: LoadPredictor | None) -> np.ndarray:
    """The grid with a battery that answers each command a tick late (the fast loop's latency)."""
    p = smoothing.SmoothingParams(tau_s=20.0, ramp_w_per_s=None, lead_ticks=lead_ticks)
    state, acting_w, grid = smoothing.SmoothingState(), 0.0, []
    for x in load:
        grid.append(x - acting_w)
        predicted = None
        if predictor is not None:
            predictor.add(float(x))
            predicted = predictor.ahead_w(lead_ticks)
        tick, state = smoothing.tick(float(x), 0.0, -1e6, 1e6, dt_s, p, state, predicted_w=predicted)
        acting_w = tick.battery_w
    return np.array(grid)


def test_the_predictor_answers_a_periodic_swing_a_tick_ahead_better_than_extrapolation() -> None:
    """A training swing with edges, a battery a tick late: extrapolating the last change leaves
    the edges on the grid; the predictor, fitted on the swing's own history, anticipates them."""
    dt = 0.02
    t = np.arange(0, 120, dt)
    load = _training_swing(t)
    settled = slice(round(60 / dt), None)  # once the predictor has history to fit on
    load_rms = _band_rms(load[settled], dt)
    none = _band_rms(_late_grid(load, dt, 0.0, None)[settled], dt)
    linear = _band_rms(_late_grid(load, dt, 1.0, None)[settled], dt)
    predictor = LoadPredictor(taps=50, window=1500, refit=50)
    predicted = _band_rms(_late_grid(load, dt, 1.0, predictor)[settled], dt)
    assert none > 0.2 * load_rms  # a tick late, the edges get through
    assert linear < none
    assert predicted < 0.3 * linear and predicted < 0.05 * load_rms  # anticipated
    assert predictor.modelled and predictor.used == predictor.fits  # the model won every fit
    assert predictor.distrusted == 0  # and never did worse than extrapolation on the swing


def test_the_predictor_predicts_two_ticks_ahead_where_the_loop_is_slower() -> None:
    dt = 0.02
    t = np.arange(0, 90, dt)
    load = _training_swing(t)
    p = LoadPredictor(taps=50, window=1500, refit=50)
    errors, linear_errors = [], []
    for k, x in enumerate(load[:-2]):
        p.add(float(x))
        if k > round(40 / dt):
            errors.append(p.ahead_w(2.0) - load[k + 2])
            linear_errors.append(x + 2 * (x - load[k - 1]) - load[k + 2])
    assert np.sqrt(np.mean(np.square(errors))) < 0.3 * np.sqrt(np.mean(np.square(linear_errors)))


def test_the_predictor_learns_what_the_load_does_and_keeps_extrapolation_where_that_is_exact() -> None:
    """A job's ramp is a straight line: extrapolation is exact and no model is used. A random
    walk has no pattern: the model learns that the last change says nothing of the next
    (extrapolating it would double the error). A steady load gives nothing to fit; a bad
    sample is ignored."""
    p = LoadPredictor(taps=20, window=400, refit=50)
    assert math.isnan(p.ahead_w(1.0))  # nothing seen yet
    for x in np.linspace(1e6, 2e6, 1000):
        p.add(float(x))
    assert p.fits > 0 and not p.modelled and p.ahead_w(2.0) == pytest.approx(2e6 + 2 * 1e6 / 999)
    rng = np.random.default_rng(3)
    walk = 1e6 + np.cumsum(rng.normal(0.0, 5e3, 3000))
    model_err, linear_err = [], []
    for k, x in enumerate(walk[:-1]):
        p.add(float(x))
        if k > 1000:
            model_err.append(p.ahead_w(1.0) - walk[k + 1])
            linear_err.append(2 * x - walk[k - 1] - walk[k + 1])
    assert p.modelled and np.std(model_err) < 0.8 * np.std(linear_err)
    steady = LoadPredictor(taps=20, window=400, refit=50)
    for _ in range(1000):
        steady.add(1e6)
    steady.add(math.nan)
    assert steady.fits > 0 and not steady.modelled and steady.ahead_w(1.0) == 1e6
    steady.reset()
    assert math.isnan(steady.ahead_w(1.0))
    with pytest.raises(ValueError, match="window"):
        LoadPredictor(taps=20, window=40, refit=50)


def test_the_predictor_stops_answering_a_swing_that_a_lever_has_stopped() -> None:
    """The job-steps bench's minute: GPU floors hold a job's swing, are let go for a second (a
    trial of the battery alone) and come back. A fit on a window with that second in it goes on
    predicting the swing after the floors have stopped it; a battery a tick late answering that
    put ~280 kW of phantom swing on the grid (the ramp limit broken). Scored against linear
    extrapolation tick by tick, the model is dropped within a tick or two of doing worse. The
    same where a swing the model was fitted on stops outright."""
    dt = 0.02
    t = np.arange(0, 40, dt)
    floored = 1.88e6 + 1e3 * np.sin(2 * math.pi * 0.5 * t)  # the floors hold the swing: a ripple
    released = _training_swing(np.arange(3.0, 3.8, dt))
    released += floored[-1] - released[0]  # the floors let go for 0.8 s
    back = released[-1] + 1.6e3 * np.arange(1, 151)  # and come back, at the racks' ramp
    load = np.r_[floored, released, back]
    after = slice(floored.size + released.size, None)
    predictor = LoadPredictor(taps=50, window=1500, refit=50)
    grid = _late_grid(load, dt, 1.0, predictor)
    linear = _late_grid(load, dt, 1.0, None)
    assert np.ptp(grid[after]) <= np.ptp(linear[after]) + 1e3  # (was 280 kW against 10 kW)
    assert predictor.distrusted > 0
    swing = _training_swing(np.arange(0, 60, dt))
    load = np.r_[swing, swing[-1] + 1.6e3 * np.arange(1, 101)]
    grid = _late_grid(load, dt, 1.0, LoadPredictor(taps=50, window=1500, refit=50))
    assert np.ptp(grid[swing.size:]) <= np.ptp(_late_grid(load, dt, 1.0, None)[swing.size:])  # (was 2 x)


def test_a_predicted_change_is_never_steeper_than_any_seen() -> None:
    """A load step after a periodic swing: whatever the model makes of it, the prediction moves
    no further a tick than the steepest change in the window it was fitted on."""
    dt = 0.02
    t = np.arange(0, 60, dt)
    load = _training_swing(t)
    p = LoadPredictor(taps=50, window=1500, refit=50)
    for x in load:
        p.add(float(x))
    most = float(np.max(np.abs(np.diff(load[-1550:]))))
    for x in (load[-1] - 600e3, load[-1] - 600e3):  # a checkpoint's dip
        p.add(float(x))
        assert abs(p.ahead_w(1.0) - x) <= most + 1e-6


def test_a_prediction_never_takes_the_battery_past_its_bounds() -> None:
    """The predicted load moves the command, never the envelope: the period's bounds (the units'
    limits, the reserve, the grid's import and export limits) clamp it as before."""
    p = smoothing.SmoothingParams(tau_s=20.0, ramp_w_per_s=None, lead_ticks=1.0)
    _, s = smoothing.tick(1e6, 0.0, -200e3, 300e3, 0.02, p, smoothing.SmoothingState())
    for predicted in (1e9, -1e9, math.nan):
        tick, _ = smoothing.tick(1e6, 0.0, -200e3, 300e3, 0.02, p, s, predicted_w=predicted)
        assert -200e3 <= tick.battery_w <= 300e3
    assert smoothing.tick(1e6, 0.0, -200e3, 300e3, 0.02, p, s, predicted_w=1e9)[0].battery_w == 300e3
    assert smoothing.tick(1e6, 0.0, -200e3, 300e3, 0.02, p, s, predicted_w=-1e9)[0].battery_w == -200e3
