"""From a trace to the answer: bills with and without battery, savings by component,
throughput, the perfect-foresight bound and the share captured, and the financials."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from ems.backtest.engine import Trace
from ems.backtest.financials import Economics, Financials, financials
from ems.backtest.foresight import Foresight, month_slices
from ems.planning.depth_wear import WearPrice
from ems.tariff.bill import Bill, MonthlyBill, compute_bill
from ems.tariff.model import Tariff
from ems.tariff_signals import tariff_signals

FloatArray = npt.NDArray[np.float64]
YEAR_S = 365.0 * 86400.0
COMPONENTS = ("energy", "demand_tou", "demand_flat", "fixed", "minimum")


@dataclass(frozen=True)
class MonthRow:
    month: str  # YYYY-MM
    bill_without: float
    bill_with: float
    savings: float
    savings_by_component: dict[str, float]
    peak_without_kw: float
    peak_with_kw: float
    discharged_kwh: float
    charged_kwh: float
    equivalent_full_cycles: float
    foresight_savings: float | None  # the month's own bound (`month_bounds`), bill savings
    net_savings: float = 0.0  # savings less the planner's wear cost on the kWh discharged
    foresight_net_savings: float | None = None  # the month's bound net of the same wear cost
    # the charge each ends the month with against its start, at `stored_energy_price`
    stored_value: float = 0.0
    foresight_stored_value: float | None = None

    @property
    def share(self) -> float | None:
        """(Net savings + the charge kept) / the same of the month's bound, which maximises
        exactly that over dispatches that include the live month's: at most 1."""
        b = self.foresight_net_savings
        if b is None:
            return None
        bound = b + (self.foresight_stored_value or 0.0)
        return None if bound <= 0 else (self.net_savings + self.stored_value) / bound


@dataclass(frozen=True)
class Result:
    months: tuple[MonthRow, ...]
    total: dict[str, float]
    foresight: dict[str, float] | None
    financials: Financials | None
    run: dict[str, Any] = field(default_factory=dict)
    ageing: dict[str, Any] | None = None  # the LFP ageing model's lifetime, where economics.ageing is set

    def to_json(self) -> dict[str, Any]:
        return {"months": [asdict(m) for m in self.months], "total": self.total, "foresight": self.foresight,
                "financials": None if self.financials is None else asdict(self.financials), "run": self.run,
                "ageing": self.ageing}


def _component(m: MonthlyBill, name: str) -> float:
    value = getattr(m, name)
    return float(value) - (float(m.true_up_credit) if name == "energy" else 0.0)


def _per_month(values: FloatArray, slices: list[slice]) -> list[float]:
    return [float(values[s].sum()) for s in slices]


def _import_prices(tariff: Tariff, start: datetime, step_s: int, load_w: FloatArray) -> FloatArray:
    month_kwh = float(np.maximum(load_w, 0).mean()) / 1000.0 * 730.0  # mean kW x hours in a month
    sig = tariff_signals(tariff, start, step_s, load_w.size, month_kwh=month_kwh,
                         reference_peak_kw=float(load_w.max()) / 1000.0)
    return sig.import_price_per_kwh


def charge_price(tariff: Tariff, start: datetime, step_s: int, battery_w: FloatArray,
                 load_w: FloatArray) -> float:
    """Average import price paid for the energy charged (for LCOS)."""
    charge_kwh = np.maximum(-battery_w, 0.0) * step_s / 3.6e6
    if charge_kwh.sum() <= 0:
        return 0.0
    return float((_import_prices(tariff, start, step_s, load_w) * charge_kwh).sum() / charge_kwh.sum())


def mean_import_price(tariff: Tariff, start: datetime, step_s: int, load_w: FloatArray) -> float:
    """The run's mean import energy price per kWh (its steps weighted alike)."""
    return float(_import_prices(tariff, start, step_s, load_w).mean())


