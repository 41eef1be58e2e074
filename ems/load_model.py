"""A learned load forecast that sees the day so far and the weather: P50 and P90.

The naive forecast (ems/forecast.py) is the mean of the same hour of the week over the
last weeks. This model keeps that profile as its base and learns, with scikit-learn's
HistGradientBoostingRegressor (quantile loss, one model per quantile), how far the load at
a target step will run from its profile, given

* the lead (hours ahead) and the target's hour of day and day of week;
* how the day so far, the last hour and the last 24 h ran against their own profile, the
  last hour's slope, and the same time yesterday against the profile (a hot day runs hot
  all afternoon; a Monday after a holiday starts low);
* where a temperature series is given: the target's temperature and cooling degrees
  (facility overhead follows the weather), and the temperature now.

Targets and the level features are ratios to the profile, so a model trained on a few
weeks carries over to a load of another size or season. The model is refitted every
`refit_s` on the last `train_weeks` of history (issue times every hour, every
`lead_stride`-th lead), which keeps it fast enough to run at every plan: fitting takes
about a second, a forecast a few ms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ems.forecast import DAY_S, WEEK_S, ForecastInputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# temperature in °C at naive local seconds (NaN where unknown)
TemperatureAt = Callable[[FloatArray], FloatArray]

COOLING_BASE_C = 18.0
_POOLS: Any = None  # threadpoolctl's ThreadpoolController, made on first use


def _one_thread() -> Any:
    """A context on one OpenMP thread: small data, where threads cost more than they give and
    the cores are shared. The controller is made once (making one per call costs ~3 ms)."""
    global _POOLS
    if _POOLS is None:
        from threadpoolctl import ThreadpoolController

        _POOLS = ThreadpoolController()
    return _POOLS.limit(limits=1)
_EPOCH_DOW = 3  # 1970-01-01 was a Thursday; Monday = 0


@dataclass(frozen=True)
class QuantileForecast:
    p50_w: FloatArray
    p90_w: FloatArray


@dataclass(frozen=True)
class TemperatureSeries:
    """A regular temperature series in naive local time (measured, or a weather forecast)."""

    start_local_s: float
    step_s: float
    values_c: FloatArray

    def at(self, local_s: FloatArray) -> FloatArray:
        idx = np.floor((np.asarray(local_s) - self.start_local_s) / self.step_s).astype(np.int64)
        ok = (idx >= 0) & (idx < self.values_c.size)
        out = np.full(idx.shape, np.nan)
        out[ok] = self.values_c[idx[ok]]
        return out


def profile_all(x: FloatArray, n_total: int, week_steps: int, weeks: int) -> FloatArray:
    """For every index t < n_total: mean of x[t - k * week] for k = 1..weeks over the
    indices that exist (NaN where none does): the naive forecast of step t."""
    t = np.arange(n_total)
    total = np.zeros(n_total)
    count = np.zeros(n_total)
    for k in range(1, weeks + 1):
        idx = t - k * week_steps
        ok = (idx >= 0) & (idx < x.size)
        total[ok] += x[idx[ok]]
        count[ok] += 1
    out: FloatArray = np.divide(total, count, out=np.full(n_total, np.nan), where=count > 0)
    return out


def _window_mean(cum: FloatArray, end: IntArray, length: IntArray) -> FloatArray:
    """Mean of the window [end - length, end) from a cumulative sum with cum[0] = 0."""
    start = np.maximum(end - length, 0)
    n = end - start
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (cum[end] - cum[start]) / np.maximum(n, 1), np.nan)


def _ratio(a: FloatArray, b: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.abs(b) > 1e-9, a / b - 1.0, np.nan)


FEATURES = ("lead_h", "hour", "dow", "issue_hour", "today_ratio", "hour_ratio", "day_ratio",
            "slope", "yesterday_ratio", "profile_shape", "temp_c", "cooling_c", "temp_now_c")


def features(x: FloatArray, prof: FloatArray, issue: IntArray, lead: IntArray, start_local_s: float,
             step_s: float, temperature: TemperatureAt | None) -> FloatArray:
    """One row per (issue index, lead): what is known at the issue index (x before it only)
    about the target index issue + lead. `prof` covers every target index."""
    per_h = max(1, round(3600.0 / step_s))
    per_day = round(DAY_S / step_s)
    target = issue + lead
    issue_s: FloatArray = start_local_s + issue.astype(np.float64) * step_s
    target_s: FloatArray = start_local_s + target.astype(np.float64) * step_s
    cx = np.concatenate([[0.0], np.cumsum(x)])
    cp = np.concatenate([[0.0], np.nancumsum(prof[: x.size])])
    since_midnight = np.round((issue_s % DAY_S) / step_s).astype(np.int64)
    hour = np.full(issue.shape, per_h, dtype=np.int64)
    day = np.full(issue.shape, per_day, dtype=np.int64)

    def run_ratio(length: IntArray, end: IntArray) -> FloatArray:
        return _ratio(_window_mean(cx, end, length), _window_mean(cp, end, length))

    last_h = _window_mean(cx, issue, hour)
    prev_h = _window_mean(cx, issue - per_h, hour)
    ytd = target - per_day
    ok_y = (ytd >= 0) & (ytd < issue)  # known at the issue time only
    yesterday = np.full(target.shape, np.nan)
    yesterday[ok_y] = x[ytd[ok_y]]
    week_mean = _window_mean(cp, issue, np.full(issue.shape, 7 * per_day, dtype=np.int64))
    cols = [
        lead * step_s / 3600.0,
        (target_s % DAY_S) / 3600.0,
        ((target_s // DAY_S) + _EPOCH_DOW) % 7,
        (issue_s % DAY_S) / 3600.0,
        np.where(since_midnight > 0, run_ratio(since_midnight, issue), np.nan),
        run_ratio(hour, issue),
        run_ratio(day, issue),
        _ratio(last_h, prev_h),
        _ratio(yesterday, prof[target]),
        _ratio(prof[target], week_mean),
    ]
    if temperature is not None:  # without a series the columns are left out, not NaN
        temp_t = temperature(target_s)
        cols += [temp_t, np.maximum(temp_t - COOLING_BASE_C, 0.0), temperature(issue_s - step_s / 2)]
    return np.column_stack(cols).astype(np.float64)


class LoadModel:
    """P50/P90 load forecast from the history so far (see module doc).

    `update(history_w, end_local_s)` refits when due; `forecast(...)` then predicts. Until
    the first fit (less than `min_train_days` of history with a profile) there is no model
    and `forecast` returns None: the caller keeps the naive forecast."""

    def __init__(self, step_s: float, *, weeks: int = 4, train_weeks: int = 8, horizon_steps: int = 96,
                 refit_s: float = 7 * DAY_S, lead_stride: int = 4, min_train_days: float = 7.0,
                 max_iter: int = 100, quantiles: tuple[float, float] = (0.5, 0.9),
                 temperature: TemperatureSeries | None = None) -> None:
        if step_s <= 0 or DAY_S % step_s:
            raise ForecastInputError(f"step_s={step_s} must divide a day")
        self.step_s = step_s
        self.weeks = weeks
        self.week_steps = round(WEEK_S / step_s)
        self.train_weeks = train_weeks
        self.horizon_steps = horizon_steps
        self.refit_s = refit_s
        self.lead_stride = max(1, lead_stride)
        self.min_train_days = min_train_days
        self.max_iter = max_iter
        self.quantiles = quantiles
        self.temperature = temperature
        self.models: tuple[Any, Any] | None = None  # HistGradientBoostingRegressor for the P50 and the P90
        self.fitted_at_s: float | None = None
        self.fits = 0
        self.p90_shift = 0.0  # ratio added to the P90 (see _calibrate)

    @property
    def keep_steps(self) -> int:
        """History the model needs: the training window plus the profile's weeks before it."""
        return (self.train_weeks + self.weeks) * self.week_steps + self.horizon_steps

    @property
    def predict_steps(self) -> int:
        """History a forecast reads: the profile's weeks and a day and a few hours more."""
        return self.weeks * self.week_steps + round(DAY_S / self.step_s) + 8 * round(3600.0 / self.step_s)

    def _temp(self) -> TemperatureAt | None:
        return None if self.temperature is None else self.temperature.at

    def due(self, end_local_s: float) -> bool:
        return self.fitted_at_s is None or end_local_s - self.fitted_at_s >= self.refit_s

    def update(self, history_w: npt.ArrayLike, end_local_s: float) -> bool:
        """Refit on the history (ending at `end_local_s`) when due; True when a model is in place."""
        if self.due(end_local_s):
            self.fit(history_w, end_local_s)
        return self.models is not None

    def training_rows(self, x: FloatArray, start_local_s: float) -> tuple[FloatArray, FloatArray, IntArray]:
        """Features, targets (ratio to the profile) and each row's issue index."""
        prof = profile_all(x, x.size, self.week_steps, self.weeks)
        per_h = max(1, round(3600.0 / self.step_s))
        first = max(1, math.ceil(((-start_local_s) % 3600.0) / self.step_s))
        issues = np.arange(first, x.size - 1, per_h, dtype=np.int64)
        issues = issues[issues >= self.week_steps]  # the profile exists from a week in
        leads = np.arange(0, self.horizon_steps, self.lead_stride, dtype=np.int64)
        ii, ll = (a.ravel() for a in np.meshgrid(issues, leads, indexing="ij"))
        keep = ii + ll < x.size
        ii, ll = ii[keep], ll[keep]
        y = _ratio(x[ii + ll], prof[ii + ll])
        ok = np.isfinite(y)
        return features(x, prof, ii[ok], ll[ok], start_local_s, self.step_s, self._temp()), y[ok], ii[ok]

    def fit(self, history_w: npt.ArrayLike, end_local_s: float) -> None:
        x = np.asarray(history_w, dtype=np.float64).reshape(-1)[-self.keep_steps:]
        self.fitted_at_s = end_local_s
        if x.size * self.step_s < (self.min_train_days * DAY_S + WEEK_S) or not np.all(np.isfinite(x)):
            return
        xs, y, issue = self.training_rows(x, end_local_s - x.size * self.step_s)
        if y.size < 100:
            return
        if self.models is not None:
            self._calibrate(xs, y, issue >= x.size - round(self.refit_s / self.step_s))
        # imported here: scikit-learn takes a second to load, and only a learned forecast needs it
        from sklearn.ensemble import HistGradientBoostingRegressor

        with _one_thread():
            models = tuple(
                HistGradientBoostingRegressor(loss="quantile", quantile=q, max_iter=self.max_iter, learning_rate=0.1,
                                              max_leaf_nodes=31, min_samples_leaf=40, early_stopping=False,
                                              random_state=0).fit(xs, y)
                for q in self.quantiles)
        self.models = (models[0], models[1])
        self.fits += 1

    def _calibrate(self, xs: FloatArray, y: FloatArray, recent: npt.NDArray[np.bool_]) -> None:
        """Widen (or narrow) the P90 by what the model in force needed on the forecasts made
        since it was fitted, which it had not seen: quantile models fitted on a few weeks are
        too narrow when the season turns. Half the new estimate, half the old."""
        if self.models is None or recent.sum() < 100:
            return
        with _one_thread():
            raw = self.models[1].predict(xs[recent])
        need = float(np.quantile(y[recent] - raw, self.quantiles[1]))
        self.p90_shift = 0.5 * self.p90_shift + 0.5 * need

    def forecast(self, history_w: npt.ArrayLike, end_local_s: float, n_steps: int) -> QuantileForecast | None:
        """P50 and P90 of the next `n_steps` steps after the history (None before a fit)."""
        if self.models is None:
            return None
        if n_steps < 1:
            raise ForecastInputError("n_steps must be >= 1")
        x = np.asarray(history_w, dtype=np.float64).reshape(-1)[-self.predict_steps:]
        if x.size == 0 or not np.all(np.isfinite(x)):
            raise ForecastInputError("history is empty or contains NaN or infinite values")
        prof = profile_all(x, x.size + n_steps, self.week_steps, self.weeks)
        base = prof[x.size:]
        base = np.where(np.isfinite(base), base, x[-1])
        issue = np.full(n_steps, x.size, dtype=np.int64)
        lead = np.arange(n_steps, dtype=np.int64)
        start = end_local_s - x.size * self.step_s
        xs = features(x, np.where(np.isfinite(prof), prof, x[-1]), issue, lead, start, self.step_s, self._temp())
        with _one_thread():
            lo, hi = (m.predict(xs) for m in self.models)
        p50 = base * (1.0 + lo)
        p90 = np.maximum(base * (1.0 + hi + self.p90_shift), p50)  # quantile models can cross; P90 >= P50
        return QuantileForecast(p50, p90)

    def forecast_many(self, series_w: FloatArray, start_local_s: float, issues: IntArray,
                      n_steps: int) -> tuple[FloatArray, FloatArray]:
        """Forecasts issued at many indices of one series at once (walk-forward evaluation):
        rows issue-major, each of `n_steps` leads. Uses only series[:issue] for each."""
        assert self.models is not None
        prof = profile_all(series_w, series_w.size + n_steps, self.week_steps, self.weeks)
        ii, ll = (a.ravel() for a in np.meshgrid(issues, np.arange(n_steps, dtype=np.int64), indexing="ij"))
        fill = np.where(np.isfinite(prof), prof, 0.0)
        xs = features(series_w, fill, ii, ll, start_local_s, self.step_s, self._temp())
        base = fill[ii + ll]
        with _one_thread():
            lo, hi = (m.predict(xs) for m in self.models)
        p50 = base * (1.0 + lo)
        p90 = np.maximum(base * (1.0 + hi + self.p90_shift), p50)
        return p50.reshape(issues.size, n_steps), p90.reshape(issues.size, n_steps)

