"""PV forecast from pvlib's clear sky scaled by the metered PV (ems/pv_clearsky.py)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from ems.forecast import ForecastInputError, pv_forecast
from ems.pv_clearsky import SiteSun, clearsky_pv_forecast

PHOENIX = SiteSun(33.45, -111.98, "America/Phoenix")
STEP_S = 900.0
PER_DAY = 96


def _local_s(dt: datetime) -> float:
    return (dt - datetime(1970, 1, 1)).total_seconds()


def test_clear_sky_is_zero_at_night_and_peaks_near_solar_noon() -> None:
    ghi = PHOENIX.clearsky_ghi(_local_s(datetime(2018, 6, 21)), STEP_S, PER_DAY)
    assert ghi[:16].max() == 0.0 and ghi[-12:].max() == 0.0  # before 4:00, after 21:00
    noon = int(np.argmax(ghi)) * STEP_S / 3600.0
    assert 12.0 <= noon <= 13.0  # Phoenix is 7.5 degrees west of its zone's meridian: solar noon ~12:30
    assert 900 < ghi.max() < 1200


def test_the_forecast_is_the_clear_sky_times_what_the_plant_made_of_it() -> None:
    start = _local_s(datetime(2018, 6, 18))
    sky = PHOENIX.clearsky_ghi(start, STEP_S, 4 * PER_DAY)
    made = 0.6 * 2000.0 * sky  # a plant of 2,000 m2-equivalent at 60 %, three clear days
    fc = clearsky_pv_forecast(made[: 3 * PER_DAY], start + 3 * 86400.0, STEP_S, PER_DAY, PHOENIX)
    np.testing.assert_allclose(fc, made[3 * PER_DAY:], rtol=1e-9, atol=1e-6)


def test_a_season_later_the_sun_moves_and_the_profile_does_not() -> None:
    """Three days in late September, forecast for the first of October: the clear-sky
    forecast shortens the day with the sun; the profile repeats September's morning."""
    start = _local_s(datetime(2018, 9, 20))
    days = 11
    sky = PHOENIX.clearsky_ghi(start, STEP_S, days * PER_DAY)
    made = 0.7 * 1000.0 * sky
    hist, actual = made[: (days - 1) * PER_DAY], made[(days - 1) * PER_DAY:]
    ours = clearsky_pv_forecast(hist, start + (days - 1) * 86400.0, STEP_S, PER_DAY, PHOENIX)
    naive = pv_forecast(hist, STEP_S, PER_DAY)
    assert np.abs(ours - actual).sum() < 0.2 * np.abs(naive - actual).sum()


def test_no_daylight_in_the_history_forecasts_nothing_and_bad_input_is_refused() -> None:
    night = _local_s(datetime(2018, 6, 21, 22))
    assert clearsky_pv_forecast(np.zeros(4), night, STEP_S, 8, PHOENIX).max() == 0.0
    with pytest.raises(ForecastInputError):
        clearsky_pv_forecast(np.array([1.0, np.nan]), night, STEP_S, 4, PHOENIX)


def test_latitude_needs_longitude() -> None:
    from pathlib import Path

    from ems.backtest.config import load_backtest_config, parse_backtest_config
    from ems.model.errors import ConfigError

    data = load_backtest_config(Path(__file__).resolve().parents[2] / "config" / "backtest-site.yaml").model_dump(
        mode="json", exclude_none=True)
    data["policies"]["arbitrage"]["latitude"] = 33.4
    with pytest.raises(ConfigError, match="latitude"):
        parse_backtest_config(data)


def test_the_planner_nets_the_clear_sky_pv_forecast_where_the_site_is_located() -> None:
    from pathlib import Path

    from ems.planning.builder import BatteryNow, PlanBuilder, PlannerSettings
    from ems.tariff import load_urdb

    urdb = Path(__file__).resolve().parents[3] / "shared" / "data" / "tariffs" / "sam_urdbv7.json"
    if not urdb.exists():
        pytest.skip("shared data not present")
    start = _local_s(datetime(2018, 9, 20))
    days = 11
    pv = 0.7 * 1000.0 * PHOENIX.clearsky_ghi(start, STEP_S, days * PER_DAY)
    gross = np.full(pv.size, 2e6)

    class NoPeaks:
        def peak_kw(self, key: object) -> float:
            return 0.0

        def tou_peak_kw(self, key: object) -> float:
            return 0.0

    nets = []
    for sun in (None, PHOENIX):
        s = PlannerSettings(step_s=STEP_S, horizon_steps=PER_DAY, soc_min=0.1, soc_max=0.95, reserve_soc=0.2,
                            charge_efficiency=0.96, discharge_efficiency=0.96, wear_cost_per_kwh=0.01, sun=sun)
        b = PlanBuilder(load_urdb(urdb), s)
        for k in range(pv.size - PER_DAY):
            b.observe(start + (k + 1) * STEP_S, STEP_S, float(gross[k] - pv[k]), float(pv[k]))
        req = b.request(start + (days - 1) * 86400.0, BatteryNow(0.5, 4e6, 2e6, 2e6), NoPeaks())
        nets.append(req.problem.net_load_w)
    want = gross[-PER_DAY:] - pv[-PER_DAY:]
    assert np.abs(nets[1] - want).max() < 1.0  # the clear sky, scaled: exact on clear days
    assert np.abs(nets[0] - want).max() > 10.0  # the profile repeats the days before
