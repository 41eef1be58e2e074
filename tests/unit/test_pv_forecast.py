"""PV ahead from the clear sky at the site, scaled by what was measured (ems/pv_forecast.py),
and in the planner's net-load forecast where the site file says where the PV is."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from ems.forecast import pv_forecast
from ems.pv_forecast import SiteLocation, clear_sky_w_m2, pv_clear_sky_forecast

SITE = SiteLocation(37.4, -122.1, 10.0, "America/Los_Angeles")
STEP_S = 900.0
DAY = 96


def local_s(*args: int) -> float:
    return (dt.datetime(*args) - dt.datetime(1970, 1, 1)).total_seconds()  # type: ignore[arg-type]


def test_the_clear_sky_peaks_at_solar_noon_and_is_dark_at_night() -> None:
    sky = clear_sky_w_m2(local_s(2026, 6, 21), 3600.0, 24, SITE)
    assert sky[:5].max() == 0.0 and sky[21:].max() == 0.0
    assert int(np.argmax(sky)) in (12, 13)  # 13:10 solar noon under daylight saving time
    winter = clear_sky_w_m2(local_s(2026, 12, 21), 3600.0, 24, SITE)
    assert winter.max() < 0.8 * sky.max() and (winter > 0).sum() < (sky > 0).sum()


def test_the_measured_scale_and_todays_weather_carry_into_the_forecast() -> None:
    start = local_s(2026, 6, 21, 12)
    sky_past = clear_sky_w_m2(start - 3 * 86_400, STEP_S, 3 * DAY, SITE)
    history = 2000.0 * sky_past  # a 2 MW-ish array on clear days
    ahead = pv_clear_sky_forecast(history, start, STEP_S, DAY, SITE)
    assert ahead is not None
    truth = 2000.0 * clear_sky_w_m2(start, STEP_S, DAY, SITE)
    assert np.abs(ahead - truth).max() < 0.02 * truth.max()
    # a cloudy morning: the next hours follow today's factor, tomorrow the days' again
    cloudy = history.copy()
    cloudy[-12:] *= 0.4
    ahead = pv_clear_sky_forecast(cloudy, start, STEP_S, DAY, SITE)
    assert ahead is not None
    assert ahead[0] < 0.6 * truth[0] and ahead[DAY - 8 - 48:].max() > 0.6 * truth.max()
    assert pv_clear_sky_forecast(np.zeros(3 * DAY), start, STEP_S, DAY, SITE) is None  # nothing to scale


def test_steps_not_measured_are_left_out_not_spread_over_the_forecast() -> None:
    start = local_s(2026, 6, 21, 12)
    history = 2000.0 * clear_sky_w_m2(start - 3 * 86_400, STEP_S, 3 * DAY, SITE)
    gaps = history.copy()
    gaps[[40, 150, -3]] = np.nan  # a reading lost in daylight, today's among them
    ahead, whole = pv_clear_sky_forecast(gaps, start, STEP_S, DAY, SITE), pv_clear_sky_forecast(
        history, start, STEP_S, DAY, SITE)
    assert ahead is not None and whole is not None and np.isfinite(ahead).all()
    assert np.abs(ahead - whole).max() < 0.01 * whole.max()
    assert pv_clear_sky_forecast(np.full(3 * DAY, np.nan), start, STEP_S, DAY, SITE) is None


def test_the_clear_sky_beats_the_same_time_of_day_over_a_month_of_changing_weather() -> None:
    """Synthetic truth (no PV series in ../shared/data): the clear sky over the site times a
    day's cloudiness that drifts from day to day, with passing clouds inside the day."""
    rng = np.random.default_rng(7)
    start0 = local_s(2026, 3, 1)
    days = 40
    sky = clear_sky_w_m2(start0, STEP_S, days * DAY, SITE)
    cloud_day = np.clip(0.7 + np.cumsum(rng.normal(0, 0.12, days)) * 0.5, 0.2, 1.0)
    passing = np.clip(1.0 - np.abs(rng.normal(0, 0.15, days * DAY)), 0.3, 1.0)
    pv = 1500.0 * sky * np.repeat(cloud_day, DAY) * passing
    err_sky, err_naive = [], []
    for d in range(7, days - 1):
        for hour in (6, 9, 12):  # re-planned in the morning and at noon: the next 12 hours
            i = d * DAY + hour * 4
            start = start0 + i * STEP_S
            truth = pv[i:i + 48]
            sky_ahead = pv_clear_sky_forecast(pv[:i], start, STEP_S, 48, SITE)
            assert sky_ahead is not None
            err_sky.append(np.abs(sky_ahead - truth).mean())
            err_naive.append(np.abs(pv_forecast(pv[:i], STEP_S, 48) - truth).mean())
    print(f"PV 12 h ahead, MAE: clear sky {np.mean(err_sky):.0f} W, same time of day {np.mean(err_naive):.0f} W")
    assert np.mean(err_sky) < 0.9 * np.mean(err_naive)  # the shape and today's weather, not last days' average


