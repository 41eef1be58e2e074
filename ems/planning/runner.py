"""The planning cadence and the plan in force: what the live loop and the backtest share.

`PlanningRunner` keeps the load history (through `PlanBuilder`), decides when a new plan
is due, builds its request, and turns a solved plan into the view the arbitrage policy
follows. The backtest solves each request at once; the live planner
(ems/planning/live.py) only adds a worker thread around the same calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ems.model.dr import DrEvent
from ems.model.plan import PlanView
from ems.planning.builder import BatteryNow, PeaksSoFar, PlanBuilder, PlanRequest, plan_view
from ems.planning.lp import Plan, PlanError, plan_dispatch
from ems.planning.reused_lp import ReusedLp
from ems.tariff.calendar import local_datetime


def replan_due(view: PlanView | None, now_s: float, soc: float, last_s: float | None,
               interval_s: float, soc_deviation: float | None, step_s: float) -> bool:
    """Time for a new plan: none yet, the interval is over, or (at most once a planning
    step) the site's SoC has drifted from the plan by more than `soc_deviation`, which
    says the forecast is wrong now (waiting for the next hour can drain the battery)."""
    if last_s is None or now_s - last_s >= interval_s:
        return True
    if view is None or soc_deviation is None or now_s - last_s < step_s:
        return False
    k = view.step_at(now_s)
    if k is None:
        return True
    frac = (now_s - view.start_s - k * view.step_s) / view.step_s
    planned = view.soc[k] + frac * (view.soc[k + 1] - view.soc[k])
    return abs(soc - planned) > soc_deviation


class PlanningRunner:
    def __init__(self, builder: PlanBuilder, interval_s: float, peaks: PeaksSoFar, reuse_lp: bool = True) -> None:
        self.builder = builder
        self.lp = ReusedLp() if reuse_lp else None  # None: every plan's LP built anew
        self.solver_time_s = 0.0  # HiGHS's own solve time, summed over the solves
        self.peaks = peaks  # the site's demand meter: this month's peaks so far
        self.interval_s = interval_s
        self.last_started_s: float | None = None
        self.view: PlanView | None = None
        self.request_in_force: PlanRequest | None = None
        self.plan: Plan | None = None
        self.solves = 0
        self.failures = 0
        self.last_error: str | None = None  # the kind of the last failure, None once a plan succeeds
        self._dr_asked: frozenset[DrEvent] = frozenset()  # the DR events the last request planned for
        self._baselines: dict[str, float] = {}  # per event, the program baseline fixed at its start

    def observe(self, local_s: float, dt_s: float, net_load_w: float | None, pv_w: float | None = None) -> None:
        if net_load_w is not None:
            self.builder.observe(local_s, dt_s, net_load_w, pv_w)

    def due(self, now_s: float, soc: float | None = None, dr_events: Sequence[DrEvent] = ()) -> bool:
        """`replan_due` for this runner; without a SoC only the interval counts. A demand-response
        event announced, moved or cancelled since the last request is due at once."""
        if _dr_key(dr_events) != self._dr_asked:
            return True
        s = self.builder.s
        deviation = None if soc is None else s.replan_soc_deviation
        return replan_due(self.view, now_s, soc or 0.0, self.last_started_s, self.interval_s, deviation, s.step_s)

    def request(self, local_s: float, now_s: float, battery: BatteryNow, dr_events: Sequence[DrEvent] = (),
                dr_offset_s: float = 0.0) -> PlanRequest | None:
        """The next plan's problem, or None (counted, with its kind) when it cannot be built.
        `dr_events`: the demand-response events the site acts on, their wall clock `dr_offset_s`
        behind the local one."""
        self.last_started_s = now_s
        self._dr_asked = _dr_key(dr_events)
        try:
            return self.builder.request(local_s, battery, self.peaks, dr_events=dr_events, dr_offset_s=dr_offset_s)
        except PlanError as exc:
            self.failed(exc)
            return None

    def with_program_baseline(self, event: DrEvent | None, local_s: float, dr_offset_s: float) -> DrEvent | None:
        """The event in force with the program's baseline (ems/dr_baseline.py) where it asks a
        reduction and brings no baseline of its own: fixed once the window has begun, from the
        history before it, so the step's target and the plan's are the program's."""
        if event is None or event.baseline_w is not None or event.target_import_w is not None:
            return event
        start = event.start_s + dr_offset_s
        w = self._baselines.get(event.event_id)
        if w is None:
            if local_s < start:
                return event
            w = self.builder.program_baseline_w(local_s, start, event.end_s + dr_offset_s)
            if w is None:
                return event
            if len(self._baselines) >= 256:  # bounded: only the events in force need theirs
                self._baselines.clear()
            self._baselines[event.event_id] = w
        return replace(event, baseline_w=w)

    def solve(self, req: PlanRequest) -> Plan:
        """The plan for `req`: in the kept LP, moved on to the request's window (its steps
        counted on the local clock, so overlapping windows share their columns), or in an LP
        built for it. One solve at a time (the live planner has one worker). The kept LP has no
        depth-of-discharge segments: with them every plan is built anew."""
        if self.lp is None or req.problem.wear_depth_cost_per_kwh:
            plan = plan_dispatch(req.problem)
        else:
            plan = self.lp.solve(req.problem, start_step=round(req.start_local_s / req.problem.step_s))
        self.solver_time_s += plan.solve_time_s
        return plan

    def accept(self, req: PlanRequest, plan: Plan, local_s: float, now_s: float) -> PlanView:
        self.solves += 1
        self.last_error = None
        self.request_in_force, self.plan = req, plan
        self.view = plan_view(req, plan, local_s, now_s)
        return self.view

    def failed(self, exc: Exception) -> None:
        """A plan could not be had: the previous one stays until it goes stale."""
        self.failures += 1
        self.last_error = type(exc).__name__

    def summary(self, now_s: float, now_local_s: float, hours: int = 6) -> dict[str, object]:
        """The current plan for operators: hourly schedule ahead and expected savings."""
        out: dict[str, object] = {"solves": self.solves, "failures": self.failures, "error": self.last_error}
        v, plan = self.view, self.plan
        if v is None or plan is None:
            return out | {"plan": None}
        k0 = v.step_at(now_s) or 0
        per_h = max(1, round(3600.0 / v.step_s))
        rows = []
        for h in range(hours):
            a, b = k0 + h * per_h, k0 + (h + 1) * per_h
            if a >= len(v.battery_w):
                break
            power = np.mean(v.battery_w[a:b])
            start = local_datetime(now_local_s + (v.start_s + a * v.step_s - now_s))
            cap_w = min(v.import_cap_w[a:b])
            rows.append({"start": start.isoformat(timespec="minutes"), "battery_w": round(float(power), 1),
                         "soc_end": round(v.soc[min(b, len(v.soc) - 1)], 4),
                         "import_cap_w": round(cap_w, 1) if math.isfinite(cap_w) else None})
        return out | {"plan": {
            "age_s": round(now_s - v.made_at_s, 1),
            "expected_savings": round(v.expected_savings, 2),
            "expected_cost": round(plan.expected_cost, 2),
            "solve_time_ms": round(plan.solve_time_s * 1e3, 1),
            "dr_events": list(v.dr_event_ids),  # demand-response events the plan charges for
            "schedule": rows,
        }}


def _dr_key(events: Sequence[DrEvent]) -> frozenset[DrEvent]:
    return frozenset(events)
