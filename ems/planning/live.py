"""The planner of `ems run`: the planning runner with its solves in a worker thread.

Each period the controller calls `step`: the load is recorded, a new plan is requested
when due, and its solve runs in a worker thread. A solve that is done within `wait_s`
(the LP takes a few ms) is used in the same period, as in the backtest, which solves at
once; a slower one from a later period on. The worker is a long-lived task the
controller runs in its task group (`run`). A failed solve leaves the previous plan in
place until it goes stale (arbitrage then stands down); the period result says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo

from ems.config import SiteConfig
from ems.demand import DemandMeter
from ems.feeds.planner_inputs import PlannerFeeds, planner_feeds
from ems.model.cancel_guard import checkpoint
from ems.model.dr import DrEvent
from ems.model.plan import PlanView
from ems.model.snapshot import SiteSnapshot
from ems.planning.builder import PlanBuilder, PlanRequest, battery_from_snapshot
from ems.planning.dr_terms import on_local_clock
from ems.planning.lp import Plan
from ems.planning.runner import PlanningRunner
from ems.planning.settings import planner_settings
from ems.tariff.calendar import local_seconds
from ems.tariff.model import Tariff


@dataclass(frozen=True, slots=True)
class _Job:
    request: PlanRequest
    local_s: float
    now_s: float


class LivePlanner:
    def __init__(self, runner: PlanningRunner, zone: tzinfo, feeds: PlannerFeeds | None = None) -> None:
        self.runner = runner
        self.zone = zone
        self.feeds = feeds  # market prices and weather fetched live (ems/feeds/), refreshed in `run`
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue(maxsize=1)
        self._job: _Job | None = None  # the one in the worker, or waiting for it
        self._result: Plan | Exception | None = None
        self._solved = asyncio.Event()
        # (site time s, net load W, metered PV W) of the last period
        self._opened: tuple[float, float | None, float | None] | None = None

    async def step(self, snap: SiteSnapshot, wait_s: float = 0.0, dr_events: Sequence[DrEvent] = ()
                   ) -> PlanView | None:
        """One period: record the load, request a plan when due, take a finished solve.
        `dr_events`: the demand-response events ahead the plan is to plan for.
        Returns the plan in force (fresh or not: the arbitrage policy judges)."""
        local_s = local_seconds(snap.wall_s, self.zone)
        if self._opened is not None:
            # the load read at a period's start stands for the period it opened, as the backtest
            # records each step's load once the step is done; a long gap is not evidence
            opened_at_s, load_w, pv_w = self._opened
            self.runner.observe(local_s, min(snap.now_s - opened_at_s, 10 * snap.period_s), load_w, pv_w)
        self._opened = (snap.now_s, snap.site_load_w, None if snap.pv is None else snap.pv.power_w)
        battery = battery_from_snapshot(snap)
        dr_events = on_local_clock(dr_events, self.zone, local_s - snap.wall_s)
        if self._job is None and battery is not None and self.runner.due(snap.now_s, battery.soc, dr_events):
            if self.feeds is not None:  # the last good series of each feed: no fetch on this path
                self.feeds.apply(self.runner.builder, local_s)
            req = self.runner.request(local_s, snap.now_s, battery, dr_events, local_s - snap.wall_s)
            if req is not None:
                self._job = _Job(req, local_s, snap.now_s)
                self._jobs.put_nowait(self._job)
        if self._job is not None and not self._solved.is_set() and wait_s > 0:
            with contextlib.suppress(TimeoutError):  # not yet: picked up in a later period
                await asyncio.wait_for(self._solved.wait(), wait_s)
        self._collect()
        return self.runner.view

    def with_program_baseline(self, event: DrEvent | None, snap: SiteSnapshot) -> DrEvent | None:
        """The event in force with the program's baseline, from the planner's load history."""
        local_s = local_seconds(snap.wall_s, self.zone)
        return self.runner.with_program_baseline(event, local_s, local_s - snap.wall_s)

    @property
    def horizon_s(self) -> float:
        s = self.runner.builder.s
        return s.horizon_steps * s.step_s

    def _collect(self) -> None:
        job, result = self._job, self._result
        if job is None or not self._solved.is_set():
            return
        self._job, self._result = None, None
        self._solved.clear()
        if isinstance(result, Plan):
            self.runner.accept(job.request, result, job.local_s, job.now_s)
        elif result is not None:
            self.runner.failed(result)

    async def run(self) -> None:
        """The worker: solve each request off the event loop, until cancelled; the feeds'
        refreshes run beside it."""
        feeds = self.feeds
        if feeds is None:
            await self._solve_forever()
            return
        async with asyncio.TaskGroup() as tg:
            tg.create_task(feeds.run(), name="feeds")
            await self._solve_forever()

    async def _solve_forever(self) -> None:
        while True:
            checkpoint()  # a stop a library swallowed (ems/model/cancel_guard)
            job = await self._jobs.get()
            try:
                self._result = await asyncio.to_thread(self.runner.solve, job.request)
            except Exception as exc:  # a failed solve leaves arbitrage to go stale, never the loop
                self._result = exc
            self._solved.set()

    def summary(self, now_s: float, now_local_s: float) -> dict[str, object]:
        """The plan for operators (`PlanningRunner.summary`), with each feed's counts where there are feeds."""
        out = self.runner.summary(now_s, now_local_s)
        return out if self.feeds is None else out | {"feeds": self.feeds.summary()}

    @property
    def busy(self) -> bool:
        return self._job is not None


def live_planner(cfg: SiteConfig, tariff: Tariff | None, demand: DemandMeter) -> LivePlanner | None:
    """The planner for `ems run`, reading the month's peaks from the site's demand meter;
    None when arbitrage is not configured."""
    a = cfg.policies.arbitrage
    settings = planner_settings(cfg.policies, cfg.grid_connection)
    if a is None or settings is None or tariff is None:
        return None
    runner = PlanningRunner(PlanBuilder(tariff, settings), a.planning_interval_s, demand, reuse_lp=a.reuse_lp)
    loc = a.pv_location
    feeds = planner_feeds(a.price_feed, a.weather_feed, a.timezone, cfg.state.dir,
                          None if loc is None else (loc.latitude_deg, loc.longitude_deg), a.realtime_price_feed)
    return LivePlanner(runner, demand.zone, feeds)
