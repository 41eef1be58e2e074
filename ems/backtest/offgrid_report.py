"""An off-grid or weak-grid run against diesel trucks alone: fuel, CO2, hours, money.

`offgrid_kpis` is what the site did (diesel litres, genset hours and starts, CO2, energy
served and not served, PV self-consumption and curtailment, PUE where the facility
overhead is configured); `compare` adds the diesel-only baseline (the same load on gensets
alone, sized N+1: ems/backtest/diesel_baseline.py), the savings, and the storage's
financials (payback, NPV, IRR, LCOS) from the site file's economics, on what the battery
itself saves: against the same trucks with the same PV and no battery (PV's savings are
PV's, and its cost is not in `economics`). On a weak grid with a tariff, the site's cost
includes the import's bill (`grid_bill`).
"""

from __future__ import annotations

import calendar
from dataclasses import asdict
from datetime import datetime
from typing import Any

import numpy as np

from ems.backtest.diesel_baseline import DieselBaseline, FloatArray, diesel_only, weak_grid_only
from ems.backtest.engine import Trace
from ems.backtest.errors import BacktestInputError
from ems.backtest.financials import Economics, financials
from ems.microgrid_config import GensetConfig, MicrogridConfig
from ems.tariff import compute_bill
from ems.tariff.model import Tariff
from policies.microgrid import Mode

YEAR_S = 365.0 * 86400.0
MONTH_S = YEAR_S / 12.0
TRUCK = GensetConfig(id="truck", rated_power_w=1_500_000.0)  # the baseline's unit when the site has no genset


def offgrid_kpis(trace: Trace, mg: MicrogridConfig) -> dict[str, float]:
    m = trace.microgrid
    if m is None:
        raise BacktestInputError("not an off-grid or weak-grid run (microgrid.mode is grid_connected)")
    to_kwh = trace.step_s / 3.6e6
    load = float(m.load_w.sum() * to_kwh)
    unserved = float(m.unserved_w.sum() * to_kwh)
    pv = float(np.maximum(m.pv_w, 0.0).sum() * to_kwh)
    curtailed = float(m.curtailed_w.sum() * to_kwh)
    out = {
        "diesel_litres": m.fuel_l, "co2_kg": m.fuel_l * mg.co2_kg_per_l, "genset_hours": m.engine_h,
        "genset_starts": float(m.starts), "genset_kwh": float(m.genset_w.sum() * to_kwh),
        "genset_below_min_load_h": m.below_min_load_h,
        "energy_served_kwh": load - unserved, "unserved_kwh": unserved,
        "pv_kwh": pv, "pv_curtailed_kwh": curtailed, "pv_used_kwh": pv - curtailed,
        "pv_self_consumption": (pv - curtailed) / pv if pv > 0 else float("nan"),
        "surplus_not_curtailable_kwh": float(m.surplus_w.sum() * to_kwh),
        "battery_discharged_kwh": trace.discharged_wh / 1000.0, "battery_charged_kwh": trace.charged_wh / 1000.0,
        "soc_min": float(trace.soc.min()), "soc_max": float(trace.soc.max()),
        "days": trace.grid_w.size * trace.step_s / 86400.0,
        "grid_import_kwh": float(np.maximum(trace.grid_w, 0.0).sum() * to_kwh),
    }
    if mg.facility_overhead_w is not None:
        it_kwh = load - mg.facility_overhead_w * trace.grid_w.size * to_kwh
        out["pue"] = load / it_kwh if it_kwh > 0 else float("nan")
    return out


def grid_bill(tariff: Tariff, grid_w: FloatArray, start: datetime, step_s: int) -> float:
    """The import's bill over a run. A month the run covers in part pays its demand, fixed
    and minimum charges in that part only, as the genset rent is counted: a run of days is
    a year's share, not a month's charges for each day (its energy is billed as it came). The
    minimums top up what the part would pay without them to their share: the month's of the
    monthly minimum, the calendar year's of the annual one (SAM's December settlement would
    charge a run without December none of it, a day of December a year's)."""
    bill = compute_bill(tariff, np.maximum(grid_w, 0.0) / 1000.0, start=start, step_s=step_s)
    steps = np.datetime64(start, "s") + np.arange(grid_w.size) * np.timedelta64(step_s, "s")
    months = steps.astype("datetime64[M]")
    total = 0.0
    year_bill: dict[int, float] = {}
    year_share: dict[int, float] = {}
    for m in bill.months:
        key = np.datetime64(f"{m.year:04d}-{m.month:02d}", "M")
        month_s = 86400.0 * calendar.monthrange(m.year, m.month)[1]
        year_s = 86400.0 * (366 if calendar.isleap(m.year) else 365)
        n = float(np.count_nonzero(months == key))
        covered = n * step_s / month_s
        before_min = m.energy + covered * (m.demand_tou + m.demand_flat + m.fixed)
        billed = max(before_min, 0.0)  # a credit month is not negative (as compute_bill's minimums)
        total += before_min - m.true_up_credit + max(covered * tariff.minimum_monthly - billed, 0.0)
        year_bill[m.year] = year_bill.get(m.year, 0.0) + billed
        year_share[m.year] = year_share.get(m.year, 0.0) + n * step_s / year_s
    return total + sum(max(year_share[y] * tariff.minimum_annual - b, 0.0) for y, b in year_bill.items())


