"""The site file's feed sections: `policies.arbitrage.price_feed`, `.realtime_price_feed` and
`.weather_feed`.

Strict pydantic models (a typo is an error naming the field); the secrets (ENTSO-E's token)
come from an environment variable or a file, as the other secrets of the site file do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from ems.secret_source import read_secret
from ems.topology import Strict

_FIELD = "policies.arbitrage.price_feed"


class _PriceFeedBase(Strict):
    refresh_s: float = Field(default=3600.0, ge=60, le=86_400, description="fetch this often (5 min after a failure)")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="a fetch taking longer counts as failed")
    # day-ahead prices reach 11 to 35 h ahead: a series asked to reach further could never be used
    min_ahead_h: float = Field(default=10.0, ge=0, le=35, description="a series reaching less far ahead is not used "
                               "(day-ahead prices reach 11 to 35 h ahead)")
    mode: Literal["replace", "add"] = Field(default="replace", description="replace the tariff's energy charge, "
                                            "or add to it (see docs/tariffs.md, dynamic prices)")
    adder_per_kwh: float = Field(default=0.0, ge=-1000, le=1000, description="added to every price (grid fees, taxes)")
    export_at_price: bool = Field(default=False, description="export is paid the feed's price (else nothing)")


class _EntsoeToken(Strict):
    """ENTSO-E's API token and bidding zone, for its day-ahead and intraday prices alike."""

    bidding_zone: str = Field(min_length=2, description="entsoe-py area code, e.g. DE_LU, NL, FR, NO_1")
    token_env: str | None = Field(default="ENTSOE_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                  description="env variable holding the API token")
    token_file: Path | None = Field(default=None, description="file holding the API token (before token_env)")
    _field: ClassVar[str] = _FIELD  # where the token's fields are, for a missing token's message

    @model_validator(mode="after")
    def _known_zone(self) -> _EntsoeToken:
        from entsoe.mappings import Area

        if self.bidding_zone not in Area.__members__:
            raise ValueError(f"bidding_zone {self.bidding_zone!r} is not an entsoe-py area (e.g. DE_LU, NL, FR)")
        if self.token_env is None and self.token_file is None:
            raise ValueError("the API token needs token_env or token_file")
        return self

    def token(self) -> str:
        """The API token, read now (a missing one is a ConfigError naming the field)."""
        token = read_secret(self._field, ("token_env", self.token_env), ("token_file", self.token_file),
                            "the ENTSO-E API token")
        assert token is not None  # one of the two is set (the validator above)
        return token


class EntsoeFeedConfig(_EntsoeToken, _PriceFeedBase):
    """ENTSO-E Transparency Platform day-ahead prices (entsoe-py)."""

    source: Literal["entsoe"]

    @property
    def currency(self) -> str:
        return "EUR"


class CaisoFeedConfig(_PriceFeedBase):
    """CAISO day-ahead hourly LMP at a node, from OASIS (the query gridstatus makes)."""

    source: Literal["caiso"]
    node: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="pricing node or trading hub, e.g. TH_NP15_GEN-APND")
    url: str = Field(default="https://oasis.caiso.com/oasisapi/SingleZip", pattern=r"^https?://")

    @property
    def currency(self) -> str:
        return "USD"


class NordPoolFeedConfig(_PriceFeedBase):
    """Nord Pool day-ahead prices for a delivery area (the `nordpool` package)."""

    source: Literal["nordpool"]
    area: str = Field(min_length=2, description="delivery area, e.g. SE3, NO1, FI, DK1")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    resolution_min: Literal[15, 30, 60] = 60

    @model_validator(mode="after")
    def _known_area(self) -> NordPoolFeedConfig:
        from nordpool.elspot import Prices

        if self.area not in Prices.AREAS:
            raise ValueError(f"area {self.area!r} is not a Nord Pool delivery area ({', '.join(Prices.AREAS)})")
        return self


PriceFeedConfig = Annotated[EntsoeFeedConfig | CaisoFeedConfig | NordPoolFeedConfig,
                            Field(discriminator="source")]

_RT_FIELD = "policies.arbitrage.realtime_price_feed"


class _RealtimeFeedBase(Strict):
    # the real-time markets clear every 5 to 60 minutes (the intraday auctions three times a day)
    refresh_s: float = Field(default=900.0, ge=60, le=86_400, description="fetch this often (5 min after a failure)")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="a fetch taking longer counts as failed")


