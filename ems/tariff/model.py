"""Pydantic models of an electricity tariff (energy, demand, fixed and minimum charges).

Conventions (see docs/tariffs.md): schedules are 12x24 tables indexed [month][hour] with
0-based period indices into the matching structure; monthly kWh tiers and demand tiers are
cumulative upper bounds (``max_kwh``/``max_kw``), the last tier open-ended (``None``).
Money is in the tariff's currency (no unit suffix); energy in kWh, demand in kW.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ems.model.errors import EmsError

__all__ = [
    "DemandPeriod",
    "DemandTier",
    "EnergyPeriod",
    "EnergyTier",
    "PriceSeries",
    "Schedule",
    "Tariff",
    "TariffError",
    "TariffFormatError",
    "UnsupportedTariffFeature",
]


class TariffError(EmsError):
    """Root of every error raised by ems.tariff."""


class TariffFormatError(TariffError):
    """Input data (URDB JSON, CSV, model fields) is malformed; the message names the field."""


class UnsupportedTariffFeature(TariffError):
    """The tariff uses a feature this engine does not model; ``feature`` names it."""

    def __init__(self, feature: str, detail: str = "") -> None:
        self.feature = feature
        self.detail = detail
        msg = f"unsupported tariff feature: {feature}"
        super().__init__(f"{msg} ({detail})" if detail else msg)

    def __reduce__(self) -> tuple[type[UnsupportedTariffFeature], tuple[str, str]]:
        # pickled (a Dask worker's error returned to `ems size`) by its arguments, not its message
        return type(self), (self.feature, self.detail)


Schedule = tuple[tuple[int, ...], ...]
"""12 months x 24 hours of 0-based period indices."""

_FROZEN = ConfigDict(extra="forbid", frozen=True)


def _check_schedule(value: Schedule, field: str) -> Schedule:
    if len(value) != 12 or any(len(row) != 24 for row in value):
        raise ValueError(f"{field} must be 12 rows (months) of 24 hours")
    if any(p < 0 for row in value for p in row):
        raise ValueError(f"{field} period indices must be >= 0")
    return value


def _check_bounds(bounds: list[float | None], field: str) -> None:
    """Tier upper bounds must increase strictly; only the last may be open (None)."""
    if bounds[-1] is not None:
        raise ValueError(f"{field}: the last tier must be open-ended (max = None)")
    values = [b for b in bounds[:-1] if b is not None]
    if len(values) != len(bounds) - 1:
        raise ValueError(f"{field}: only the last tier may be open-ended")
    if any(v <= 0 for v in values) or any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"{field}: tier maxima must be > 0 and strictly increasing")


class EnergyTier(BaseModel):
    """One monthly block of an energy period: kWh up to ``max_kwh`` (cumulative)."""

    model_config = _FROZEN

    max_kwh: float | None = Field(default=None, gt=0)
    rate_per_kwh: float
    sell_per_kwh: float = 0.0


class EnergyPeriod(BaseModel):
    """A TOU energy period: its monthly kWh tiers."""

    model_config = _FROZEN

    tiers: tuple[EnergyTier, ...] = Field(min_length=1)

    @field_validator("tiers")
    @classmethod
    def _tiers_ordered(cls, tiers: tuple[EnergyTier, ...]) -> tuple[EnergyTier, ...]:
        _check_bounds([t.max_kwh for t in tiers], "tiers.max_kwh")
        return tiers


class DemandTier(BaseModel):
    """One block of a demand charge: kW up to ``max_kw`` (cumulative)."""

    model_config = _FROZEN

    max_kw: float | None = Field(default=None, gt=0)
    charge_per_kw: float


class DemandPeriod(BaseModel):
    """A demand charge structure (TOU period or flat monthly): its kW tiers."""

    model_config = _FROZEN

    tiers: tuple[DemandTier, ...] = Field(min_length=1)

    @field_validator("tiers")
    @classmethod
    def _tiers_ordered(cls, tiers: tuple[DemandTier, ...]) -> tuple[DemandTier, ...]:
        _check_bounds([t.max_kw for t in tiers], "tiers.max_kw")
        return tiers


class PriceSeries(BaseModel):
    """A regular series of dynamic energy prices (e.g. day-ahead), step-wise constant.

    ``mode="replace"``: the series is the whole energy charge (import * buy - export * sell
    per step, no tiers, no net metering). ``mode="add"``: the series is an adder on top of
    the TOU/tier energy charge, applied per step to import (and export when
    ``sell_per_kwh`` is given).
    """

    model_config = _FROZEN

    start: datetime
    step_s: int = Field(gt=0)
    buy_per_kwh: tuple[float, ...] = Field(min_length=1)
    sell_per_kwh: tuple[float, ...] | None = None
    mode: Literal["replace", "add"] = "replace"

    @field_validator("start")
    @classmethod
    def _naive(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            raise ValueError("start must be naive local wall-clock time (tariff time)")
        return value

    @model_validator(mode="after")
    def _lengths(self) -> PriceSeries:
        if self.sell_per_kwh is not None and len(self.sell_per_kwh) != len(self.buy_per_kwh):
            raise ValueError("sell_per_kwh must have the same length as buy_per_kwh")
        return self


_ZERO_SCHEDULE: Schedule = tuple(tuple(0 for _ in range(24)) for _ in range(12))


class DemandLookback(BaseModel):
    """A demand ratchet (URDB lookbackPercent, lookbackRange, lookbackMonths): a month's
    billed flat demand is at least `percent` of the highest monthly peak looked back on.

    With `range_months` > 0 that is the peaks of the `range_months` months before it; with
    0, the peaks of the calendar year's months flagged in `months` (NREL REopt's reading of
    lookbackMonths: the months whose peaks set the ratchet, applied in every month)."""

    model_config = _FROZEN

    percent: float = Field(gt=0, le=1)
    range_months: int = Field(default=0, ge=0, le=36)
    months: tuple[bool, ...] = (True,) * 12

    @field_validator("months")
    @classmethod
    def _twelve(cls, value: tuple[bool, ...]) -> tuple[bool, ...]:
        if len(value) != 12:
            raise ValueError("months must be 12 flags (January first)")
        return value


class Tariff(BaseModel):
    """A complete tariff. Every charge is optional; an empty tariff bills zero."""

    model_config = _FROZEN

    name: str = ""
    # ISO 4217 code of every money field; "" where the source does not say (reports then say "currency units")
    currency: str = Field(default="", pattern=r"^([A-Z]{3})?$")
    # energy
    energy_periods: tuple[EnergyPeriod, ...] = ()
    energy_weekday_schedule: Schedule = _ZERO_SCHEDULE
    energy_weekend_schedule: Schedule = _ZERO_SCHEDULE
    metering: Literal["net_metering", "net_billing"] = "net_metering"
    nm_true_up_month: int = Field(default=12, ge=1, le=12)
    nm_yearend_sell_per_kwh: float = 0.0
    dynamic_prices: PriceSeries | None = None
    # demand
    demand_interval_s: int = Field(default=900, gt=0)
    demand_periods: tuple[DemandPeriod, ...] = ()
    demand_weekday_schedule: Schedule = _ZERO_SCHEDULE
    demand_weekend_schedule: Schedule = _ZERO_SCHEDULE
    flat_demand_periods: tuple[DemandPeriod, ...] = ()
    flat_demand_months: tuple[int, ...] = (0,) * 12
    lookback: DemandLookback | None = None  # a ratchet on the flat demand (see DemandLookback)
    # fixed and minimum
    fixed_monthly: float = 0.0
    minimum_monthly: float = Field(default=0.0, ge=0)
    minimum_annual: float = Field(default=0.0, ge=0)

    @field_validator(
        "energy_weekday_schedule",
        "energy_weekend_schedule",
        "demand_weekday_schedule",
        "demand_weekend_schedule",
    )
    @classmethod
    def _schedule_shape(cls, value: Schedule, info: ValidationInfo) -> Schedule:
        return _check_schedule(value, str(info.field_name))

    @field_validator("demand_interval_s")
    @classmethod
    def _interval_divides_hour(cls, value: int) -> int:
        # Intervals must not straddle hours: schedules are hourly and months start on hours.
        if 3600 % value != 0:
            raise ValueError("demand_interval_s must divide 3600 (e.g. 300, 900, 1800, 3600)")
        return value

    @field_validator("flat_demand_months")
    @classmethod
    def _twelve_months(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) != 12 or any(v < 0 for v in value):
            raise ValueError("flat_demand_months must be 12 indices >= 0")
        return value

    @model_validator(mode="after")
    def _indices_in_range(self) -> Tariff:
        checks: list[tuple[str, int, int]] = []
        if self.energy_periods:
            n = len(self.energy_periods)
            checks += [
                ("energy_weekday_schedule", _max_index(self.energy_weekday_schedule), n),
                ("energy_weekend_schedule", _max_index(self.energy_weekend_schedule), n),
            ]
        if self.demand_periods:
            n = len(self.demand_periods)
            checks += [
                ("demand_weekday_schedule", _max_index(self.demand_weekday_schedule), n),
                ("demand_weekend_schedule", _max_index(self.demand_weekend_schedule), n),
            ]
        if self.flat_demand_periods:
            n = len(self.flat_demand_periods)
            checks.append(("flat_demand_months", max(self.flat_demand_months), n))
        for field, highest, n in checks:
            if highest >= n:
                raise ValueError(f"{field} refers to period {highest} but only {n} are defined")
        return self


def _max_index(schedule: Schedule) -> int:
    return max(max(row) for row in schedule)