def stored_energy_price(tariff: Tariff, trace: Trace, charged_at: float) -> float:
    """What a kWh stored costs to buy back (or is worth kept): `charged_at`, the average import
    price the run charged at (`charge_price`; the run's mean import price where it charged
    nothing), over the units' charge efficiency (a stored kWh took more than one at the meter).
    The charge a run (or its bound) ends with against its start is valued at this."""
    at_meter = charged_at if charged_at > 0 else mean_import_price(tariff, trace.start, trace.step_s, trace.load_w)
    return at_meter / trace.charge_efficiency


def soc_at_month_edges(trace: Trace) -> list[float]:
    """The site SoC at the start of the run and at the end of each calendar month in it."""
    return [trace.soc_initial] + [float(trace.soc[sl.stop - 1])
                                  for sl in month_slices(trace.start, trace.step_s, trace.soc.size)]


# Charged once per billing month (a partial month is billed as a whole one): a run
# shorter than a year scales these by months, the rest (energy, the annual minimum) by time.
PER_MONTH = ("demand_tou", "demand_flat", "fixed")


def annual_savings(months: tuple[MonthRow, ...] | list[MonthRow], to_year: float) -> float:
    """Year-1 savings from a run that `to_year` (a year / the run's length) scales to a year:
    per-month charges x 12 / months billed, the rest x `to_year`. Scaling everything by
    time would count a partial month's whole demand charge as if it recurred every few days."""
    by_month = sum(m.savings_by_component[c] for m in months for c in PER_MONTH)
    return _to_year(sum(m.savings for m in months), by_month, len(months), to_year)


def _to_year(total: float, by_month: float, months: int, to_year: float) -> float:
    return (total - by_month) * to_year + by_month * 12.0 / months


def savings_per_year(tariff: Tariff, before_w: FloatArray, after_w: FloatArray, start: datetime,
                     step_s: int) -> float:
    """Year-1 savings of moving the site's import from `before_w` to `after_w` (W per step; a
    run shorter than a year scaled up as `annual_savings` does): e.g. what PV saves."""
    a = compute_bill(tariff, before_w / 1000.0, start=start, step_s=step_s)
    b = compute_bill(tariff, after_w / 1000.0, start=start, step_s=step_s)
    by_month = sum(_component(x, c) - _component(y, c) for x, y in zip(a.months, b.months, strict=True)
                   for c in PER_MONTH)
    return _to_year(a.total - b.total, by_month, len(a.months), YEAR_S / (before_w.size * step_s))


