"""A weather forecast from Open-Meteo: air temperature and irradiance, hourly, past days included.

Open-Meteo's JSON forecast API (`/v1/forecast`) through requests. The past days
(`past_days`) come along so that the learned load model trains on the temperatures it will
be given ahead. Radiation in Open-Meteo is the mean over the hour *before* its timestamp;
here every column holds for the step that starts at its time, so radiation moves one step
back (the last hour, whose radiation is not given, is dropped).
"""

from __future__ import annotations

import json
from typing import Any

from ems.feeds.answer import bounded_body
from ems.feeds.series import FeedMalformed, FeedSeries, FeedUnavailable, regular_series

TEMPERATURE = "temperature_c"
GHI = "ghi_w_m2"  # global horizontal (shortwave_radiation)
GTI = "gti_w_m2"  # on the array's plane (global_tilted_irradiance), where its tilt is given

# beyond what Earth's air and sun give (the records: -89 and 57 C; ~1400 W/m2 at the ground)
RANGES = {TEMPERATURE: (-100.0, 70.0), GHI: (-10.0, 2000.0), GTI: (-10.0, 2000.0)}

OPEN_METEO_URL = "https://api.open-meteo.com/v1/forecast"


class OpenMeteoWeather:
    name = "open_meteo"

    def __init__(self, latitude_deg: float, longitude_deg: float, *, tilt_deg: float | None = None,
                 azimuth_deg: float | None = None, past_days: int = 7, forecast_days: int = 3,
                 url: str = OPEN_METEO_URL, timeout_s: float = 20.0) -> None:
        self.latitude_deg = latitude_deg
        self.longitude_deg = longitude_deg
        self.tilt_deg = tilt_deg
        self.azimuth_deg = azimuth_deg
        self.past_days = past_days
        self.forecast_days = forecast_days
        self.url = url
        self.timeout_s = timeout_s
        self.of = f"{latitude_deg},{longitude_deg} tilt {tilt_deg} azimuth {azimuth_deg}"

    def params(self) -> dict[str, Any]:
        hourly = ["temperature_2m", "shortwave_radiation"]
        p: dict[str, Any] = {"latitude": self.latitude_deg, "longitude": self.longitude_deg,
                             "past_days": self.past_days, "forecast_days": self.forecast_days,
                             "timezone": "GMT", "timeformat": "unixtime"}
        if self.tilt_deg is not None:
            hourly.append("global_tilted_irradiance")
            p["tilt"] = self.tilt_deg
            p["azimuth"] = self.azimuth_deg or 0.0  # Open-Meteo: 0 south, -90 east, 90 west
        p["hourly"] = ",".join(hourly)
        return p

    def fetch(self, start_utc_s: float, end_utc_s: float) -> FeedSeries:
        """The whole forecast (past days to the last forecast day); the source checks the window."""
        import requests

        try:
            r = requests.get(self.url, params=self.params(), timeout=self.timeout_s, stream=True)
            if r.status_code in (400, 429):  # Open-Meteo says why in {"error": true, "reason": ...}
                why = bounded_body(r, "open_meteo", timeout_s=self.timeout_s).decode("utf-8", "replace")[:200]
                raise FeedUnavailable(f"open_meteo: HTTP {r.status_code}: {why}")
            r.raise_for_status()
            doc = json.loads(bounded_body(r, "open_meteo", timeout_s=self.timeout_s))
        except requests.RequestException as exc:
            raise FeedUnavailable(f"open_meteo: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:
            raise FeedMalformed(f"open_meteo: the answer is not JSON: {exc}") from None
        hourly = doc.get("hourly") if isinstance(doc, dict) else None
        if not isinstance(hourly, dict):
            raise FeedMalformed("open_meteo: the answer has no hourly section")
        names = {"time": "time", "temperature_2m": TEMPERATURE, "shortwave_radiation": GHI}
        if self.tilt_deg is not None:
            names["global_tilted_irradiance"] = GTI
        for key in names:
            if not isinstance(hourly.get(key), list):
                raise FeedMalformed(f"open_meteo: hourly.{key} is missing")
        try:
            times = [float(t) for t in hourly["time"]]
            cols = {ours: [float("nan") if v is None else float(v) for v in hourly[theirs]]
                    for theirs, ours in names.items() if theirs != "time"}
        except (TypeError, ValueError) as exc:
            raise FeedMalformed(f"open_meteo: a value is not a number: {exc}") from None
        if len(times) < 2:
            raise FeedMalformed("open_meteo: fewer than two hours")
        for name in (GHI, GTI):
            if name in cols:
                cols[name] = [*cols[name][1:], 0.0]  # the hour before each time: one step back
        return regular_series(times[:-1], {k: v[:-1] for k, v in cols.items()}, "open_meteo", RANGES)