class EntsoeIntradayFeedConfig(_EntsoeToken, _RealtimeFeedBase):
    """ENTSO-E's intraday auction prices (SIDC IDA1-3, entsoe-py `query_intraday_prices`)."""

    source: Literal["entsoe"]
    auctions: tuple[Literal[1, 2, 3], ...] = Field(
        default=(1, 2, 3), min_length=1, description="IDA1 (15:00 the day before), IDA2 (22:00 the day before), "
                                                     "IDA3 (10:00, for 12:00-24:00); a later one's price wins")
    _field: ClassVar[str] = _RT_FIELD

    @property
    def currency(self) -> str:
        return "EUR"

    @model_validator(mode="after")
    def _distinct(self) -> EntsoeIntradayFeedConfig:
        if len(set(self.auctions)) != len(self.auctions):
            raise ValueError(f"auctions {list(self.auctions)} names one twice")
        return self


class CaisoRealtimeFeedConfig(_RealtimeFeedBase):
    """CAISO's real-time LMP at a node from OASIS: the 15-minute market (RTPD) or the 5-minute
    dispatch (RTM), the queries gridstatus makes for `lmp_real_time_15_min` and `_5_min`."""

    source: Literal["caiso"]
    node: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="pricing node or trading hub, e.g. TH_NP15_GEN-APND")
    market: Literal["RTPD", "RTM"] = Field(default="RTPD", description="RTPD: the 15-minute market; "
                                                                       "RTM: the 5-minute dispatch")
    url: str = Field(default="https://oasis.caiso.com/oasisapi/SingleZip", pattern=r"^https?://")

    @property
    def currency(self) -> str:
        return "USD"


RealtimePriceFeedConfig = Annotated[EntsoeIntradayFeedConfig | CaisoRealtimeFeedConfig,
                                    Field(discriminator="source")]


def realtime_mismatch(day_ahead: PriceFeedConfig | None, realtime: RealtimePriceFeedConfig | None) -> str | None:
    """Why a real-time feed cannot be laid over the day-ahead one (None when it can): it needs
    one, in the same currency (the merged series is priced as the day-ahead's, per MWh), of the
    same bidding zone or node where both name one."""
    if realtime is None:
        return None
    if day_ahead is None:
        return ("realtime_price_feed needs a price_feed: real-time prices reach minutes to hours ahead, "
                "the plan a day (the day-ahead prices fill the rest)")
    if realtime.currency != day_ahead.currency:
        return (f"realtime_price_feed.source {realtime.source}: prices in {realtime.currency}, "
                f"the price_feed's ({day_ahead.source}) in {day_ahead.currency}")
    # the same market's prices, cleared later: another zone's or node's would price a spread no one pays
    if isinstance(realtime, EntsoeIntradayFeedConfig) and isinstance(day_ahead, EntsoeFeedConfig) \
            and realtime.bidding_zone != day_ahead.bidding_zone:
        return f"realtime_price_feed.bidding_zone {realtime.bidding_zone}: the price_feed's is {day_ahead.bidding_zone}"
    if isinstance(realtime, CaisoRealtimeFeedConfig) and isinstance(day_ahead, CaisoFeedConfig) \
            and realtime.node != day_ahead.node:
        return f"realtime_price_feed.node {realtime.node}: the price_feed's is {day_ahead.node}"
    return None


class WeatherFeedConfig(Strict):
    """Open-Meteo's forecast: temperature for the learned load model, irradiance for the PV."""

    source: Literal["open_meteo"] = "open_meteo"
    latitude_deg: float | None = Field(default=None, ge=-90, le=90, description="default: pv_location's")
    longitude_deg: float | None = Field(default=None, ge=-180, le=180, description="default: pv_location's")
    tilt_deg: float | None = Field(default=None, ge=0, le=90, description="the array's tilt: its plane's irradiance")
    azimuth_deg: float = Field(default=0.0, ge=-180, le=180, description="Open-Meteo's: 0 south, -90 east, 90 west")
    past_days: int = Field(default=14, ge=0, le=92, description="past hours fetched for the load model's training")
    forecast_days: int = Field(default=3, ge=1, le=16)
    url: str = Field(default="https://api.open-meteo.com/v1/forecast", pattern=r"^https?://",
                     description="the forecast API (a self-hosted Open-Meteo, or the commercial one)")
    refresh_s: float = Field(default=3600.0, ge=60, le=86_400)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    min_ahead_h: float = Field(default=24.0, ge=0, le=384, description="a forecast reaching less far is not used")

    @model_validator(mode="after")
    def _reaches(self) -> WeatherFeedConfig:
        # the forecast ends at the last forecast day's midnight (UTC): from late in a day it
        # reaches (forecast_days - 1) days ahead
        if (self.forecast_days - 1) * 24 < self.min_ahead_h:
            raise ValueError(f"forecast_days {self.forecast_days} cannot reach min_ahead_h {self.min_ahead_h:g} "
                             f"ahead all day: at least {int(self.min_ahead_h // 24) + 2} days")
        return self
