"""The backtest's genset planner: the MILP schedule (ems/planning/genset_milp.py), re-solved
on a rolling horizon from a forecast of the load and PV, handed to the period step.

Every `every_s` the planner builds a problem over the next `horizon_s` in steps of
`plan_step_s` (averages of the backtest's steps) and solves it; the step holds at least
the gensets it has on (policies/genset_dispatch.py). The forecast is either

* `persistence`: the same hours of the day before (what a controller without a forecast
  service can know; the first day repeats the load and PV of the moment), or
* `perfect`: the series itself (the upper bound of what a schedule can save).

A failed solve keeps the schedule before it; past its horizon the SoC thresholds alone run
the gensets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from ems.backtest.config import BacktestConfig
from ems.model.plan import GensetSchedule
from ems.planning.genset_milp import SOC_FLOOR_MARGIN, GensetPlanProblem, plan_gensets
from ems.planning.lp import PlanError
from policies import genset_dispatch
from policies.microgrid import MicrogridParams, grid_allowance_w

FloatArray = npt.NDArray[np.float64]
Forecast = Literal["persistence", "perfect"]


@dataclass
class GensetPlanning:
    cfg: BacktestConfig
    params: MicrogridParams
    step_s: int
    load_w: FloatArray  # the whole series (before PV), W per backtest step
    pv_w: FloatArray
    forecast: Forecast = "persistence"
    horizon_s: float = 86400.0
    plan_step_s: float = 3600.0
    every_s: float = 6 * 3600.0  # a solve takes ~0.1 s: a year is 1,460 of them
    schedule: GensetSchedule | None = None
    solves: int = 0
    failures: int = 0
    solve_time_s: float = 0.0
    planned_l: list[float] = field(default_factory=list)
    _next_s: float = 0.0

    def _series(self, series: FloatArray, k: int) -> FloatArray:
        """The forecast over the horizon from step `k`, averaged into planning steps."""
        per = max(1, round(self.plan_step_s / self.step_s))
        n = per * math.ceil(self.horizon_s / self.plan_step_s)
        idx = np.arange(k, k + n)
        if self.forecast == "perfect":
            raw = series[np.minimum(idx, series.size - 1)]
        else:
            day = round(86400 / self.step_s)
            back = idx - day  # the day before; where there is none yet, the moment's value
            raw = np.where(back >= 0, series[np.clip(back, 0, series.size - 1)], series[k])
        out: FloatArray = raw.reshape(-1, per).mean(axis=1)
        return out

    def schedule_at(self, k: int, now_s: float, soc: float,
                    gensets: genset_dispatch.DispatchState) -> GensetSchedule | None:
        """The schedule in force at step `k` (re-solved when due)."""
        if now_s + 1e-9 < self._next_s:
            return self.schedule
        self._next_s = now_s + self.every_s
        units = self.cfg.battery_units
        d = self.params.dispatch
        on_now = tuple(u.phase in (genset_dispatch.Phase.STARTING, genset_dispatch.Phase.WARMUP,
                                   genset_dispatch.Phase.RUNNING) for u in gensets.units) or (False,) * len(d.gensets)
        eff_c = min(u.charge_efficiency for u in units)
        eff_d = min(u.discharge_efficiency for u in units)
        limits = self.cfg.policies.battery
        problem = GensetPlanProblem(
            now_s, self.plan_step_s, self._series(self.load_w, k), self._series(self.pv_w, k), d.gensets, on_now,
            sum(u.capacity_wh * u.soh for u in units), soc, min(d.start_soc + SOC_FLOOR_MARGIN, limits.soc_max),
            limits.soc_max, sum(u.rated_power_w for u in units), sum(u.rated_power_w for u in units),
            eff_c, eff_d, grid_allowance_w(self.params))
        try:
            self.schedule = plan_gensets(problem)
        except PlanError:
            self.failures += 1
            return self.schedule
        self.solves += 1
        self.solve_time_s += self.schedule.solve_s
        self.planned_l.append(self.schedule.fuel_l)
        return self.schedule
