"""Load and PV forecasts from history: same time of week (or day) as before, pure numpy.

A history is a regular series of step averages that ends at "now": its last sample is
the step just before now. A forecast covers the next `n_steps` steps of the same length.

* Load: the mean of the same hour of week over the last `weeks` weeks; where no week of
  history exists yet, the same time of day over the days there are; with no day either,
  the last value. With `envelope_days`, the profile is the higher of that and the mean
  of the same time of day over the last `envelope_days` days: weather moves a load from
  one day to the next more than the weekly average follows, and for a plan that must
  protect a monthly peak, forecasting too low costs far more than too high (the
  battery runs empty before the peak is over). The near term is corrected by how far
  the last hour ran above or below its own profile, fading out with `correction_tau_s`
  (a hot afternoon is likely to stay hot into the evening; tomorrow is the profile
  again).
* PV: the mean of the same time of day over the last `days` days, no correction
  (a cloud now says little about an hour from now).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ems.model.errors import EmsError

FloatArray = npt.NDArray[np.float64]

DAY_S = 86_400
WEEK_S = 7 * DAY_S


class ForecastInputError(EmsError, ValueError):
    """The history or the step cannot be used (the message says which)."""


def _season_steps(season_s: float, step_s: float) -> int:
    m = season_s / step_s
    if step_s <= 0 or abs(m - round(m)) > 1e-9:
        raise ForecastInputError(f"step_s={step_s} must divide {season_s:g} s")
    return round(m)


def seasonal_mean(history: FloatArray, offsets: npt.NDArray[np.int64], season_steps: int,
                  seasons: int) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Mean of history[offset - k * season] for k = 1..seasons, per offset (offsets count
    from the end of history: 0 is the first step after it). Returns (mean, any found)."""
    h = history.size
    # all seasons at once (one index array, k = 1..seasons down the rows); the rows are summed
    # in k order, as adding them one by one would
    idx = h + offsets[None, :] - np.arange(1, seasons + 1, dtype=np.int64)[:, None] * season_steps
    ok = (idx >= 0) & (idx < h)
    if h == 0:
        return np.zeros(offsets.size), np.zeros(offsets.size, dtype=bool)
    total = np.where(ok, history.take(idx, mode="clip"), 0.0).sum(axis=0)
    count = ok.sum(axis=0)
    found = count > 0
    return np.divide(total, count, out=np.zeros(offsets.size), where=found), found


def _means(vals: FloatArray, ok: npt.NDArray[np.bool_], a: int, b: int) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Rows a..b of gathered values as `seasonal_mean` gives them: summed in row order."""
    total = vals[a:b].sum(axis=0)
    count = ok[a:b].sum(axis=0)
    found = count > 0
    return np.divide(total, count, out=np.zeros(total.size), where=found), found


def _profile(history: FloatArray, offsets: npt.NDArray[np.int64], step_s: float,
             weeks: int, days: int, envelope_days: int) -> FloatArray:
    day_steps = _season_steps(DAY_S, step_s)
    week_steps = _season_steps(WEEK_S, step_s)
    h = history.size
    if h == 0:
        return np.zeros(offsets.size)
    # seasonal_mean's three gathers (same hour of week, of day, the last days' envelope) in one:
    # rows k = 1..weeks, then 1..days, then 1..envelope_days
    back = np.concatenate([np.arange(1, weeks + 1) * week_steps, np.arange(1, days + 1) * day_steps])
    idx = h + offsets[None, :] - back[:, None]
    if envelope_days > 0:
        # same time on the last days; a step further ahead than a day uses the day before
        env = h + (offsets % day_steps)[None, :] - (np.arange(1, envelope_days + 1) * day_steps)[:, None]
        idx = np.concatenate([idx, env])
    ok = (idx >= 0) & (idx < h)
    vals = np.where(ok, history.take(idx, mode="clip"), 0.0)
    week, found_w = _means(vals, ok, 0, weeks)
    day, found_d = _means(vals, ok, weeks, weeks + days)
    profile = np.where(found_w, week, np.where(found_d, day, history[-1]))
    if envelope_days > 0:
        recent, found_r = _means(vals, ok, weeks + days, weeks + days + envelope_days)
        profile = np.where(found_r, np.maximum(profile, recent), profile)
    result: FloatArray = profile
    return result


def load_forecast(history_w: npt.ArrayLike, step_s: float, n_steps: int, *, weeks: int = 4,
                  days: int = 7, envelope_days: int = 0, correction_window_s: float = 3600.0,
                  correction_tau_s: float = 4 * 3600.0) -> FloatArray:
    """Hour-of-week profile of the history, corrected in the near term (see module doc)."""
    history = np.asarray(history_w, dtype=np.float64).reshape(-1)
    if n_steps < 1:
        raise ForecastInputError("n_steps must be >= 1")
    if history.size and not np.all(np.isfinite(history)):
        raise ForecastInputError("history contains NaN or infinite values")
    ahead = _profile(history, np.arange(n_steps, dtype=np.int64), step_s, weeks, days, envelope_days)
    window = min(history.size, max(1, round(correction_window_s / step_s)))
    if history.size == 0 or correction_tau_s <= 0:
        return ahead
    # how the profile would have forecast the last hour, from the history before it
    recent = np.arange(-window, 0, dtype=np.int64)
    then = _profile(history[:-window], recent + window, step_s, weeks, days, envelope_days) \
        if history.size > window else history[-window:]
    offset_w = float(history[-window:].mean() - then.mean())
    fade = np.exp(-(np.arange(n_steps) + 0.5) * step_s / correction_tau_s)
    result: FloatArray = ahead + offset_w * fade
    return result


def pv_forecast(history_w: npt.ArrayLike, step_s: float, n_steps: int, *, days: int = 3) -> FloatArray:
    """Same time of day over the last `days` days; 0 without a day of history."""
    history = np.asarray(history_w, dtype=np.float64).reshape(-1)
    if n_steps < 1:
        raise ForecastInputError("n_steps must be >= 1")
    mean, found = seasonal_mean(history, np.arange(n_steps, dtype=np.int64),
                                _season_steps(DAY_S, step_s), days)
    result: FloatArray = np.where(found, mean, 0.0)
    return result