def evaluate(tariff: Tariff, trace: Trace, foresight: Foresight | None, econ: Economics | None,
             wear_price: WearPrice) -> Result:
    """The run's bills and savings; savings net of wear priced as the planner prices it (the
    bound's wear is its own plan's)."""
    step = trace.step_s
    dt_h = step / 3600.0
    without = compute_bill(tariff, trace.load_w / 1000.0, start=trace.start, step_s=step)
    with_b = compute_bill(tariff, trace.grid_w / 1000.0, start=trace.start, step_s=step)
    pf_bill: Bill | None = None
    month_bill: Bill | None = None
    if foresight is not None:
        pf_bill = compute_bill(tariff, foresight.grid_w / 1000.0, start=trace.start, step_s=foresight.step_s)
        if foresight.month_grid_w is not None:
            month_bill = compute_bill(tariff, foresight.month_grid_w / 1000.0, start=trace.start,
                                      step_s=foresight.step_s)
    slices = month_slices(trace.start, step, trace.grid_w.size)
    dis_kwh = np.maximum(trace.battery_w, 0.0) * dt_h / 1000.0
    dis = _per_month(dis_kwh, slices)
    soc_before = np.concatenate([[trace.soc_initial], trace.soc[:-1]])
    # each month from its own start, as its bound's LP prices it (segments filled from the
    # bottom there): no month's dispatch is then priced below what its bound could pay for it
    wear_month = [float(np.sum(wear_price.per_step(dis_kwh[sl], soc_before[sl], trace.soc[sl]))) for sl in slices]
    cha = _per_month(np.maximum(-trace.battery_w, 0.0) * dt_h / 1000.0, slices)
    cap_kwh = trace.capacity_wh / 1000.0
    price = charge_price(tariff, trace.start, step, trace.battery_w, trace.load_w)
    stored_price = stored_energy_price(tariff, trace, price)
    # each month's charge at its start and end, the live run's and its bound's (which starts
    # where the live month did): what each kept is credited in the month's share
    soc_edges = soc_at_month_edges(trace)
    bound_end = foresight.month_end_soc if foresight is not None else ()
    months = []
    for i, (a, b) in enumerate(zip(without.months, with_b.months, strict=True)):
        bound = month_bill if month_bill is not None else pf_bill
        pf = None if bound is None else bound.months[i].total
        pf_wear = foresight.month_wear_cost[i] if foresight is not None and foresight.month_wear_cost else None
        kept_value = (soc_edges[i + 1] - soc_edges[i]) * cap_kwh * stored_price
        pf_kept_value = (bound_end[i] - soc_edges[i]) * cap_kwh * stored_price if bound_end else None
        months.append(MonthRow(
            month=f"{a.year:04d}-{a.month:02d}", bill_without=a.total, bill_with=b.total, savings=a.total - b.total,
            savings_by_component={c: _component(a, c) - _component(b, c) for c in COMPONENTS},
            peak_without_kw=a.peak_kw, peak_with_kw=b.peak_kw, discharged_kwh=dis[i], charged_kwh=cha[i],
            equivalent_full_cycles=dis[i] / cap_kwh, foresight_savings=None if pf is None else a.total - pf,
            net_savings=a.total - b.total - wear_month[i],
            foresight_net_savings=None if pf is None or pf_wear is None else a.total - pf - pf_wear,
            stored_value=kept_value, foresight_stored_value=pf_kept_value,
        ))
    discharged = sum(dis)
    savings = without.total - with_b.total
    wear = sum(wear_month)
    total = {
        "bill_without": without.total, "bill_with": with_b.total, "savings": savings,
        **{f"savings_{c}": sum(m.savings_by_component[c] for m in months) for c in COMPONENTS},
        "discharged_kwh": discharged, "charged_kwh": sum(cha), "equivalent_full_cycles": discharged / cap_kwh,
        "peak_without_kw": max(m.peak_without_kw for m in months),
        "peak_with_kw": max(m.peak_with_kw for m in months),
        "wear_cost": wear, "net_savings": savings - wear,
        "soc_min": float(trace.soc.min()), "soc_max": float(trace.soc.max()),
    }
    # the charge the battery ends with against its start is the site's to buy back (or keep),
    # at `stored_energy_price`. A run of days that drew the first charge down read it as
    # savings, scaled to a year by time
    stored_kwh = (float(trace.soc[-1]) - trace.soc_initial) * cap_kwh
    total["stored_energy_change_kwh"] = stored_kwh
    total["stored_energy_value"] = stored_kwh * stored_price
    pf_summary = None
    if foresight is not None and pf_bill is not None:
        pf_save = without.total - pf_bill.total
        pf_net = pf_save - foresight.wear_cost
        # each is credited with the charge it kept at the same price (which the bound's LP values
        # too: it may end anywhere from the lower of the start and the run's end up)
        pf_kwh = (float(foresight.soc[-1]) - trace.soc_initial) * cap_kwh
        kept, pf_kept = total["stored_energy_value"], pf_kwh * stored_price
        pf_summary = {
            "bill": pf_bill.total, "savings": pf_save, "net_savings": pf_net,
            "discharged_kwh": foresight.discharged_wh / 1000.0,
            "stored_energy_change_kwh": pf_kwh, "stored_energy_value": pf_kept,
            "share_captured": (savings + kept) / (pf_save + pf_kept) if pf_save + pf_kept > 0 else float("nan"),
            "share_captured_net": (savings - wear + kept) / (pf_net + pf_kept) if pf_net + pf_kept > 0
            else float("nan"),
            "max_month_share": max((m.share for m in months if m.share is not None), default=float("nan")),
            "solve_time_s": foresight.solve_time_s,
        }
    fin = None
    if econ is not None:
        scale = YEAR_S / (trace.grid_w.size * step)  # to one year
        year1 = annual_savings(months, scale) + total["stored_energy_value"] * scale
        fin = financials(econ, year1, sum(cha) * scale, discharged * scale, price)
    return Result(tuple(months), total, pf_summary, fin)
