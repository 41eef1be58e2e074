"""The live loop's genset planner: the MILP schedule (genset_milp.py) from what the site did.

Off-grid or on a weak grid with `microgrid.genset_plan` set, the loop records the site's
demand on its sources (the load less PV: the step's microgrid demand) each period, in
hourly means. Every `every_s` it builds the problem for the next `horizon_s` from a
persistence forecast (the same hour the day before; an hour without one yet repeats the
latest demand) and the battery as the snapshot reports it, and solves it off the loop's
thread; the step holds at least the gensets the schedule has on (policies/genset_dispatch.py).
A failed solve keeps the schedule before it; past its horizon the SoC thresholds run alone.
Live PV is not metered apart from the load, so the forecast is of the net demand: a surplus
hour is curtailable PV.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import structlog

from ems.config import SiteConfig
from ems.model.cancel_guard import checkpoint
from ems.model.plan import GensetSchedule
from ems.model.snapshot import SiteSnapshot, site_soc
from ems.planning.genset_milp import SOC_FLOOR_MARGIN, GensetPlanProblem, plan_gensets
from ems.planning.lp import PlanError
from policies import genset_dispatch
from policies.microgrid import MicrogridParams, grid_allowance_w

log = structlog.get_logger(__name__)
HOUR_S = 3600.0
DAY_S = 86400.0


@dataclass
class DemandHistory:
    """Hourly means of the demand, by the hour of site monotonic time; a day and a bit kept."""

    sums: dict[int, tuple[float, float]] = field(default_factory=dict)  # hour -> (W x s, s)
    latest_w: float | None = None

    def observe(self, now_s: float, demand_w: float, period_s: float) -> None:
        h = int(now_s // HOUR_S)
        ws, s = self.sums.get(h, (0.0, 0.0))
        self.sums[h] = (ws + demand_w * period_s, s + period_s)
        self.latest_w = demand_w
        for old in [k for k in self.sums if k < h - 26]:
            del self.sums[old]

    def persistence(self, start_s: float, steps: int) -> np.ndarray:
        """The demand forecast for `steps` hours from `start_s`: the same hour a day before."""
        out = np.zeros(steps)
        for j in range(steps):
            before = int((start_s + j * HOUR_S - DAY_S) // HOUR_S)
            ws, s = self.sums.get(before, (0.0, 0.0))
            out[j] = ws / s if s > 0 else (self.latest_w or 0.0)
        return out


@dataclass
class LiveGensetPlanner:
    params: MicrogridParams
    soc_max: float
    every_s: float = 6 * HOUR_S
    horizon_s: float = DAY_S
    history: DemandHistory = field(default_factory=DemandHistory)
    schedule: GensetSchedule | None = None
    next_s: float | None = None
    solves: int = 0
    failures: int = 0

    def due(self, now_s: float) -> bool:
        return self.history.latest_w is not None and (self.next_s is None or now_s >= self.next_s)

    def problem(self, snap: SiteSnapshot, gensets: genset_dispatch.DispatchState) -> GensetPlanProblem | None:
        """The problem to solve now (None: no battery reading to plan from)."""
        soc = site_soc(snap)
        if soc is None:
            return None
        self.next_s = snap.now_s + self.every_s
        d = self.params.dispatch
        steps = math.ceil(self.horizon_s / HOUR_S)
        net_w = self.history.persistence(snap.now_s, steps)
        rated_w = sum(u.pcs.rated_power_w for u in snap.units if u.available and u.pcs is not None)
        on_now = tuple(u.phase in (genset_dispatch.Phase.STARTING, genset_dispatch.Phase.WARMUP,
                                   genset_dispatch.Phase.RUNNING) for u in gensets.units) or (False,) * len(d.gensets)
        return GensetPlanProblem(
            snap.now_s, HOUR_S, np.maximum(net_w, 0.0), np.maximum(-net_w, 0.0), d.gensets, on_now, soc[1], soc[0],
            min(d.start_soc + SOC_FLOOR_MARGIN, self.soc_max), self.soc_max, rated_w, rated_w,
            grid_allowance_w=grid_allowance_w(self.params))

    def describe(self) -> dict[str, object] | None:
        """The plan in force for the status (None: none solved yet)."""
        if self.schedule is None:
            return None
        return {"solves": self.solves, "failures": self.failures, "on": list(self.schedule.on),
                "fuel_l": round(self.schedule.fuel_l, 1)}

    async def run(self, latest: Callable[[], tuple[SiteSnapshot, genset_dispatch.DispatchState] | None],
                  poll_s: float) -> None:
        """Re-solve when due from the latest period (`latest`), off the loop's thread; runs until
        cancelled. A failed solve is counted and logged, and the schedule before it kept."""
        while True:
            checkpoint()  # a stop a library swallowed (ems/model/cancel_guard)
            got = latest()
            if got is not None and self.due(got[0].now_s) and (pb := self.problem(*got)) is not None:
                try:
                    self.schedule = await asyncio.to_thread(plan_gensets, pb)
                except PlanError as exc:
                    self.failures += 1
                    log.warning("genset plan failed: the schedule before it stays", error=str(exc))
                else:
                    self.solves += 1
                    log.info("genset plan", on=self.schedule.on[:6], litres=round(self.schedule.fuel_l),
                             solve_s=round(self.schedule.solve_s, 3))
            await asyncio.sleep(poll_s)


def genset_planner(cfg: SiteConfig) -> LiveGensetPlanner | None:
    """The site's genset planner: off-grid or on a weak grid, with `microgrid.genset_plan` and gensets."""
    mg = cfg.microgrid
    if mg is None or mg.genset_plan is None or not mg.gensets:
        return None
    params = mg.params(cfg.grid_connection.import_limit_w)
    if params is None:
        return None
    return LiveGensetPlanner(params, cfg.policies.battery.soc_max, mg.genset_plan.every_s, mg.genset_plan.horizon_s)
