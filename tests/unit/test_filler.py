"""The filler load: the last lever, burning what the battery cannot absorb of a drop."""

from __future__ import annotations

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
    per_min = round(60 / r.tick_s)

    def falling(w: np.ndarray) -> int:
        m = w[: w.size // per_min * per_min].reshape(-1, per_min)
        return int(((m.max(axis=1) - m.min(axis=1) > LIMIT_W) & (m[:, -1] < m[:, 0])).sum())
    return falling(r.grid_w), falling(r.load_w), r.filler_load_wh


def test_a_job_that_stops_at_once_is_held_to_the_ramp_limit_by_the_filler() -> None:
    """A 480 kW job stops within a second; the battery can charge 50 kW. With the filler the
    grid never falls faster than the limit; without it, each stop goes through."""
    grid, load, burned_wh = _falling_violations(filler=True)
    assert load >= 2 and grid == 0 and burned_wh > 0
    grid_without, _, burned_wh = _falling_violations(filler=False)
    assert grid_without >= 2 and burned_wh == 0.0
