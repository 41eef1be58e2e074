"""The economics section: the inputs from the site file next to what they give (payback,
NPV, IRR, LCOS), and in words why they agree or seem not to: a payback within the lifetime
next to a negative NPV is the discount rate and the degradation at work."""

from __future__ import annotations

import html

from ems.backtest.financials import Economics, Financials
from ems.backtest.report.charts import cash_flow_chart
from ems.backtest.report.formatting import Currency, days, number, percent
from ems.backtest.report.tables import Column, table


def _pv(e: Economics, year1_savings: float) -> tuple[float, float, float]:
    """Present value of the savings, of O&M and of the end-of-life cost."""
    r = e.discount_rate
    years = range(1, e.lifetime_years + 1)
    savings = sum(year1_savings * e.keep(n) / (1.0 + r) ** n for n in years)
    om = sum((e.om_per_year + e.replacement(n)) / (1.0 + r) ** n for n in years)
    return savings, om, e.end_of_life_cost / (1.0 + r) ** (e.lifetime_years + 1)


def payback_year(flows: tuple[float, ...], rate: float = 0.0) -> int | None:
    """The first year by whose end the running sum of the (discounted) cash flows is no longer negative."""
    total = 0.0
    for n, cf in enumerate(flows):
        total += cf / (1.0 + rate) ** n
        if n > 0 and total >= 0.0:
            return n
    return None


def _years(x: float | None) -> str:
    return "never" if x is None else f"{number(x, 1)} years"


def _discounted_payback(e: Economics, fin: Financials) -> str:
    year = payback_year(fin.cash_flows, e.discount_rate)
    return f"year {year}" if year is not None and year <= e.lifetime_years else "not within the lifetime"


def explanation(e: Economics, fin: Financials, cur: Currency) -> str:
    """Why the payback and the NPV say what they say, in plain sentences."""
    r, d, n_years = percent(e.discount_rate), percent(e.degradation_per_year), e.lifetime_years
    pv_savings, pv_om, pv_eol = _pv(e, fin.annual_savings)
    net1 = fin.annual_savings - e.om_per_year
    irr = "no IRR exists" if fin.irr is None else f"the IRR ({percent(fin.irr)})"
    if fin.simple_payback_years is None:
        return (f"Year-1 savings ({cur.money(fin.annual_savings)}) do not cover the O&M "
                f"({cur.money(e.om_per_year)} a year): the battery never pays back and the NPV is negative at any "
                f"discount rate.")
    simple = (f"The simple payback ({_years(fin.simple_payback_years)}) is the CAPEX divided by year-1 savings net "
              f"of O&M ({cur.money(net1)}): undiscounted, and as if the battery never aged. ")
    npv_terms = (f"The NPV discounts each later year at {r} and lets the savings shrink by {d} a year with "
                 f"degradation: over the {n_years}-year lifetime the savings are worth {cur.money(pv_savings)} "
                 f"today, the O&M {cur.money(pv_om)} and the end-of-life cost {cur.money(pv_eol)}, against the "
                 f"CAPEX of {cur.money(e.capex)} paid at once. ")
    undiscounted = payback_year(fin.cash_flows)
    if fin.npv < 0:
        pays_back = undiscounted is not None and undiscounted <= n_years
        crossing = f"crosses zero in year {undiscounted}" if pays_back else "never crosses zero"
        year = undiscounted if pays_back and undiscounted is not None else n_years
        return (simple + npv_terms +
                f"So the NPV is negative ({cur.money(fin.npv)}) although the undiscounted running sum, degradation "
                f"included, {crossing}: "
                f"money saved in year {year} is worth only {percent(1 / (1 + e.discount_rate) ** year, 0)} of "
                f"money paid today, and {irr} is below the {r} the savings must earn.")
    return (simple + npv_terms +
            f"The NPV is positive ({cur.money(fin.npv)}): {irr} is above the {r} the savings must earn, and the "
            f"discounted payback is {_discounted_payback(e, fin)}.")


def economics_section(e: Economics | None, fin: Financials | None, cur: Currency, capacity_kwh: float,
                      run_days: float, billing_months: int, stored: tuple[float, float] = (0.0, 0.0)) -> str:
    """`stored`: the charge the battery ends with against its start (kWh) and its value, part
    of the year-1 savings."""
    if e is None or fin is None:
        return ("<h2>Economics</h2><p>The site file has no <code>economics:</code> section (CAPEX, O&amp;M, "
                "discount rate, lifetime): no payback, NPV, IRR or LCOS.</p>")
    inputs = table([Column("Input", numeric=False), Column("Value")], [
        ["Capital cost (CAPEX, year 0)", cur.money(e.capex)],
        ["CAPEX per kWh usable", f"{number(e.capex / capacity_kwh)} {cur.per('kWh')}" if capacity_kwh else "\u2013"],
        ["O&M", f"{cur.money(e.om_per_year)} per year"],
        ["Discount rate", f"{percent(e.discount_rate)} per year"],
        ["Lifetime", f"{e.lifetime_years} years"],
        ["Degradation (usable energy and savings)", f"{percent(e.degradation_per_year)} per year"
         if e.capacity_by_year is None else "LFP ageing model (year 10: "
         f"{percent(e.capacity_by_year[min(9, len(e.capacity_by_year) - 1)])} of new)"
         + (f", replaced at the end of year {', '.join(str(y) for y in e.replacement_years)} for "
            f"{cur.money(e.replacement_cost)}" if e.replacement_years else "")],
        [f"End-of-life cost (year {e.lifetime_years + 1}; negative: salvage)", cur.money(e.end_of_life_cost)],
    ], caption="Inputs (site file, economics:)")
    scaled = run_days < 364.5
    results = table([Column("Result", numeric=False), Column("Value")], [
        ["Year-1 savings" + (" (scaled to a year)" if scaled else ""), cur.money(fin.annual_savings)],
        ["Year-1 savings after O&M", cur.money(fin.annual_savings - e.om_per_year)],
        ["Charge at the end against the start (in the savings)",
         f"{number(stored[0], 0)} kWh, {cur.money(stored[1])}" + (" in the run" if scaled else "")],
        ["Simple payback", _years(fin.simple_payback_years)],
        ["Discounted payback", _discounted_payback(e, fin)],
        [f"NPV at {percent(e.discount_rate)}", cur.money(fin.npv)],
        ["IRR", percent(fin.irr)],
        ["LCOS (per kWh discharged)", "\u2013" if fin.lcos_per_kwh is None
         else f"{number(fin.lcos_per_kwh, 3)} {cur.per('kWh')}"],
        ["Average price of the energy charged", f"{number(fin.charge_price_per_kwh, 3)} {cur.per('kWh')}"],
    ], caption="Results")
    note = ""
    if scaled:
        note = (f"<p class=note>The run covers {days(run_days)}, so year 1 is extrapolated: demand and "
                f"fixed charges &times; 12 / {billing_months} billing month{'s' if billing_months != 1 else ''} "
                f"(a partial month is billed a whole month's demand charge), energy and the charge the battery "
                f"ends with against its start &times; 365 / "
                f"{days(run_days)}. One month's peak says little about the others: a whole year is the "
                f"figure to trust.</p>")
    return ("<h2>Economics</h2>" + note +
            f"<div class=pair>{inputs}{results}</div>"
            f"<p>{html.escape(explanation(e, fin, cur))}</p>"
            "<h3>Cash flows over the lifetime</h3>" + cash_flow_chart(fin, e, cur))
