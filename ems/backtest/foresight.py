"""Perfect foresight: the best dispatch with the load and prices known, one LP for the whole run.

The upper bound for what any dispatch of this battery could save: one LP
(`plan_dispatch`) over the actual net load of the whole run, with each billing month's
demand groups (per TOU period, and the flat monthly charge) starting from zero, each
month's energy and demand at the tier its actual consumption and peak land in, and the
SoC free from month to month: only the run's end is pinned, at the lower of the SoC it
started with and the SoC the live run ended with. The live run's dispatch is then one of
the LP's feasible points (same power, SoC window, reserve and efficiencies as the plant;
the plant's charge derating above 92 % SoC only narrows it), so no dispatch the plant can
make beats it, in any month or in total, on what the LP optimises (the bill net of the
wear cost). Solving month by month with each month ending at the starting SoC, as
before, let a live month beat its bound (Dec 117 %): the live run could end a month low.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Sequence
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
    wear_depth_cost_per_kwh: tuple[float, ...] = ()  # by SoC segment, top first (depth_wear.py)


@dataclass(frozen=True)
class Foresight:
    step_s: int
    grid_w: FloatArray
    battery_w: FloatArray
    soc: FloatArray  # at the end of each step
    discharged_wh: float
    charged_wh: float
    solve_time_s: float
    wear_cost: float = 0.0  # the planner's wear cost of the bound's dispatch (flat and by depth)
    # per billing month, the bound with the month's ends pinned at the live run's SoC (see
    # `month_bounds`): grid import (all months end to end) and the planner's wear per month
    month_grid_w: FloatArray | None = None
    month_wear_cost: tuple[float, ...] = ()
    month_end_soc: tuple[float, ...] = ()  # each month's bound's SoC at its end


def month_slices(start: datetime, step_s: int, n: int) -> list[slice]:
    """Steps grouped by calendar month, in order."""
    cal = calendar(start, step_s, n)
    key = cal.year * 12 + cal.month
    edges = np.flatnonzero(np.diff(key)) + 1
    bounds = [0, *edges.tolist(), n]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def year_problem(tariff: Tariff, start: datetime, step_s: int, net_load_w: FloatArray, battery: BatteryModel,
                 soc_final_min: float | None = None, final_value_per_kwh: float = 0.0) -> PlanProblem:
    """The whole run as one LP: each month's prices at the tier its consumption lands in,
    its demand groups from zero at the tier its peak lands in (the bill's accounting);
    the groups of all months side by side, the SoC carried freely between them.
    `final_value_per_kwh`: what a kWh stored at the end is worth (the price the results credit
    kept charge at, `results.stored_energy_price`), so the bound maximises what it is judged on."""
    prices: list[FloatArray] = []
    sells: list[FloatArray] = []
    tou: list[npt.NDArray[np.int64]] = []
    flat: list[npt.NDArray[np.int64]] = []
    tou_rates: list[float] = []
    flat_rates: list[float] = []
    for sl in month_slices(start, step_s, net_load_w.size):
        load = net_load_w[sl]
        sig = tariff_signals(tariff, start + timedelta(seconds=sl.start * step_s), step_s, load.size,
                             month_kwh=float(np.maximum(load, 0).sum()) * step_s / 3.6e6,
                             reference_peak_kw=float(load.max()) / 1000.0)
        prices.append(sig.import_price_per_kwh)
        sells.append(sig.export_price_per_kwh)
        tou.append(np.where(sig.tou_group >= 0, sig.tou_group + len(tou_rates), -1))
        tou_rates += sig.tou_rates_per_kw.tolist()
        flat.append(np.where(sig.flat_group >= 0, sig.flat_group + len(flat_rates), -1))
        flat_rates += sig.flat_rates_per_kw.tolist()
    floor = min(max(battery.soc_min, battery.reserve_soc), battery.soc_initial)
    final = min(max(battery.soc_initial, floor), battery.soc_max)
    if soc_final_min is not None:
        final = max(min(final, soc_final_min), 0.0)
    return PlanProblem(
        step_s=step_s, net_load_w=net_load_w,
        import_price_per_kwh=np.concatenate(prices), export_price_per_kwh=np.concatenate(sells),
        capacity_wh=battery.capacity_wh, soc_initial=battery.soc_initial,
        max_charge_w=battery.max_charge_w, max_discharge_w=battery.max_discharge_w,
        soc_min=battery.soc_min, soc_max=battery.soc_max,
        reserve_soc=max(battery.reserve_soc, battery.soc_min),
        charge_efficiency=battery.charge_efficiency, discharge_efficiency=battery.discharge_efficiency,
        wear_cost_per_kwh=battery.wear_cost_per_kwh, wear_depth_cost_per_kwh=battery.wear_depth_cost_per_kwh,
        demand_charge_per_kw=tou_rates or 0.0, peak_so_far_kw=0.0,
        demand_period=np.concatenate(tou) if tou_rates else None,
        flat_group=np.concatenate(flat) if flat_rates else None,
        flat_demand_charge_per_kw=flat_rates or 0.0,
        allow_export=battery.allow_export, soc_final_min=final, final_value_per_kwh=final_value_per_kwh,
    )


def perfect_foresight(tariff: Tariff, start: datetime, step_s: int, net_load_w: FloatArray,
                      battery: BatteryModel, soc_final_min: float | None = None,
                      final_value_per_kwh: float = 0.0) -> Foresight:
    """The bound over `net_load_w`; `soc_final_min` (e.g. the live run's final SoC) lowers
    the end pin below the starting SoC, so a live run that ends lower is still feasible."""
    t0 = time.perf_counter()
    plan = plan_dispatch(year_problem(tariff, start, step_s, net_load_w, battery, soc_final_min,
                                      final_value_per_kwh), presolve=True)
    batt, dt_h = plan.battery_w, step_s / 3600.0
    return Foresight(step_s=step_s, grid_w=plan.grid_w, battery_w=batt, soc=plan.soc[1:],
                     discharged_wh=float(np.maximum(batt, 0).sum() * dt_h),
                     charged_wh=float(np.maximum(-batt, 0).sum() * dt_h),
                     solve_time_s=time.perf_counter() - t0, wear_cost=plan.wear_cost)


def month_bounds(tariff: Tariff, start: datetime, step_s: int, net_load_w: FloatArray, battery: BatteryModel,
                 soc_at_edges: Sequence[float], final_value_per_kwh: float = 0.0
                 ) -> tuple[FloatArray, tuple[float, ...], tuple[float, ...]]:
    """Each billing month's own bound: its LP starts at the SoC the live run had at the
    month's start and ends at least at the lower of that and the SoC the live run ended the
    month with, a kWh it keeps at the end worth `final_value_per_kwh` (as the month's share
    credits each side's kept charge). The live month's dispatch is then feasible in it, and
    the bound maximises what both are judged on, so no live month beats its bound.
    `soc_at_edges`: the live SoC at each month boundary (months + 1 values). Returns the grid
    import (months end to end), the planner's wear cost per month (its net savings are the
    bill's less that) and each month's bound's SoC at its end."""
    slices = month_slices(start, step_s, net_load_w.size)
    if len(soc_at_edges) != len(slices) + 1:
        raise ValueError(f"{len(soc_at_edges)} SoC values for {len(slices)} months")
    grid = np.empty(net_load_w.size)
    wear = []
    end_soc = []
    for i, sl in enumerate(slices):
        model = dataclasses.replace(battery, soc_initial=float(np.clip(soc_at_edges[i], 0.0, 1.0)))
        pb = year_problem(tariff, start + timedelta(seconds=sl.start * step_s), step_s, net_load_w[sl], model,
                          soc_final_min=float(soc_at_edges[i + 1]), final_value_per_kwh=final_value_per_kwh)
        plan = plan_dispatch(pb, presolve=True)
        grid[sl] = plan.grid_w
        wear.append(plan.wear_cost)
        end_soc.append(float(plan.soc[-1]))
    return grid, tuple(wear), tuple(end_soc)
