"""Payback, NPV, IRR and LCOS on cases that can be worked out by hand."""

from __future__ import annotations

import pytest

from ems.backtest.financials import Economics, financials, irr, lcos, npv


def econ(**kw) -> Economics:
    base = {"capex": 1000.0, "om_per_year": 0.0, "discount_rate": 0.0, "lifetime_years": 10,
            "degradation_per_year": 0.0, "end_of_life_cost": 0.0}
    return Economics(**(base | kw))


def test_npv_discounts_from_year_one() -> None:
    assert npv(0.1, [-100.0, 110.0]) == pytest.approx(0.0)
    assert npv(0.0, [-100.0, 30.0, 30.0]) == pytest.approx(-40.0)


def test_irr_of_a_simple_loan() -> None:
    assert irr([-100.0, 110.0]) == pytest.approx(0.10)
    assert irr([-100.0, 0.0, 121.0]) == pytest.approx(0.10)
    assert irr([-100.0, 10.0]) == pytest.approx(-0.9)  # loses 90 %
    assert irr([-100.0, -10.0]) is None  # no rate makes it zero
    # an end-of-life cost makes NPV rise through zero near -100 %: not a return. A project that
    # returns far beyond the search (20x a year) has no IRR in it, not -95 %
    assert irr([-1e6, *[2e7] * 15, -1e6]) is None
    moderate = irr([-1e6, *[2e5] * 15, -4e4])
    assert moderate is not None and 0.17 < moderate < 0.19


def test_irr_skips_a_rising_root_that_falls_exactly_on_the_grid() -> None:
    # capex, savings, an end-of-life cost: NPV is exactly 0 at 0 % (a grid point), rising through
    # it; it falls through zero at 100 %, the return
    assert irr([-1000.0, 3000.0, -2000.0]) == pytest.approx(1.0)
    # a conventional project whose NPV falls to exactly 0 at a grid point keeps that IRR,
    # the top of the search included
    assert irr([-1000.0, *[300.0] * 4, -200.0]) == 0.0
    assert irr([-1.0, 11.0]) == pytest.approx(10.0)


def test_lcos_with_no_discounting_is_cost_over_energy() -> None:
    # 1000 capex + 10 y x (50 O&M + 0.1 x 1000 kWh charged) + 100 EoL over 10 y x 900 kWh
    e = econ(om_per_year=50.0, end_of_life_cost=100.0)
    assert lcos(e, 1000.0, 900.0, 0.1) == pytest.approx((1000 + 10 * (50 + 100) + 100) / 9000)


def test_lcos_discounts_and_degrades() -> None:
    e = econ(lifetime_years=2, discount_rate=0.1, degradation_per_year=0.5, end_of_life_cost=121.0 * 1.1)
    # cost: 1000 + (0.1*100)/1.1 + (0.1*50)/1.21 + 133.1/1.331 ; energy: 100/1.1 + 50/1.21
    cost = 1000 + 10 / 1.1 + 5 / 1.21 + 100.0
    energy = 100 / 1.1 + 50 / 1.21
    assert lcos(e, 100.0, 100.0, 0.1) == pytest.approx(cost / energy)
    assert lcos(e, 0.0, 0.0, 0.1) is None


def test_financials_payback_npv_irr() -> None:
    f = financials(econ(om_per_year=50.0, lifetime_years=10), annual_savings=250.0,
                   e_in_kwh=1000.0, e_out_kwh=900.0, charge_price_per_kwh=0.1)
    assert f.simple_payback_years == pytest.approx(5.0)  # 1000 / (250 - 50)
    assert f.npv == pytest.approx(-1000 + 10 * 200)  # r = 0
    assert f.cash_flows[0] == -1000 and f.cash_flows[-1] == 0.0 and len(f.cash_flows) == 12
    assert f.irr is not None and npv(f.irr, f.cash_flows) == pytest.approx(0.0, abs=1e-6)
    never = financials(econ(om_per_year=300.0), 250.0, 1000.0, 900.0, 0.1)
    assert never.simple_payback_years is None and never.irr is None


def test_irr_with_an_end_of_life_cost_after_the_savings() -> None:
    # 300 a year for 5 years pays 1000 back at a bit under 15 % (annuity factor 3.35),
    # less a 50 decommissioning cost in year 6: a sign change at the far end
    flows = [-1000.0, *[300.0] * 5, -50.0]
    r = irr(flows)
    assert r is not None and 0.10 < r < 0.15 and npv(r, flows) == pytest.approx(0.0, abs=1e-6)
