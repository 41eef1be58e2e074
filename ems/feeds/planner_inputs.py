"""The feeds as the planner's inputs: the one place where they meet the planner.

Before each plan request the live planner calls `apply` (ems/planning/live.py), which sets
on the plan builder, from the last good series of each feed,

* the tariff's dynamic prices (`Tariff.dynamic_prices`, as a price CSV would) on the plan's
  own local grid; beyond the series' end the last published day repeats. Without a good
  series covering the window: the site's own tariff. Where a real-time feed has a price for a
  whole planning step (the intraday auctions', the 15- or 5-minute market's), it replaces the
  day-ahead's there: it cleared later for the same interval, so it is the newest known;
* the learned load model's temperature (past days and forecast), instead of
  `temperature_csv` (which stays where the feed has nothing);
* the PV forecast's sky: the forecast irradiance (on the array's plane where its tilt is
  given) instead of the clear sky, where the site gives its PV location.

Times: feeds are in UTC, the planner counts naive local seconds in the tariff's zone; each
local step start is taken to UTC in that zone (a daylight-saving change moves the clock).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import structlog

from ems.feeds.cache import FeedCache
from ems.feeds.prices import PRICE, CaisoOasisPrices, EntsoeIntradayPrices, EntsoePrices, NordPoolPrices
from ems.feeds.series import FeedSeries, FloatArray
from ems.feeds.settings import (
    CaisoFeedConfig,
    CaisoRealtimeFeedConfig,
    EntsoeFeedConfig,
    EntsoeIntradayFeedConfig,
    NordPoolFeedConfig,
    PriceFeedConfig,
    RealtimePriceFeedConfig,
    WeatherFeedConfig,
    realtime_mismatch,
)
from ems.feeds.source import Feed, FeedSource
from ems.feeds.weather import GHI, GTI, TEMPERATURE, OpenMeteoWeather
from ems.load_model import TemperatureSeries
from ems.model.errors import ConfigError
from ems.planning.builder import PlanBuilder
from ems.tariff.calendar import local_datetime
from ems.tariff.model import PriceSeries, Tariff

DAY_S = 86_400.0

log = structlog.get_logger("ems.feeds")


def local_to_utc_s(local_s: FloatArray, zone: str) -> FloatArray:
    """Naive local seconds in `zone` as UTC seconds (the hour repeated in autumn taken the first
    time). The offset is looked up once per local hour: a plan's day is 24 look-ups, and no
    pandas on the event loop."""
    z = ZoneInfo(zone)
    t = np.asarray(local_s, dtype=np.float64)
    hours = np.floor(t / 3600.0)
    uniq, inverse = np.unique(hours, return_inverse=True)
    epoch = datetime(1970, 1, 1)
    offsets_s = np.array([((epoch + timedelta(hours=float(h))).replace(tzinfo=z).utcoffset()
                           or timedelta(0)).total_seconds() for h in uniq], dtype=np.float64)
    out: FloatArray = t - offsets_s[inverse.reshape(t.shape)]
    return out


def repeat_last_day(series: FeedSeries, column: str, utc_s: FloatArray) -> FloatArray:
    """The column at each time; past the series' end the same time of its last day(s)."""
    t = np.asarray(utc_s, dtype=np.float64)
    behind = np.maximum(0.0, np.ceil((t - series.end_utc_s + 1e-6) / DAY_S))
    return series.at(column, t - behind * DAY_S)


@dataclass
class PriceFeedUse:
    source: FeedSource
    cfg: PriceFeedConfig


