"""The filler load: the last lever, burning what the battery cannot absorb of a drop."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from ems.config import parse_config
from ems.fast_sim import simulate
from ems.model.errors import ConfigError
from ems.model.reasons import Reason
from plant.config import PlantConfig
from policies import smoothing

P = smoothing.SmoothingParams(tau_s=20.0, ramp_w_per_s=None, deadband_w=100.0, filler_max_w=300_000.0)


def test_FILLER_LOAD() -> None:
    """The load drops 400 kW; the battery may charge 100 kW: the filler burns the rest (up to its
    rating), so the grid does not see the drop; as the target follows the load down it burns less."""
    t, s = smoothing.tick(1_000_000, 0.0, -100_000, 100_000, 0.05, P, smoothing.SmoothingState())
    t, s = smoothing.tick(600_000, 0.0, -100_000, 100_000, 0.05, P, s)
    assert t.reason is Reason.FILLER_LOAD and t.battery_w == -100_000
    assert t.filler_w == pytest.approx(300_000 - (1_000_000 - t.grid_target_w), abs=1)  # what's left to hold
    burned = [t.filler_w]
    for _ in range(2000):
        t, s = smoothing.tick(600_000, 0.0, -100_000, 100_000, 0.05, P, s)
        burned.append(t.filler_w)
    assert burned[-1] == 0.0 and all(b >= a - 1e-6 for a, b in zip(burned[1:], burned[:-1], strict=True))


def test_beyond_its_rating_the_rest_goes_to_the_grid_and_a_rise_is_never_its_business() -> None:
    t, s = smoothing.tick(1_000_000, 0.0, -100_000, 100_000, 0.05, P, smoothing.SmoothingState())
    t, _ = smoothing.tick(400_000, 0.0, -100_000, 100_000, 0.05, P, s)
    assert t.filler_w == 300_000 and t.reason is Reason.SMOOTHING_CLIPPED
    t, _ = smoothing.tick(1_600_000, 0.0, -100_000, 100_000, 0.05, P, s)
    assert t.filler_w == 0.0 and t.battery_w == 100_000
    off = smoothing.SmoothingParams(tau_s=20.0, ramp_w_per_s=None, deadband_w=100.0)  # none by default
    t, s = smoothing.tick(1_000_000, 0.0, -100_000, 100_000, 0.05, off, smoothing.SmoothingState())
    t, _ = smoothing.tick(600_000, 0.0, -100_000, 100_000, 0.05, off, s)
    assert t.filler_w == 0.0 and t.reason is Reason.SMOOTHING_CLIPPED


def test_the_filler_answers_the_drop_now_not_the_lead_and_never_lifts_the_grid() -> None:
    """With the core answering the load a tick ahead, a 600 kW drop must not be burned twice:
    the grid stays at or below where it was, never above."""
    lead = smoothing.SmoothingParams(tau_s=20.0, ramp_w_per_s=None, deadband_w=100.0, lead_ticks=1.0,
                                     filler_max_w=1_000_000.0)
    t, s = smoothing.tick(700_000, 0.0, -50_000, 50_000, 0.05, lead, smoothing.SmoothingState())
    grid = []
    for _ in range(200):
        t, s = smoothing.tick(100_000, 0.0, -50_000, 50_000, 0.05, lead, s)
        grid.append(100_000 - t.battery_w + t.filler_w)
    assert max(grid) <= 700_000 + 1.0 and grid[0] == pytest.approx(700_000, abs=2_000)  # the target eases down


def test_the_filler_never_takes_the_grid_past_its_import_limit() -> None:
    t, s = smoothing.tick(1_300_000, 0.0, -100_000, 100_000, 0.05, P, smoothing.SmoothingState())
    t, _ = smoothing.tick(950_000, 0.0, 0.0, 100_000, 0.05, P, s, import_limit_w=1_000_000)
    assert 950_000 - t.battery_w + t.filler_w <= 1_000_000 + 1.0 and t.filler_w == pytest.approx(50_000)


def test_a_fresh_core_starts_from_the_periods_average_not_an_instant_of_the_swing() -> None:
    # the first tick lands on a 1.3 MW crest of a swing around 1.0 MW
    t, _ = smoothing.tick(1_300_000, 0.0, -1e6, 1e6, 0.05, P, smoothing.SmoothingState(), start_load_w=1_000_000)
    assert t.grid_target_w == pytest.approx(1_000_000) and t.battery_w == pytest.approx(300_000)


def test_the_load_bank_stops_when_nobody_writes_its_setpoint() -> None:
    from plant.config import SimFillerConfig
    from plant.filler import FillerLoad

    f = FillerLoad(SimFillerConfig(rated_power_w=500_000, response_s=0.1, watchdog_s=5.0))
    f.command(200_000, 0.0)
    f.step(1.0, 1.0)
    assert f.power_w == 200_000
    f.step(4.9, 3.9)
    assert f.power_w == 200_000  # within its watchdog
    f.step(5.2, 0.3)
    assert f.power_w == 0.0 and f.setpoint_w == 0.0 and f.watchdog_trips == 1


LIMIT_W = 320_000.0


def _site(filler: bool, *, device: bool = True) -> dict[str, object]:
    site: dict[str, object] = {
        "site": "filler", "control": {"period_s": 1.0},
        "meter": {"port": 20000, "profile": "meter_v1", "average_s": 1.0},
        "bess_units": [{"id": "bess-1", "bms": {"port": 20001, "profile": "bms_v1"},
                        "pcs": {"port": 20002, "profile": "pcs_v1"}}],
        "racks": {"rows": 1, "racks_per_row": 16, "nameplate_w": 40_000.0},
        "policies": {"smoothing": {"rate_hz": 10, "filler": filler, "gpu": False}},
        "grid_connection": {"ramp_limit_w": LIMIT_W, "ramp_window_s": 60.0}}
    if device:
        site["filler"] = {"port": 20003, "profile": "filler_v1"}
    return site


def test_the_filler_must_be_on_the_site_to_be_allowed() -> None:
    with pytest.raises(ConfigError, match="filler needs a filler device"):
        parse_config(_site(True, device=False))
    assert parse_config(_site(False, device=False)).filler is None


def _falling_violations(filler: bool) -> tuple[int, int, float]:
    plant = PlantConfig.model_validate({
        "seed": 3, "pue": 1.0, "filler": {"rated_power_w": 600_000, "response_s": 0.1},
        "bess": [{"capacity_wh": 200e3, "rated_power_w": 50e3, "initial_soc": 0.5, "heartbeat_timeout_s": 0.0}],
        "racks": {"model": "training", "racks_per_job": 16, "swing_low_fraction": 0.9, "swing_high_fraction": 0.9,
                  "mean_job_s": 600.0, "mean_idle_s": 300.0, "ramp_s": 1.0, "checkpoint_every_s": 1e6}})
    r = simulate(parse_config(_site(filler)), plant, 2_400.0, announce_jobs=False)
    per_s = round(1 / r.tick_s)

    def falling(w: np.ndarray) -> int:
        """Seconds at which the 1-s average had fallen more than the limit below its highest of the
        minute before (a sliding window: a fall across a minute boundary counts)."""
        sec = w[: w.size // per_s * per_s].reshape(-1, per_s).mean(axis=1)
        return sum(int(sec[i - 60:i].max() - sec[i] > LIMIT_W) for i in range(120, sec.size))
    return falling(r.grid_w), falling(r.load_w), r.filler_load_wh


def test_a_job_that_stops_at_once_is_held_to_the_ramp_limit_by_the_filler() -> None:
    """A 480 kW job stops within a second; the battery can charge 50 kW. With the filler the
    grid never falls faster than the limit; without it, each stop goes through."""
    grid, load, burned_wh = _falling_violations(filler=True)
    assert load >= 2 * 60 and grid == 0 and burned_wh > 0
    grid_without, _, burned_wh = _falling_violations(filler=False)
    assert grid_without >= 2 and burned_wh == 0.0


async def test_the_fast_loop_stands_down_at_once_when_told_the_site_islanded() -> None:
    """No servers listen: a tick that runs tries to read and fails. Told to stand down (the
    failover fast path islanded the site), the armed loop does not tick at all."""
    import asyncio

    from ems.clock import ScaledClock
    from ems.smoothing_loop import Armed, SmoothingLoop, smoothing_params

    cfg = parse_config(_site(False, device=False))
    clock = ScaledClock(1.0)
    results = {}
    for islanded in (True, False):
        loop = SmoothingLoop(cfg, clock, smoothing_params(cfg), 20.0)
        loop.stand_down = lambda islanded=islanded: islanded
        task = asyncio.create_task(loop.run())
        for _ in range(10):  # re-armed as a period would
            loop.arm(Armed(clock.monotonic(), {"bess-1": 0.0}, {"bess-1": (-1e5, 1e5)}, None, None))
            await asyncio.sleep(0.03)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        results[islanded] = loop.read_failures
    assert results[True] == 0 and results[False] > 0