def compare(trace: Trace, mg: MicrogridConfig, econ: Economics | None = None,
            trucks: MicrogridConfig | None = None, tariff: Tariff | None = None,
            import_limit_w: float | None = None) -> dict[str, Any]:
    """The run against diesel only, per run and per year, with the financials of storage.
    `trucks`: the section whose first genset and rent make the diesel-only baseline (default
    `mg`; a sizing point whose gensets were scaled keeps the site file's trucks as the owner's
    alternative). On a weak grid (`import_limit_w`) the battery's own part is reckoned against
    the same grid and trucks without it, and with a `tariff` each side's import is billed on it
    and is part of its cost (None: the import is not priced)."""
    m = trace.microgrid
    if m is None:
        raise BacktestInputError("not an off-grid or weak-grid run (microgrid.mode is grid_connected)")
    site = offgrid_kpis(trace, mg)
    trucks = trucks or mg
    unit = (trucks.gensets[0] if trucks.gensets else TRUCK).spec()
    base = diesel_only(m.load_w, float(trace.step_s), unit)
    run_s = trace.grid_w.size * trace.step_s
    months = run_s / MONTH_S
    fuel_price = mg.diesel_price_per_l
    weak = mg.mode is Mode.WEAK_GRID
    bill = None if tariff is None or not weak else grid_bill(tariff, trace.grid_w, trace.start, trace.step_s)
    site_cost = site["diesel_litres"] * fuel_price + len(mg.gensets) * mg.genset_rental_per_month * months
    site_cost += bill or 0.0
    truck_rent = trucks.genset_rental_per_month

    def cost(b: DieselBaseline) -> float:
        return b.fuel_l * fuel_price + b.units * truck_rent * months

    def described(b: DieselBaseline, b_cost: float) -> dict[str, Any]:
        return {**b.summary(), "co2_kg": b.fuel_l * mg.co2_kg_per_l, "cost": b_cost}

    base_cost = cost(base)
    # energy: the site's fuel per genset kWh (the trucks' where its gensets made none)
    site_fuel_per_kwh = site["diesel_litres"] * fuel_price / site["genset_kwh"] if site["genset_kwh"] > 0 else 0.0
    price_per_kwh = (site_fuel_per_kwh if site["genset_kwh"] > 0 else
                     base.fuel_l * fuel_price / base.energy_kwh if base.energy_kwh > 0 else 0.0)
    # what the battery holds at the end against the start is the site's to make up (or keep) at
    # that price per kWh charged, over the charge efficiency per kWh stored: a run of days drawing
    # the first charge down read it as savings (x 182 a year)
    stored_change_kwh = (float(trace.soc[-1]) - trace.soc_initial) * trace.capacity_wh / 1000.0
    stored_price = price_per_kwh / trace.charge_efficiency
    site_cost -= stored_change_kwh * stored_price
    to_year = YEAR_S / run_s
    saved_l = base.fuel_l - site["diesel_litres"]
    out: dict[str, Any] = {
        "site": site,
        "baseline": described(base, base_cost) | {"fuel_cost": base.fuel_l * fuel_price,
                                                  "rental_cost": base.units * truck_rent * months},
        "site_cost": site_cost, "grid_bill": bill, "stored_energy_change_kwh": stored_change_kwh,
        "stored_energy_value": stored_change_kwh * stored_price,
        "unserved_kwh": site["unserved_kwh"], "diesel_litres": site["diesel_litres"],
        "baseline_diesel_litres": base.fuel_l, "diesel_saved_litres": saved_l,
        "diesel_saved_share": saved_l / base.fuel_l if base.fuel_l > 0 else float("nan"),
        "co2_saved_kg": saved_l * mg.co2_kg_per_l, "genset_starts": site["genset_starts"],
        "genset_hours": site["genset_hours"], "baseline_genset_hours": base.engine_h,
        "cost_saved": base_cost - site_cost, "cost_saved_per_year": (base_cost - site_cost) * to_year,
        "diesel_saved_litres_per_year": saved_l * to_year,
        "co2_saved_t_per_year": saved_l * mg.co2_kg_per_l * to_year / 1000.0,
        "financials": None,
    }
    # the battery's own part: against the site without it (the same trucks, PV and weak grid):
    # PV's savings are PV's, the grid's energy is the grid's
    pv_w = m.pv_w if site["pv_kwh"] > 0 else None
    ref, ref_cost = base, base_cost
    if weak and import_limit_w is not None:
        ref, ref_grid_w = weak_grid_only(m.load_w, float(trace.step_s), unit, import_limit_w, pv_w=pv_w)
        ref_bill = None if tariff is None else grid_bill(tariff, ref_grid_w, trace.start, trace.step_s)
        ref_cost = cost(ref) + (ref_bill or 0.0)
        out["baseline_weak_grid"] = described(ref, ref_cost) | {
            "grid_import_kwh": float(ref_grid_w.sum() * trace.step_s / 3.6e6), "grid_bill": ref_bill}
    elif pv_w is not None:
        ref = diesel_only(m.load_w, float(trace.step_s), unit, pv_w=pv_w)
        ref_cost = cost(ref)
        out["baseline_with_pv"] = described(ref, ref_cost)
    out["battery_cost_saved_per_year"] = (ref_cost - site_cost) * to_year
    out["battery_diesel_saved_litres"] = ref.fuel_l - site["diesel_litres"]
    if econ is not None:
        # what the battery charges is valued at the fuel it took to make: the site's fuel per genset kWh
        fin = financials(econ, out["battery_cost_saved_per_year"], site["battery_charged_kwh"] * to_year,
                         site["battery_discharged_kwh"] * to_year, site_fuel_per_kwh)
        out["financials"] = asdict(fin)
    return out
