"""Perfect foresight: the best dispatch with the load and prices known, one LP per month.

The upper bound for what any dispatch of this battery could save: each billing month is
one LP (`plan_dispatch`) over the actual net load, with the month's demand groups
starting from zero, the energy tier the month's actual consumption lands in, and SoC
carried from month to month. Every month must end at least at the SoC the run started
with, so the optimum does not win by emptying the battery.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from ems.planning.lp import PlanProblem, plan_dispatch
from ems.tariff.calendar import calendar
from ems.tariff.model import Tariff
from ems.tariff_signals import tariff_signals

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class BatteryModel:
    capacity_wh: float
    max_charge_w: float
    max_discharge_w: float
    charge_efficiency: float
    discharge_efficiency: float
    soc_min: float
    soc_max: float
    reserve_soc: float
    soc_initial: float
    wear_cost_per_kwh: float
    allow_export: bool = False


@dataclass(frozen=True)
class Foresight:
    step_s: int
    grid_w: FloatArray
    battery_w: FloatArray
    soc: FloatArray  # at the end of each step
    discharged_wh: float
    charged_wh: float
    solve_time_s: float


def month_slices(start: datetime, step_s: int, n: int) -> list[slice]:
    """Steps grouped by calendar month, in order."""
    cal = calendar(start, step_s, n)
    key = cal.year * 12 + cal.month
    edges = np.flatnonzero(np.diff(key)) + 1
    bounds = [0, *edges.tolist(), n]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def perfect_foresight(tariff: Tariff, start: datetime, step_s: int, net_load_w: FloatArray,
                      battery: BatteryModel) -> Foresight:
    t0 = time.perf_counter()
    n = net_load_w.size
    grid = np.empty(n)
    batt = np.empty(n)
    soc = np.empty(n)
    soc_now = battery.soc_initial
    floor = min(max(battery.soc_min, battery.reserve_soc), battery.soc_initial)
    final = min(max(battery.soc_initial, floor), battery.soc_max)
    for sl in month_slices(start, step_s, n):
        load = net_load_w[sl]
        m_start = start + timedelta(seconds=sl.start * step_s)
        sig = tariff_signals(tariff, m_start, step_s, load.size,
                             month_kwh=float(np.maximum(load, 0).sum()) * step_s / 3.6e6,
                             reference_peak_kw=float(load.max()) / 1000.0)
        pb = PlanProblem(
            step_s=step_s, net_load_w=load,
            import_price_per_kwh=sig.import_price_per_kwh, export_price_per_kwh=sig.export_price_per_kwh,
            capacity_wh=battery.capacity_wh, soc_initial=soc_now,
            max_charge_w=battery.max_charge_w, max_discharge_w=battery.max_discharge_w,
            soc_min=battery.soc_min, soc_max=battery.soc_max,
            reserve_soc=max(battery.reserve_soc, battery.soc_min),
            charge_efficiency=battery.charge_efficiency, discharge_efficiency=battery.discharge_efficiency,
            wear_cost_per_kwh=battery.wear_cost_per_kwh,
            demand_charge_per_kw=sig.tou_rates_per_kw.tolist() if sig.tou_keys else 0.0,
            peak_so_far_kw=0.0, demand_period=sig.tou_group if sig.tou_keys else None,
            flat_group=sig.flat_group if sig.flat_keys else None,
            flat_demand_charge_per_kw=sig.flat_rates_per_kw.tolist() if sig.flat_keys else 0.0,
            allow_export=battery.allow_export, soc_final_min=max(final, 0.0),
        )
        plan = plan_dispatch(pb)
        grid[sl] = plan.grid_w
        batt[sl] = plan.battery_w
        soc[sl] = plan.soc[1:]
        soc_now = float(np.clip(plan.soc[-1], 0.0, 1.0))
    dt_h = step_s / 3600.0
    return Foresight(step_s=step_s, grid_w=grid, battery_w=batt, soc=soc,
                     discharged_wh=float(np.maximum(batt, 0).sum() * dt_h),
                     charged_wh=float(np.maximum(-batt, 0).sum() * dt_h),
                     solve_time_s=time.perf_counter() - t0)
