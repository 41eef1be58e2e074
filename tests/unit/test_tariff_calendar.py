"""Tariff time (ems/tariff/calendar.py): wall clock -> tariff time, calendar fields, and the bill
of a zoned series."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from ems.tariff import BillInputError, DemandPeriod, DemandTier, EnergyPeriod, EnergyTier, Tariff, compute_bill
from ems.tariff.calendar import (
    calendar,
    calendar_at,
    local_datetime,
    local_seconds,
    local_seconds_array,
    month_label,
    month_of,
    tariff_seconds,
)

LA = ZoneInfo("America/Los_Angeles")


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"])
def test_vectorised_local_time_is_the_scalar_one(zone) -> None:
    z = ZoneInfo(zone)
    # a minute grid over both of 2018's DST switches in the zone (Lord Howe moves by 30 min)
    days = [datetime(2018, 3, 10), datetime(2018, 4, 1), datetime(2018, 10, 7), datetime(2018, 11, 3)]
    wall = np.concatenate([d.replace(tzinfo=UTC).timestamp() + 60.0 * np.arange(2 * 1440) for d in days])
    np.testing.assert_array_equal(local_seconds_array(wall, z), [local_seconds(w, z) for w in wall])


def test_spring_skips_an_hour_and_autumn_repeats_one() -> None:
    spring = datetime(2018, 3, 11, 1, 59, tzinfo=LA).timestamp()
    assert local_datetime(local_seconds(spring + 60, LA)) == datetime(2018, 3, 11, 3, 0)
    autumn = datetime(2018, 11, 4, 1, 59, tzinfo=LA).timestamp()  # the first 01:59 (PDT)
    assert local_datetime(local_seconds(autumn + 60, LA)) == datetime(2018, 11, 4, 1, 0)


def test_scalar_and_array_calendars_name_the_same_month() -> None:
    t = np.array([-1.0, 0.0, 86_399.5, 2_678_399.0, 2_678_400.0, 1_519_862_399.0, 1_519_862_400.0])
    cal = calendar_at(t)
    assert [month_of(x) for x in t] == list(zip(cal.year.tolist(), cal.month.tolist(), strict=True))
    assert month_label(month_of(1_519_862_400.0)) == "2018-03"
    np.testing.assert_array_equal(cal.months, (cal.year - 1970) * 12 + cal.month - 1)


def test_regular_calendar_fields() -> None:
    cal = calendar(datetime(2018, 1, 5, 22), 3600, 4)  # Fri 22:00 .. Sat 01:00
    assert cal.hour.tolist() == [22, 23, 0, 1] and cal.weekend.tolist() == [False, False, True, True]
    assert tariff_seconds(datetime(2018, 1, 5, 22)) == cal.t_s[0] == tariff_seconds(np.datetime64("2018-01-05T22"))


def test_a_zoned_bill_is_the_naive_bill_of_its_local_clock_away_from_dst() -> None:
    # a January week in Los Angeles (no switch): billing UTC instants in the zone is billing
    # the local clock's naive series
    period = EnergyPeriod(tiers=(EnergyTier(rate_per_kwh=0.1),))
    peak_hours = tuple(tuple(0 if 15 <= h < 20 else 1 for h in range(24)) for _ in range(12))
    tariff = Tariff(energy_periods=(period, EnergyPeriod(tiers=(EnergyTier(rate_per_kwh=0.05),))),
                    energy_weekday_schedule=peak_hours, energy_weekend_schedule=peak_hours,
                    demand_periods=(DemandPeriod(tiers=(DemandTier(charge_per_kw=10.0),)),) * 2,
                    demand_weekday_schedule=peak_hours, demand_weekend_schedule=peak_hours)
    kw = np.random.default_rng(1).uniform(0, 100, 7 * 96)
    naive = compute_bill(tariff, kw, start=datetime(2018, 1, 31, 12), step_s=900)
    zoned = compute_bill(tariff, kw, start=datetime(2018, 1, 31, 12, tzinfo=LA), step_s=900, zone=LA)
    utc_naive = compute_bill(tariff, kw, start=datetime(2018, 1, 31, 20), step_s=900, zone=LA)
    assert naive == zoned == utc_naive and len(naive.months) == 2


def test_aware_times_without_a_zone_are_refused() -> None:
    with pytest.raises(BillInputError, match="naive"):
        compute_bill(Tariff(), np.ones(3), start=datetime(2018, 1, 1, tzinfo=UTC), step_s=3600)