class PlannerFeeds:
    def __init__(self, zone: str, price: PriceFeedUse | None, weather: FeedSource | None,
                 use_gti: bool = False, realtime: FeedSource | None = None) -> None:
        self.zone = zone
        self.price = price
        self.weather = weather
        self.use_gti = use_gti
        self.realtime = realtime  # laid over the day-ahead prices where it has them (needs `price`)
        self.base_tariff: Tariff | None = None  # the site's tariff, as the builder had it first
        self.priced_plans = 0  # plans made on the price feed's prices
        self.realtime_plans = 0  # of those, plans with at least one step at a real-time price
        self.realtime_steps = 0  # the last priced plan's steps at a real-time price
        self.weather_plans = 0
        self.apply_errors = 0  # plans whose feeds could not be applied (the site's own inputs used)
        self._temperature_of: tuple[FeedSeries, TemperatureSeries] | None = None  # made once per weather series

    @property
    def sources(self) -> list[FeedSource]:
        return [s for s in (None if self.price is None else self.price.source, self.realtime, self.weather)
                if s is not None]

    async def run(self) -> None:
        """Every feed's refresh task, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for source in self.sources:
                tg.create_task(source.run(), name=f"feed-{source.name}")

    def apply(self, builder: PlanBuilder, now_local_s: float) -> None:
        """Set the builder's prices, temperature and sky for the plan starting at `now_local_s`.
        A series that cannot be used (a cache file crafted with another column, say) must not
        stop the control loop this runs in: the plan then takes the site's own inputs (counted,
        logged once)."""
        if self.base_tariff is None:
            self.base_tariff = builder.tariff
        try:
            self._apply(builder, now_local_s)
        except Exception as exc:
            self.apply_errors += 1
            if self.apply_errors == 1:
                log.exception("feeds not applied: the plan takes the site's tariff and inputs", error=str(exc))
            builder.tariff = self.base_tariff
            if builder.model is not None:
                builder.model.temperature = builder.s.temperature
            builder.sky = None

    def _apply(self, builder: PlanBuilder, now_local_s: float) -> None:
        s = builder.s
        start = math.floor(now_local_s / s.step_s + 1e-9) * s.step_s
        local = start + np.arange(s.horizon_steps, dtype=np.float64) * s.step_s
        utc = local_to_utc_s(local, self.zone)
        builder.tariff = self._tariff(utc, start, s.step_s, float(utc[-1] + s.step_s))
        weather = None if self.weather is None else self.weather.series(float(utc[0]), float(utc[-1] + s.step_s))
        if builder.model is not None:
            builder.model.temperature = s.temperature if weather is None else self._temperature(weather)
        builder.sky = None if weather is None else self._sky(weather)
        self.weather_plans += weather is not None

    def _tariff(self, utc: FloatArray, start_local_s: float, step_s: float, end_utc_s: float) -> Tariff:
        base = self.base_tariff
        assert base is not None
        self.realtime_steps = 0
        if self.price is None:
            return base
        series = self.price.source.series(float(utc[0]), end_utc_s)
        if series is None:
            return base
        cfg = self.price.cfg
        per_mwh = repeat_last_day(series, PRICE, utc)
        per_mwh = np.where(np.isfinite(per_mwh), per_mwh, series.columns[PRICE][-1])
        newer = self._realtime_per_mwh(utc, step_s, end_utc_s)
        known = np.isfinite(newer)
        per_mwh = np.where(known, newer, per_mwh)
        buy = per_mwh / 1000.0 + cfg.adder_per_kwh
        self.priced_plans += 1
        self.realtime_steps = int(known.sum())
        self.realtime_plans += self.realtime_steps > 0
        prices = PriceSeries(start=local_datetime(start_local_s), step_s=round(step_s),
                             buy_per_kwh=tuple(buy.tolist()),
                             sell_per_kwh=tuple(buy.tolist()) if cfg.export_at_price else None, mode=cfg.mode)
        return base.model_copy(update={"dynamic_prices": prices})

    def _realtime_per_mwh(self, utc: FloatArray, step_s: float, end_utc_s: float) -> FloatArray:
        """The real-time price of each planning step (the mean of its market intervals); NaN
        where the real-time series does not cover the whole step, or there is none."""
        series = None if self.realtime is None else self.realtime.series(float(utc[0]), end_utc_s)
        if series is None:
            return np.full(utc.shape, np.nan)
        # a 15-minute plan step holds three 5-minute prices; an interval longer than the step, one
        n_sub = max(1, round(step_s / series.step_s))
        at = utc[:, None] + np.arange(n_sub, dtype=np.float64)[None, :] * (step_s / n_sub)
        per_mwh: FloatArray = series.at(PRICE, at).mean(axis=1)  # NaN when any interval is unknown
        return per_mwh

    def _temperature(self, w: FeedSeries) -> TemperatureSeries:
        """The weather series' temperature on a local grid over its whole span (ten weeks of
        hours: made again only when a new series came)."""
        if self._temperature_of is not None and self._temperature_of[0] is w:
            return self._temperature_of[1]
        local0 = math.floor(_utc_to_local_s(w.start_utc_s, self.zone) / w.step_s) * w.step_s
        n = w.n_steps + 2  # a daylight-saving change shifts the span by an hour
        local = local0 + np.arange(n, dtype=np.float64) * w.step_s
        temp = TemperatureSeries(local0, w.step_s, w.at(TEMPERATURE, local_to_utc_s(local, self.zone)))
        self._temperature_of = (w, temp)
        return temp

    def _sky(self, w: FeedSeries) -> SkyFromForecast:
        return SkyFromForecast(w, GTI if self.use_gti and GTI in w.columns else GHI, self.zone)

    def summary(self) -> dict[str, object]:
        return {s.name: s.summary() for s in self.sources} | {"priced_plans": self.priced_plans,
                                                              "realtime_plans": self.realtime_plans,
                                                              "realtime_steps": self.realtime_steps,
                                                              "weather_plans": self.weather_plans,
                                                              "apply_errors": self.apply_errors}


def _utc_to_local_s(utc_s: float, zone: str) -> float:
    d = datetime.fromtimestamp(utc_s, UTC).astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    return (d - datetime(1970, 1, 1)).total_seconds()


@dataclass(frozen=True)
class SkyFromForecast:
    """Irradiance at each step's middle (W/m², local seconds) from a weather series; NaN where
    the series does not reach (the PV forecast takes the clear sky there)."""

    series: FeedSeries
    column: str
    zone: str

    def __call__(self, start_local_s: float, step_s: float, n_steps: int) -> FloatArray:
        mids = start_local_s + (np.arange(n_steps, dtype=np.float64) + 0.5) * step_s
        return self.series.at(self.column, local_to_utc_s(mids, self.zone))


def price_feed(cfg: PriceFeedConfig) -> Feed:
    if isinstance(cfg, EntsoeFeedConfig):
        return EntsoePrices(cfg.bidding_zone, cfg.token(), cfg.timeout_s)
    if isinstance(cfg, CaisoFeedConfig):
        return CaisoOasisPrices(cfg.node, cfg.timeout_s, cfg.url)
    assert isinstance(cfg, NordPoolFeedConfig)
    return NordPoolPrices(cfg.area, cfg.currency, cfg.resolution_min, cfg.timeout_s)


def realtime_feed(cfg: RealtimePriceFeedConfig) -> Feed:
    if isinstance(cfg, EntsoeIntradayFeedConfig):
        return EntsoeIntradayPrices(cfg.bidding_zone, cfg.token(), cfg.timeout_s, cfg.auctions)
    assert isinstance(cfg, CaisoRealtimeFeedConfig)
    return CaisoOasisPrices(cfg.node, cfg.timeout_s, cfg.url, market=cfg.market)


def weather_feed(cfg: WeatherFeedConfig, pv_lat_lon: tuple[float, float] | None) -> OpenMeteoWeather:
    lat = cfg.latitude_deg if cfg.latitude_deg is not None else None if pv_lat_lon is None else pv_lat_lon[0]
    lon = cfg.longitude_deg if cfg.longitude_deg is not None else None if pv_lat_lon is None else pv_lat_lon[1]
    if lat is None or lon is None:
        raise ConfigError("policies.arbitrage.weather_feed: latitude_deg and longitude_deg are needed "
                          "(or policies.arbitrage.pv_location)")
    return OpenMeteoWeather(lat, lon, tilt_deg=cfg.tilt_deg, azimuth_deg=cfg.azimuth_deg, past_days=cfg.past_days,
                            forecast_days=cfg.forecast_days, url=cfg.url, timeout_s=cfg.timeout_s)


def planner_feeds(price_cfg: PriceFeedConfig | None, weather_cfg: WeatherFeedConfig | None, zone: str,
                  state_dir: Path | None, pv_lat_lon: tuple[float, float] | None,
                  realtime_cfg: RealtimePriceFeedConfig | None = None) -> PlannerFeeds | None:
    """The feeds a site's arbitrage section names (None without any); cached under the state dir."""
    if (why := realtime_mismatch(price_cfg, realtime_cfg)) is not None:
        raise ConfigError(f"policies.arbitrage: {why}")
    if price_cfg is None and weather_cfg is None:
        return None
    cache = FeedCache(None if state_dir is None else state_dir / "feeds")
    price = None
    if price_cfg is not None:
        price = PriceFeedUse(FeedSource(
            price_feed(price_cfg), cache, refresh_s=price_cfg.refresh_s, timeout_s=price_cfg.timeout_s,
            min_ahead_s=price_cfg.min_ahead_h * 3600.0, fetch_ahead_s=2 * DAY_S, keep_s=DAY_S, columns=(PRICE,)),
            price_cfg)
    realtime = None
    if realtime_cfg is not None:
        # min_ahead 0: a real-time series covers now and the next intervals only. What it kept
        # from before now is of no use to a plan: six hours, against a restart's gap
        realtime = FeedSource(
            realtime_feed(realtime_cfg), cache, refresh_s=realtime_cfg.refresh_s, timeout_s=realtime_cfg.timeout_s,
            min_ahead_s=0.0, fetch_ahead_s=DAY_S, keep_s=6 * 3600.0, columns=(PRICE,))
    weather = None
    if weather_cfg is not None:
        weather = FeedSource(
            weather_feed(weather_cfg, pv_lat_lon), cache, refresh_s=weather_cfg.refresh_s,
            timeout_s=weather_cfg.timeout_s, min_ahead_s=weather_cfg.min_ahead_h * 3600.0,
            fetch_ahead_s=weather_cfg.forecast_days * DAY_S,
            # kept longer than fetched: the learned load model trains on ten weeks of temperatures
            keep_s=max(weather_cfg.past_days + 1, 70) * DAY_S, columns=(TEMPERATURE, GHI))
    return PlannerFeeds(zone, price, weather, use_gti=weather_cfg is not None and weather_cfg.tilt_deg is not None,
                        realtime=realtime)
