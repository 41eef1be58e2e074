"""PV ahead from the sky: the clear-sky shape at the site, scaled by what the inverter gave.

Clear-sky global horizontal irradiance comes from pvlib (its sun position and the Haurwitz
model, which needs nothing but the sun's zenith: no turbidity table, no weather). The PV
output is taken to follow it by a factor: the least-squares fit of the measured output to
the clear sky over the daylight of the last `days` days (the array's size, orientation and
the season's usual clouds), and the same fit over the last `recent_s` of daylight for the
hours just ahead (today's weather), fading into the days' factor with `tau_s`. At night,
and ahead in the dark, the forecast is 0; it never exceeds the largest output measured.
Where the PV has given nothing in daylight yet, there is nothing to scale: None. A step of
the history not measured (NaN) is left out, never spread over the whole forecast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# irradiance (W/m², NaN where unknown) at the middle of each of n steps from a local second:
# a weather forecast's in place of the clear sky (ems/feeds/planner_inputs.py)
SkyAt = Callable[[float, float, int], FloatArray]

DAYLIGHT_W_M2 = 50.0  # below this the clear sky says little about a panel (dawn, dusk)


@dataclass(frozen=True)
class SiteLocation:
    latitude_deg: float
    longitude_deg: float
    altitude_m: float = 0.0
    timezone: str = "UTC"  # the zone of the planner's local seconds (the tariff's)


def clear_sky_w_m2(start_local_s: float, step_s: float, n_steps: int, loc: SiteLocation) -> FloatArray:
    """Clear-sky GHI at the middle of each of `n_steps` steps from `start_local_s` (local
    seconds in `loc.timezone`, as the planner counts them)."""
    import pandas as pd  # imported here: pvlib takes a second to import, and only sites with a location use it
    import pvlib

    mids = start_local_s + (np.arange(n_steps, dtype=np.float64) + 0.5) * step_s
    # local wall-clock times into UTC step by step (a daylight-saving change moves the clock, not the sun)
    local = pd.to_datetime(mids, unit="s").tz_localize(loc.timezone, ambiguous="NaT", nonexistent="shift_forward")
    times = local.tz_convert("UTC")
    sun = pvlib.solarposition.get_solarposition(times, loc.latitude_deg, loc.longitude_deg, loc.altitude_m)
    ghi = pvlib.clearsky.haurwitz(sun["apparent_zenith"])["ghi"].to_numpy(dtype=np.float64)  # NaT (the hour
    # repeated in autumn) gives NaN: 0 there, one hour a year
    out: FloatArray = np.nan_to_num(ghi, nan=0.0)
    return out


def _factor(measured_w: FloatArray, sky: FloatArray) -> float | None:
    lit = (sky > DAYLIGHT_W_M2) & np.isfinite(measured_w)  # a step not measured (NaN) is left out of the fit
    den = float(np.sum(sky[lit] ** 2))
    if not lit.any() or den <= 0.0:
        return None
    return max(float(np.sum(measured_w[lit] * sky[lit])) / den, 0.0)


def pv_clear_sky_forecast(history_w: npt.ArrayLike, start_local_s: float, step_s: float, n_steps: int,
                          loc: SiteLocation, *, days: int = 3, recent_s: float = 3 * 3600.0,
                          tau_s: float = 3 * 3600.0, sky_at: SkyAt | None = None) -> FloatArray | None:
    """PV for the `n_steps` steps from `start_local_s`, from the measured `history_w` whose last
    step ends at `start_local_s` (step averages, W). With `sky_at` (a forecast's irradiance,
    clouds included) the output follows it instead of the clear sky, fitted on its past hours
    alike; where it has no value, the clear sky."""

    def sky_w_m2(start: float, n: int) -> FloatArray:
        clear = clear_sky_w_m2(start, step_s, n, loc)
        if sky_at is None:
            return clear
        given = sky_at(start, step_s, n)
        out: FloatArray = np.where(np.isfinite(given), given, clear)
        return out

    history = np.asarray(history_w, dtype=np.float64).reshape(-1)[-round(days * 86_400 / step_s):]
    if history.size == 0:
        return None
    past_sky = sky_w_m2(start_local_s - history.size * step_s, history.size)
    k_days = _factor(history, past_sky)
    if k_days is None or k_days == 0.0:
        return None
    r = max(1, round(recent_s / step_s))
    k_now = _factor(history[-r:], past_sky[-r:])
    sky = sky_w_m2(start_local_s, n_steps)
    ahead_s = (np.arange(n_steps, dtype=np.float64) + 0.5) * step_s
    fade = np.exp(-ahead_s / tau_s) if k_now is not None else np.zeros(n_steps)
    k = k_days + (0.0 if k_now is None else k_now - k_days) * fade
    out: FloatArray = np.minimum(k * sky, float(np.nanmax(history)))  # a fit was found: some is finite
    return out
