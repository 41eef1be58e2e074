"""Tariff model validation: shapes, indices, tier order; errors name the field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from ems.tariff import DemandPeriod, DemandTier, EnergyPeriod, EnergyTier, PriceSeries, Tariff

FLAT = tuple(tuple(0 for _ in range(24)) for _ in range(12))
ONES = tuple(tuple(1 for _ in range(24)) for _ in range(12))


def _period(rate: float = 0.1) -> EnergyPeriod:
    return EnergyPeriod(tiers=(EnergyTier(rate_per_kwh=rate),))


def test_empty_tariff_is_valid_and_frozen() -> None:
    tariff = Tariff()
    with pytest.raises(ValidationError):
        tariff.fixed_monthly = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"energy_weekday_schedule": FLAT[:11]}, "energy_weekday_schedule"),
        ({"demand_weekend_schedule": (tuple(range(23)),) * 12}, "demand_weekend_schedule"),
        (
            {"energy_periods": (_period(),), "energy_weekend_schedule": ONES},
            "energy_weekend_schedule",
        ),
        ({"flat_demand_months": (0,) * 11}, "flat_demand_months"),
        ({"demand_interval_s": 700}, "demand_interval_s"),
        ({"minimum_monthly": -1.0}, "minimum_monthly"),
        ({"fixed_charge": 1.0}, "fixed_charge"),  # extra fields are rejected
        ({"metering": "buy_all_sell_all"}, "metering"),
    ],
)
def test_invalid_fields_are_named(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Tariff(**kwargs)
    assert field in str(info.value)


def test_schedule_index_beyond_demand_periods_is_rejected() -> None:
    tier = DemandTier(charge_per_kw=5.0)
    with pytest.raises(ValidationError, match="demand_weekday_schedule"):
        Tariff(
            demand_periods=(DemandPeriod(tiers=(tier,)),),
            demand_weekday_schedule=ONES,
            demand_weekend_schedule=FLAT,
        )


@pytest.mark.parametrize(
    "maxima",
    [
        (100.0, 50.0, None),  # decreasing
        (100.0, 100.0, None),  # not strictly increasing
        (100.0, 200.0),  # last tier closed
        (None, 100.0, None),  # open tier in the middle
    ],
)
def test_energy_tiers_must_increase_and_end_open(maxima: tuple[float | None, ...]) -> None:
    with pytest.raises(ValidationError, match="max_kwh"):
        EnergyPeriod(tiers=tuple(EnergyTier(max_kwh=m, rate_per_kwh=0.1) for m in maxima))


def test_demand_tiers_must_end_open() -> None:
    with pytest.raises(ValidationError, match="max_kw"):
        DemandPeriod(tiers=(DemandTier(max_kw=100.0, charge_per_kw=5.0),))


def test_price_series_rejects_aware_start_and_length_mismatch() -> None:
    with pytest.raises(ValidationError, match="start"):
        PriceSeries(start=datetime(2024, 1, 1, tzinfo=UTC), step_s=3600, buy_per_kwh=(0.1,))
    with pytest.raises(ValidationError, match="sell_per_kwh"):
        PriceSeries(
            start=datetime(2024, 1, 1), step_s=3600, buy_per_kwh=(0.1, 0.2), sell_per_kwh=(0.1,)
        )
