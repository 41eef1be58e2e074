"""Does the battery pay for itself: payback, NPV, IRR and LCOS from a year of results.

Conventions (money in the tariff's currency, years counted from commissioning):

* year 0: CAPEX; years 1..N: savings minus O&M; year N + 1: end-of-life cost, as in
  Schmidt et al. (Joule 2019), who discount EoL one year past the lifetime;
* degradation shrinks usable energy by `degradation_per_year` a year (geometric), and
  with it the year's savings and throughput: year n has (1 - d)^(n - 1) of year 1's;
  with an ageing model (ems/backtest/ageing.py) year n has instead its mean usable energy
  relative to new, `capacity_by_year[n - 1]`, divided by year 1's (the backtest year ran
  on a new battery), and a replacement costs `replacement_cost` at the end of each of
  `replacement_years`;
* LCOS (Schmidt 2019) = [CAPEX + sum_n (O&M_n + price_in * E_in,n) / (1+r)^n
  + EoL / (1+r)^(N+1)] / sum_n E_out,n / (1+r)^n, per kWh discharged;
* simple payback = CAPEX / (year-1 savings - O&M), undiscounted, without degradation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ems.backtest.errors import BacktestInputError
from ems.model.errors import ConfigError


@dataclass(frozen=True)
class Economics:
    capex: float
    om_per_year: float
    discount_rate: float
    lifetime_years: int
    degradation_per_year: float
    end_of_life_cost: float
    capacity_by_year: tuple[float, ...] | None = None  # from an ageing model: mean usable energy, years 1..N
    replacement_cost: float = 0.0
    replacement_years: tuple[int, ...] = field(default=())

    def keep(self, year: int) -> float:
        """Year `year`'s savings and throughput as a share of year 1's."""
        if self.capacity_by_year is not None:
            return self.capacity_by_year[year - 1] / self.capacity_by_year[0]
        return (1.0 - self.degradation_per_year) ** (year - 1)

    def replacement(self, year: int) -> float:
        return self.replacement_cost * self.replacement_years.count(year)


@dataclass(frozen=True)
class Financials:
    annual_savings: float  # year 1, before O&M
    simple_payback_years: float | None  # None: never pays back
    npv: float
    irr: float | None  # None: no rate makes NPV zero
    lcos_per_kwh: float | None  # None: nothing discharged
    charge_price_per_kwh: float
    cash_flows: tuple[float, ...]


def npv(rate: float, cash_flows: Sequence[float]) -> float:
    """Net present value; cash_flows[0] is at year 0 (not discounted)."""
    if rate <= -1.0:
        raise BacktestInputError("discount rate must be above -100 %")
    return sum(cf / (1.0 + rate) ** n for n, cf in enumerate(cash_flows))


# a price per kW (or kWh) past any equipment's; far beyond, the sums overflow (Infinity in sizing.json)
MAX_PRICE_PER_KW = 1e6


def check_price_per_kw(option: str, value: float) -> None:
    """A sizing price given on the command line, 0 to MAX_PRICE_PER_KW; the error names `option`."""
    if not 0.0 <= value <= MAX_PRICE_PER_KW:  # NaN fails too
        raise ConfigError(f"{option}: a number from 0 to {MAX_PRICE_PER_KW:,.0f}")


def irr(cash_flows: Sequence[float], lo: float = -0.99, hi: float = 10.0, tol: float = 1e-10) -> float | None:
    """The rate at which NPV falls through zero (an investment's: money out first), nearest to
    0 % when there are several; None if it does not in [lo, hi]. Scans a grid for sign
    changes, then bisects. A root where NPV rises through zero is not a return: flows that end
    negative (an end-of-life cost) have one near -100 %, which a return above `hi` left as
    the only root (a sizing point saving far more than it cost read -95 %)."""
    grid: list[float] = sorted({lo, hi, *(lo + (0.0 - lo) * i / 200 for i in range(201)),
                   *(1e-4 * (hi / 1e-4) ** (i / 400) for i in range(401))})
    values = [npv(r, cash_flows) for r in grid]
    # where NPV falls, into or out of an exact zero on the grid too (`hi` included): 0 % on
    # [-1000, 3000, -2000] is a rising root, the return is 100 %
    brackets = [(a, b, fa, fb) for a, b, fa, fb in zip(grid, grid[1:], values, values[1:], strict=False)
                if fa >= 0.0 >= fb and fa > fb]
    if not brackets:
        return None
    a, b, fa, fb = (float(x) for x in min(brackets, key=lambda br: min(abs(br[0]), abs(br[1]))))
    if fa == 0.0 or fb == 0.0:
        return a if fa == 0.0 else b
    for _ in range(200):
        mid = 0.5 * (a + b)
        f_mid = npv(mid, cash_flows)
        if abs(f_mid) < tol or b - a < tol:
            return mid
        if (f_mid > 0) == (fa > 0):
            a, fa = mid, f_mid
        else:
            b = mid
    return 0.5 * (a + b)


def lcos(e: Economics, e_in_kwh: float, e_out_kwh: float, charge_price_per_kwh: float) -> float | None:
    """Schmidt et al. 2019, with year-1 charged/discharged energy degraded year over year."""
    r, n_years = e.discount_rate, e.lifetime_years
    cost = e.capex + e.end_of_life_cost / (1.0 + r) ** (n_years + 1)
    energy = 0.0
    for n in range(1, n_years + 1):
        fade = e.keep(n)
        cost += (e.om_per_year + e.replacement(n) + charge_price_per_kwh * e_in_kwh * fade) / (1.0 + r) ** n
        energy += e_out_kwh * fade / (1.0 + r) ** n
    return None if energy <= 0 else cost / energy


def financials(e: Economics, annual_savings: float, e_in_kwh: float, e_out_kwh: float,
               charge_price_per_kwh: float) -> Financials:
    """From year-1 figures (a backtest shorter than a year is scaled up by the caller)."""
    if e.capacity_by_year is not None and len(e.capacity_by_year) < e.lifetime_years:
        raise BacktestInputError("the ageing path is shorter than the lifetime")
    flows = [-e.capex]
    flows += [annual_savings * e.keep(n) - e.om_per_year - e.replacement(n) for n in range(1, e.lifetime_years + 1)]
    flows.append(-e.end_of_life_cost)
    net_year1 = annual_savings - e.om_per_year
    return Financials(
        annual_savings=annual_savings,
        simple_payback_years=e.capex / net_year1 if net_year1 > 0 else None,
        npv=npv(e.discount_rate, flows),
        irr=irr(flows),
        lcos_per_kwh=lcos(e, e_in_kwh, e_out_kwh, charge_price_per_kwh),
        charge_price_per_kwh=charge_price_per_kwh,
        cash_flows=tuple(flows),
    )
