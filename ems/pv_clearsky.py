"""PV forecast from the clear sky (pvlib) scaled by what the PV meter measured.

The profile forecast (ems/forecast.py `pv_forecast`) repeats the last days' output at the
same time of day: it lags the season and carries yesterday's clouds into today's
sunrise. This one takes the shape from the sun instead: pvlib's clear-sky global
horizontal irradiance at the site (Haurwitz model: from the sun's position alone, no
turbidity data needed) at every step ahead, times the ratio of the PV energy measured
over the last `days` days to the clear-sky irradiance over the same steps (the plant's
size, orientation, losses and the recent weather in one factor).

Times are naive local seconds in the tariff's zone (the planner's clock); the zone turns
them into the instants pvlib needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ems.forecast import DAY_S, ForecastInputError

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SiteSun:
    latitude: float
    longitude: float
    timezone: str = "UTC"

    def clearsky_ghi(self, start_local_s: float, step_s: float, n_steps: int) -> FloatArray:
        """Clear-sky GHI (W/m2) at the middle of each of `n_steps` steps from `start_local_s`."""
        import pandas as pd  # imported here: pandas and pvlib take a second to load, only a PV site needs them
        from pvlib.location import Location

        mid = pd.to_datetime(start_local_s + (np.arange(n_steps) + 0.5) * step_s, unit="s")
        times = pd.DatetimeIndex(mid).tz_localize(self.timezone, ambiguous="NaT", nonexistent="shift_forward")
        # an hour repeated at the autumn change: its instants are ambiguous; the hour before stands in
        times = times.to_series().ffill().bfill()
        loc = Location(self.latitude, self.longitude, tz=self.timezone)
        ghi = loc.get_clearsky(pd.DatetimeIndex(times), model="haurwitz")["ghi"].to_numpy(dtype=np.float64)
        out: FloatArray = np.nan_to_num(ghi, nan=0.0)
        return out


def clearsky_pv_forecast(history_w: npt.ArrayLike, end_local_s: float, step_s: float, n_steps: int,
                         sun: SiteSun, *, days: int = 3) -> FloatArray:
    """PV over the next `n_steps` after a history ending at `end_local_s`: the clear sky
    ahead times measured / clear-sky over the last `days` days (0 without daylight in them)."""
    history = np.asarray(history_w, dtype=np.float64).reshape(-1)
    if n_steps < 1:
        raise ForecastInputError("n_steps must be >= 1")
    if history.size and not np.all(np.isfinite(history)):
        raise ForecastInputError("PV history contains NaN or infinite values")
    m = min(history.size, round(days * DAY_S / step_s))
    ghi = sun.clearsky_ghi(end_local_s - m * step_s, step_s, m + n_steps)
    past, ahead = ghi[:m], ghi[m:]
    sky = float(past.sum())
    factor = max(float(history[-m:].sum()) / sky, 0.0) if m and sky > 0 else 0.0
    out: FloatArray = factor * ahead
    return out
