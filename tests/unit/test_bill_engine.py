"""Bill engine on small hand-computed cases (expected values derived by hand in comments)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pytest

from ems.tariff import (
    BillInputError,
    DemandPeriod,
    DemandTier,
    EnergyPeriod,
    EnergyTier,
    PriceSeries,
    Tariff,
    compute_bill,
)

JAN = datetime(2018, 1, 1)  # a Monday
H = 3600


def sched(value: int) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(value for _ in range(24)) for _ in range(12))


def hours_sched(on: range, inside: int, outside: int) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(inside if h in on else outside for h in range(24)) for _ in range(12))


def flat_energy(rate: float, sell: float = 0.0, **kw: object) -> Tariff:
    period = EnergyPeriod(tiers=(EnergyTier(rate_per_kwh=rate, sell_per_kwh=sell),))
    return Tariff(energy_periods=(period,), **kw)  # type: ignore[arg-type]


def demand(*tiers: tuple[float | None, float]) -> DemandPeriod:
    return DemandPeriod(tiers=tuple(DemandTier(max_kw=m, charge_per_kw=c) for m, c in tiers))


def test_flat_rate_energy_for_january() -> None:
    # 744 h x 10 kW = 7440 kWh at 0.10 -> 744.00
    bill = compute_bill(flat_energy(0.10), np.full(744, 10.0), start=JAN, step_s=H)
    (month,) = bill.months
    assert (month.year, month.month) == (2018, 1)
    assert month.import_kwh == pytest.approx(7440.0)
    assert month.energy == pytest.approx(744.0)
    assert bill.total == pytest.approx(744.0)


def test_series_spanning_two_months_splits_at_midnight() -> None:
    # Jan 31 22:00 .. Feb 1 02:00: 2 h in Jan, 2 h in Feb at 5 kW, 1 $/kWh
    start = datetime(2018, 1, 31, 22)
    bill = compute_bill(flat_energy(1.0), np.full(4, 5.0), start=start, step_s=H)
    assert [(m.month, m.energy) for m in bill.months] == [(1, 10.0), (2, 10.0)]


def test_monthly_tier_limit_is_shared_pro_rata_across_periods() -> None:
    # Period 0 (hours 0-11): 0.10 up to 100 kWh, then 0.20; period 1 (12-23): 0.30 / 0.40.
    # One day at 10 kW: 120 kWh in each period, 240 kWh total. Tier 1 holds 100 kWh split
    # 50/50: period 0 pays 50*0.1 + 70*0.2 = 19, period 1 pays 50*0.3 + 70*0.4 = 43.
    periods = (
        EnergyPeriod(
            tiers=(EnergyTier(max_kwh=100, rate_per_kwh=0.1), EnergyTier(rate_per_kwh=0.2))
        ),
        EnergyPeriod(
            tiers=(EnergyTier(max_kwh=100, rate_per_kwh=0.3), EnergyTier(rate_per_kwh=0.4))
        ),
    )
    s = hours_sched(range(12), 0, 1)
    tariff = Tariff(energy_periods=periods, energy_weekday_schedule=s, energy_weekend_schedule=s)
    bill = compute_bill(tariff, np.full(24, 10.0), start=JAN, step_s=H)
    assert bill.energy == pytest.approx(62.0)


def test_weekend_schedule_applies_on_saturday_and_sunday() -> None:
    # Weekdays period 0 at 1 $/kWh, weekends period 1 at 2 $/kWh; 2018-01-06 is a Saturday.
    periods = (
        EnergyPeriod(tiers=(EnergyTier(rate_per_kwh=1.0),)),
        EnergyPeriod(tiers=(EnergyTier(rate_per_kwh=2.0),)),
    )
    tariff = Tariff(
        energy_periods=periods, energy_weekday_schedule=sched(0), energy_weekend_schedule=sched(1)
    )
    friday = compute_bill(tariff, np.ones(24), start=datetime(2018, 1, 5), step_s=H)
    saturday = compute_bill(tariff, np.ones(24), start=datetime(2018, 1, 6), step_s=H)
    sunday = compute_bill(tariff, np.ones(24), start=datetime(2018, 1, 7), step_s=H)
    assert (friday.energy, saturday.energy, sunday.energy) == (24.0, 48.0, 48.0)


def test_demand_is_the_highest_interval_average_not_the_instant_peak() -> None:
    # 1-min data, 15-min interval: one minute at 150 kW on a 0 kW base averages to 10 kW.
    power = np.zeros(60)
    power[20] = 150.0
    tariff = Tariff(flat_demand_periods=(demand((None, 10.0)),))
    bill = compute_bill(tariff, power, start=JAN, step_s=60)
    assert bill.months[0].peak_kw == pytest.approx(10.0)
    assert bill.demand_flat == pytest.approx(100.0)


def test_demand_intervals_are_clock_aligned() -> None:
    # 30 kW during 00:10-00:20 straddles two 15-min intervals: 5 min in each -> 10 kW.
    power = np.zeros(60)
    power[10:20] = 30.0
    tariff = Tariff(flat_demand_periods=(demand((None, 1.0)),), demand_interval_s=900)
    assert compute_bill(tariff, power, start=JAN, step_s=60).months[0].peak_kw == pytest.approx(
        10.0
    )


def test_flat_demand_tiers_and_monthly_structures() -> None:
    # Jan uses structure 0: 100 kW at 10 + 50 kW at 5 = 1250; Feb uses structure 1: 150 x 2.
    tariff = Tariff(
        flat_demand_periods=(demand((100.0, 10.0), (None, 5.0)), demand((None, 2.0))),
        flat_demand_months=(0, 1) + (0,) * 10,
    )
    power = np.full(31 * 24 + 28 * 24, 150.0)
    bill = compute_bill(tariff, power, start=JAN, step_s=H)
    assert [m.demand_flat for m in bill.months] == pytest.approx([1250.0, 300.0])


def test_tou_demand_takes_a_peak_per_period() -> None:
    # Period 1 covers 16:00-20:00 at 20/kW, period 0 elsewhere at 5/kW.
    s = hours_sched(range(16, 21), 1, 0)
    tariff = Tariff(
        demand_periods=(demand((None, 5.0)), demand((None, 20.0))),
        demand_weekday_schedule=s,
        demand_weekend_schedule=s,
    )
    power = np.full(24, 10.0)
    power[3] = 40.0  # off-peak peak
    power[17] = 25.0  # on-peak peak
    month = compute_bill(tariff, power, start=JAN, step_s=H).months[0]
    assert month.tou_peak_kw == (40.0, 25.0)
    assert month.peak_kw == 40.0
    assert month.demand_tou == pytest.approx(40 * 5 + 25 * 20)


def test_export_never_sets_a_demand_peak() -> None:
    tariff = Tariff(flat_demand_periods=(demand((None, 10.0)),))
    bill = compute_bill(tariff, np.full(24, -50.0), start=JAN, step_s=H)
    assert bill.months[0].peak_kw == 0.0
    assert bill.demand_flat == 0.0


def test_net_billing_credits_export_at_the_sell_rate() -> None:
    # 12 h import 10 kW at 0.2, 12 h export 5 kW at 0.05: 24 - 3 = 21
    power = np.where(np.arange(24) < 12, 10.0, -5.0)
    tariff = flat_energy(0.2, sell=0.05, metering="net_billing")
    month = compute_bill(tariff, power, start=JAN, step_s=H).months[0]
    assert month.energy_import == pytest.approx(24.0)
    assert month.export_credit == pytest.approx(3.0)
    assert month.energy == pytest.approx(21.0)


def test_net_billing_tiers_follow_the_running_monthly_total() -> None:
    # 0.1 up to 100 kWh then 0.3; 3 h at 50 kW = 150 kWh -> 100*0.1 + 50*0.3 = 25
    period = EnergyPeriod(
        tiers=(EnergyTier(max_kwh=100, rate_per_kwh=0.1), EnergyTier(rate_per_kwh=0.3))
    )
    tariff = Tariff(energy_periods=(period,), metering="net_billing")
    assert compute_bill(tariff, np.full(3, 50.0), start=JAN, step_s=H).energy == pytest.approx(25.0)


def test_net_metering_nets_within_the_month_and_rolls_surplus_over() -> None:
    # Jan: 10 kWh import, 30 kWh export -> charge 0, 20 kWh carried into Feb.
    # Feb: 50 kWh import - 20 carried = 30 kWh at 1.0.
    jan = np.zeros(31 * 24)
    jan[:10], jan[10:40] = 1.0, -1.0
    feb = np.zeros(28 * 24)
    feb[:50] = 1.0
    tariff = flat_energy(1.0, sell=0.5)  # sell rate unused under net metering
    bill = compute_bill(tariff, np.concatenate([jan, feb]), start=JAN, step_s=H)
    assert [m.energy for m in bill.months] == pytest.approx([0.0, 30.0])
    assert bill.months[0].nm_surplus_kwh == pytest.approx(20.0)


def test_net_metering_surplus_expires_after_the_true_up_month() -> None:
    # Surplus in December does not reach January with a December true-up.
    dec = np.full(31 * 24, -1.0)
    jan = np.full(31 * 24, 1.0)
    tariff = flat_energy(1.0, nm_true_up_month=12, nm_yearend_sell_per_kwh=0.02)
    bill = compute_bill(tariff, np.concatenate([dec, jan]), start=datetime(2018, 12, 1), step_s=H)
    assert bill.months[1].energy == pytest.approx(744.0)
    assert bill.months[0].true_up_credit == pytest.approx(744 * 0.02)


def test_fixed_and_minimum_charges() -> None:
    # Two months of 1 kWh at 1.0 plus 5 fixed = 6 each; monthly minimum 10 tops up 4 each;
    # the annual minimum applies only in December, absent here.
    power = np.zeros((31 + 28) * 24)
    power[0] = power[31 * 24] = 1.0
    tariff = flat_energy(1.0, fixed_monthly=5.0, minimum_monthly=10.0, minimum_annual=1e6)
    bill = compute_bill(tariff, power, start=JAN, step_s=H)
    assert [m.minimum for m in bill.months] == pytest.approx([4.0, 4.0])
    assert bill.total == pytest.approx(20.0)


def test_annual_minimum_is_settled_in_december() -> None:
    # One December at 1 kW, 0.1 $/kWh: bill 74.4; annual minimum 100 adds 25.6.
    tariff = flat_energy(0.1, minimum_annual=100.0)
    bill = compute_bill(tariff, np.ones(31 * 24), start=datetime(2018, 12, 1), step_s=H)
    assert bill.minimum == pytest.approx(25.6)


def test_dynamic_prices_replace_or_add() -> None:
    prices = PriceSeries(start=JAN, step_s=H, buy_per_kwh=(0.5, 1.0), sell_per_kwh=(0.1, 0.2))
    power = np.array([2.0, -3.0])
    replace = flat_energy(9.0, dynamic_prices=prices)
    # import 2 kWh at 0.5; export 3 kWh at 0.2
    month = compute_bill(replace, power, start=JAN, step_s=H).months[0]
    assert (month.energy_import, month.export_credit) == pytest.approx((1.0, 0.6))
    add = flat_energy(
        0.25, metering="net_billing", dynamic_prices=prices.model_copy(update={"mode": "add"})
    )
    # TOU: 2 kWh at 0.25 = 0.5, plus adder 1.0; export: TOU sell 0 + 0.6
    month = compute_bill(add, power, start=JAN, step_s=H).months[0]
    assert (month.energy_import, month.export_credit) == pytest.approx((1.5, 0.6))


def test_prices_must_cover_the_billed_span() -> None:
    prices = PriceSeries(start=JAN, step_s=H, buy_per_kwh=(0.5,))
    with pytest.raises(BillInputError, match="cover"):
        compute_bill(flat_energy(0.1, dynamic_prices=prices), np.ones(2), start=JAN, step_s=H)


def test_timestamps_and_start_step_agree() -> None:
    rng = np.random.default_rng(1)
    power = rng.normal(5.0, 4.0, 4 * 24 * 40)
    stamps = np.datetime64("2018-01-20T00:00") + np.arange(power.size) * np.timedelta64(900, "s")
    tariff = flat_energy(
        0.1, sell=0.03, metering="net_billing", flat_demand_periods=(demand((None, 3.0)),)
    )
    a = compute_bill(tariff, power, timestamps=stamps)
    b = compute_bill(tariff, power, start=datetime(2018, 1, 20), step_s=900)
    assert a == b
    assert len(a.months) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": JAN, "step_s": 7}, "divide 3600"),
        ({"start": JAN}, "start and step_s"),
        (
            {
                "timestamps": np.array(
                    ["2018-01-01T00", "2018-01-01T01", "2018-01-01T03"], dtype="datetime64[s]"
                )
            },
            "constant step",
        ),
        ({"timestamps": np.array(["2018-01-01T00"], dtype="datetime64[s]")}, "entries"),
        ({"start": datetime(2018, 1, 1, tzinfo=UTC), "step_s": H}, "naive"),
    ],
)
def test_bad_time_inputs_raise(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(BillInputError, match=message):
        compute_bill(Tariff(), np.ones(3), **kwargs)  # type: ignore[arg-type]


def test_nan_power_is_rejected() -> None:
    with pytest.raises(BillInputError, match="NaN"):
        compute_bill(Tariff(), np.array([1.0, np.nan]), start=JAN, step_s=H)


def test_demand_interval_must_be_a_multiple_of_the_step() -> None:
    tariff = Tariff(flat_demand_periods=(demand((None, 1.0)),), demand_interval_s=900)
    with pytest.raises(BillInputError, match="multiple"):
        compute_bill(tariff, np.ones(10), start=JAN, step_s=600)


def test_a_year_at_one_minute_bills_well_under_a_second() -> None:
    rng = np.random.default_rng(0)
    power = rng.normal(3000.0, 1500.0, 525_600)
    s = hours_sched(range(15, 20), 1, 0)
    tiers = (EnergyTier(max_kwh=1e5, rate_per_kwh=0.07), EnergyTier(rate_per_kwh=0.08))
    tariff = Tariff(
        energy_periods=(EnergyPeriod(tiers=tiers), EnergyPeriod(tiers=tiers)),
        energy_weekday_schedule=s,
        energy_weekend_schedule=sched(0),
        demand_periods=(demand((100.0, 19.5), (None, 13.0)), demand((None, 8.0))),
        demand_weekday_schedule=s,
        demand_weekend_schedule=sched(0),
        flat_demand_periods=(demand((None, 6.46)),),
        fixed_monthly=35.28,
    )
    t0 = time.perf_counter()
    bill = compute_bill(tariff, power, start=JAN, step_s=60)
    elapsed = time.perf_counter() - t0
    assert len(bill.months) == 12
    assert elapsed < 1.0
