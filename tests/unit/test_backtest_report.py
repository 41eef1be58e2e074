"""How the backtest report writes numbers, money, months and periods, and how it explains
the economics; the page itself is checked on a real run in test_backtest.py."""

from __future__ import annotations

from datetime import datetime

import pytest

from ems.backtest.financials import Economics, financials
from ems.backtest.report.economics import explanation, payback_year
from ems.backtest.report.formatting import Currency, PowerUnit, days, month_label, number, percent, period
from ems.backtest.report.inline_svg import figure_svg

M = "\u2212"  # the minus sign the report writes


@pytest.mark.parametrize(("value", "digits", "text"), [
    (4304.53, 0, "4,305"), (-420243.9, 0, f"{M}420,244"), (1.6e7, 0, "16,000,000"), (0.0829, 3, "0.083"),
    (-0.2, 0, "0"), (None, 0, "\u2013"), (float("nan"), 1, "\u2013"),
])
def test_numbers_have_separators_a_minus_sign_and_never_an_exponent(value, digits, text) -> None:
    assert number(value, digits) == text


def test_percent_months_periods_and_days() -> None:
    assert percent(0.0219) == "2.2 %"
    assert month_label("2018-01") == "Jan 2018"
    assert period(datetime(2018, 1, 1), 35040, 900) == "1 Jan \u2013 31 Dec 2018"
    assert period(datetime(2018, 12, 20), 30 * 96, 900) == "20 Dec 2018 \u2013 18 Jan 2019"
    assert period(datetime(2018, 7, 2), 96, 900) == "2 Jul 2018"
    assert days(28.0) == "28 days" and days(1.0) == "1 day" and days(13.5) == "13.5 days"


def test_money_names_its_currency_or_says_it_does_not_know_it() -> None:
    assert Currency("USD").money(-1234.4) == f"USD {M}1,234"
    assert Currency("USD").per("kWh") == "USD/kWh"
    assert Currency("").money(5.0) == "5 currency units"
    assert Currency("").unit == "currency units"


def test_power_is_in_kw_up_to_ten_megawatts() -> None:
    assert PowerUnit.for_peak(4305.0).name == "kW"
    assert PowerUnit.for_peak(25_000.0) == PowerUnit("MW", 1e-3)


def test_payback_year_is_where_the_running_sum_turns() -> None:
    assert payback_year((-100.0, 60.0, 60.0)) == 2
    assert payback_year((-100.0, 60.0, 60.0), rate=0.2) is None  # 50 + 41.7 < 100
    assert payback_year((-100.0, 10.0)) is None


SITE = Economics(capex=1_600_000.0, om_per_year=20_000.0, discount_rate=0.07, lifetime_years=15,
                 degradation_per_year=0.02, end_of_life_cost=40_000.0)


def test_a_payback_within_the_lifetime_next_to_a_negative_npv_is_explained() -> None:
    fin = financials(SITE, 169_000.0, 1e6, 9e5, 0.07)
    assert fin.simple_payback_years is not None and fin.simple_payback_years < SITE.lifetime_years
    assert fin.npv < 0
    text = explanation(SITE, fin, Currency("USD"))
    assert "NPV is negative" in text
    for cause in ("7.0 %", "2.0 % a year", "degradation", "undiscounted", "IRR"):
        assert cause in text, cause


def test_a_positive_npv_and_a_battery_that_never_pays_back_are_said_plainly() -> None:
    good = financials(SITE, 400_000.0, 1e6, 9e5, 0.07)
    assert "NPV is positive" in explanation(SITE, good, Currency("USD"))
    bad = financials(SITE, 15_000.0, 1e6, 9e5, 0.07)  # less than the O&M
    assert "never pays back" in explanation(SITE, bad, Currency("USD"))


def test_a_chart_is_inline_svg_without_a_url() -> None:
    svg = figure_svg("empty", lambda fig: fig.subplots().plot([0, 1], [0, 1_000_000]), 4.0, 2.0)
    assert svg.startswith("<svg") and 'aria-label="empty"' in svg
    assert "http" not in svg and "<?xml" not in svg and "<metadata" not in svg