def test_the_planner_uses_the_clear_sky_where_the_site_says_where_it_is() -> None:
    from ems.planning.builder import PlanBuilder, PlannerSettings
    from ems.tariff import load_urdb
    from tests.unit.test_tariff_signals import URDB

    if not URDB.exists():
        pytest.skip("shared data not present")
    tariff = load_urdb(URDB)  # the forecast does not price anything; a builder needs one
    base = PlannerSettings(step_s=STEP_S, horizon_steps=DAY, soc_min=0.1, soc_max=0.9, reserve_soc=0.0,
                           charge_efficiency=0.95, discharge_efficiency=0.95, wear_cost_per_kwh=0.0)
    start = local_s(2026, 6, 21, 12)
    t0 = start - 3 * 86_400
    sky = clear_sky_w_m2(t0, STEP_S, 3 * DAY, SITE)
    built = {}
    for name, where in (("naive", None), ("sky", SITE)):
        b = PlanBuilder(tariff, PlannerSettings(**{**base.__dict__, "pv_location": where}))
        for i in range(3 * DAY):
            pv_w = 1000.0 * sky[i] * (0.3 if i >= 3 * DAY - 8 else 1.0)  # a cloudy last two hours
            b.observe(t0 + (i + 1) * STEP_S, STEP_S, 800_000.0 - pv_w, pv_w)
        built[name] = b._net_forecast(b.load.complete_until(start), start, DAY)
    # the cloud now: less PV expected in the next hour, so more net load than the days' average says
    assert built["sky"][0] > built["naive"][0] + 100_000.0


def test_a_forecast_sky_with_clouds_ahead_lowers_the_pv_where_the_clear_sky_would_not() -> None:
    # a weather forecast's irradiance (ems/feeds/): the clear sky over the past days, tomorrow
    # afternoon under clouds (40 %), nothing known beyond tomorrow (NaN: the clear sky there)
    start = local_s(2026, 6, 21, 0)
    cloud_from, cloud_to = start + 86_400 + 12 * 3600, start + 86_400 + 18 * 3600

    def sky_at(t0: float, step_s: float, n: int) -> np.ndarray:
        clear = clear_sky_w_m2(t0, step_s, n, SITE)
        mids = t0 + (np.arange(n) + 0.5) * step_s
        out = np.where((mids >= cloud_from) & (mids < cloud_to), 0.4 * clear, clear)
        return np.where(mids >= start + 2 * 86_400, np.nan, out)

    history = 2000.0 * clear_sky_w_m2(start - 3 * 86_400, STEP_S, 3 * DAY, SITE)
    plain = pv_clear_sky_forecast(history, start, STEP_S, 3 * DAY, SITE)
    forecast = pv_clear_sky_forecast(history, start, STEP_S, 3 * DAY, SITE, sky_at=sky_at)
    assert plain is not None and forecast is not None
    cloudy = slice(DAY + 48, DAY + 72)  # tomorrow 12:00-18:00
    np.testing.assert_allclose(forecast[cloudy], 0.4 * plain[cloudy], rtol=0.02)
    np.testing.assert_allclose(forecast[:DAY], plain[:DAY], rtol=0.02)  # today: clear in both
    np.testing.assert_allclose(forecast[2 * DAY:], plain[2 * DAY:], rtol=0.02)  # beyond it: the clear sky
