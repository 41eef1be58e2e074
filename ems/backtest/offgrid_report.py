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

from dataclasses import asdict
from typing import Any

import numpy as np

from ems.backtest.diesel_baseline import diesel_only
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


def grid_bill(tariff: Tariff, trace: Trace) -> float:
    """The import's bill over the run. A month the run covers in part pays its demand, fixed
    and minimum charges in that part only, as the genset rent is counted: a run of days is
    a year's share, not a month's charges for each day (its energy is billed as it came)."""
    bill = compute_bill(tariff, np.maximum(trace.grid_w, 0.0) / 1000.0, start=trace.start, step_s=trace.step_s)
    steps = np.datetime64(trace.start, "s") + np.arange(trace.grid_w.size) * np.timedelta64(trace.step_s, "s")
    months = steps.astype("datetime64[M]")
    total = 0.0
    for m in bill.months:
        key = np.datetime64(f"{m.year:04d}-{m.month:02d}", "M")
        month_s = float(((key + 1).astype("datetime64[s]") - key.astype("datetime64[s]")).astype(np.float64))
        covered = float(np.count_nonzero(months == key)) * trace.step_s / month_s
        total += m.energy - m.true_up_credit + covered * (m.demand_tou + m.demand_flat + m.fixed + m.minimum)
    return total


def compare(trace: Trace, mg: MicrogridConfig, econ: Economics | None = None,
            trucks: MicrogridConfig | None = None, tariff: Tariff | None = None) -> dict[str, Any]:
    """The run against diesel only, per run and per year, with the financials of storage.
    `trucks`: the section whose first genset and rent make the diesel-only baseline (default
    `mg`; a sizing point whose gensets were scaled keeps the site file's trucks as the owner's
    alternative). `tariff` (weak grid): the import is billed on it, and the bill is the site's
    cost too (None: the import is not priced)."""
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
    bill = None if tariff is None or mg.mode is Mode.OFF_GRID else grid_bill(tariff, trace)
    site_cost = site["diesel_litres"] * fuel_price + len(mg.gensets) * mg.genset_rental_per_month * months
    site_cost += bill or 0.0
    truck_rent = trucks.genset_rental_per_month
    base_cost = base.fuel_l * fuel_price + base.units * truck_rent * months
    to_year = YEAR_S / run_s
    saved_l = base.fuel_l - site["diesel_litres"]
    out: dict[str, Any] = {
        "site": site,
        "baseline": {**asdict(base), "co2_kg": base.fuel_l * mg.co2_kg_per_l, "cost": base_cost,
                     "fuel_cost": base.fuel_l * fuel_price,
                     "rental_cost": base.units * truck_rent * months},
        "site_cost": site_cost, "grid_bill": bill,
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
    # the battery's own part: against the same trucks with the same PV, no battery (PV is not the battery's)
    ref = base
    if site["pv_kwh"] > 0:
        ref = diesel_only(m.load_w, float(trace.step_s), unit, pv_w=m.pv_w)
        ref_cost = ref.fuel_l * fuel_price + ref.units * truck_rent * months
        out["baseline_with_pv"] = {**asdict(ref), "co2_kg": ref.fuel_l * mg.co2_kg_per_l, "cost": ref_cost}
    else:
        ref_cost = base_cost
    out["battery_cost_saved_per_year"] = (ref_cost - site_cost) * to_year
    out["battery_diesel_saved_litres"] = ref.fuel_l - site["diesel_litres"]
    if econ is not None:
        # what the battery charges is valued at the fuel it took to make: the site's fuel per genset kWh
        price = site["diesel_litres"] * fuel_price / site["genset_kwh"] if site["genset_kwh"] > 0 else 0.0
        fin = financials(econ, out["battery_cost_saved_per_year"], site["battery_charged_kwh"] * to_year,
                         site["battery_discharged_kwh"] * to_year, price)
        out["financials"] = asdict(fin)
    return out
