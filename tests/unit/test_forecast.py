"""Load and PV forecasts from history (ems/forecast.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ems.forecast import DAY_S, WEEK_S, ForecastInputError, load_forecast, pv_forecast

STEP_S = 900.0
PER_DAY = int(DAY_S / STEP_S)
PER_WEEK = int(WEEK_S / STEP_S)


def weekly_shape(n: int) -> np.ndarray:
    """A load that repeats every week: a daily arch plus a weekday/weekend step."""
    k = np.arange(n)
    day = 1e6 + 5e5 * np.sin(2 * np.pi * (k % PER_DAY) / PER_DAY)
    weekend = ((k // PER_DAY) % 7) >= 5
    return np.where(weekend, 0.7 * day, day)


def test_a_weekly_load_is_forecast_exactly() -> None:
    series = weekly_shape(5 * PER_WEEK)
    history, future = series[: 4 * PER_WEEK], series[4 * PER_WEEK: 4 * PER_WEEK + 2 * PER_DAY]
    np.testing.assert_allclose(load_forecast(history, STEP_S, future.size), future, rtol=1e-12)


def test_mean_over_weeks_and_a_near_term_correction_that_fades() -> None:
    week = weekly_shape(PER_WEEK)
    history = np.concatenate([week, week + 100e3])  # second week ran 100 kW higher throughout
    fc = load_forecast(history, STEP_S, PER_DAY, correction_tau_s=4 * 3600.0)
    # profile: mean of the two weeks (+50 kW); the last hour ran 100 kW above the first
    # week's value for it, which is what the profile said then -> +100 kW fading in 4 h
    fade = np.exp(-(np.arange(PER_DAY) + 0.5) * STEP_S / (4 * 3600.0))
    np.testing.assert_allclose(fc, week[:PER_DAY] + 50e3 + 100e3 * fade, rtol=1e-12)


def test_without_a_week_of_history_the_same_time_of_day_is_used() -> None:
    history = weekly_shape(3 * PER_DAY)  # Mon-Wed
    fc = load_forecast(history, STEP_S, PER_DAY, correction_tau_s=0.0)
    np.testing.assert_allclose(fc, history[:PER_DAY], rtol=1e-12)  # days are alike on weekdays


def test_with_less_than_a_day_the_last_value_persists() -> None:
    fc = load_forecast(np.full(10, 2e6), STEP_S, 8)
    np.testing.assert_allclose(fc, 2e6)


def test_empty_history_forecasts_zero() -> None:
    np.testing.assert_array_equal(load_forecast([], STEP_S, 4), np.zeros(4))


@pytest.mark.parametrize(("history", "step_s", "n"), [
    (np.ones(10), 7.0, 4),  # 7 s does not divide a week
    (np.ones(10), STEP_S, 0),
    (np.array([1.0, np.nan]), STEP_S, 4),
])
def test_bad_input_is_refused(history, step_s, n) -> None:
    with pytest.raises(ForecastInputError):
        load_forecast(history, step_s, n)


def test_pv_is_the_mean_of_the_last_days_at_the_same_time() -> None:
    day = np.clip(np.sin(np.pi * (np.arange(PER_DAY) - 24) / 48), 0, None) * 3e5
    history = np.concatenate([day, 0.5 * day, day])
    np.testing.assert_allclose(pv_forecast(history, STEP_S, PER_DAY, days=3), day * 2.5 / 3)
    np.testing.assert_array_equal(pv_forecast(history[:10], STEP_S, 4), np.zeros(4))
