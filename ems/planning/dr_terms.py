"""Demand-response events ahead, as the planner's LP weighs them (ems/planning/lp.py).

Each event the site acts on becomes, over the plan steps its window overlaps, a soft cap
on import: its target (less the step's margin, as the period step aims), and the cost of
a kWh over it: what the program pays per kWh of reduction, its per-kW payment spread over
the window's hours (a kW of average reduction over H hours is H kWh), and what it charges
per kWh short. The plan then charges before the window where that pays, and keeps the
charge rather than spend it on arbitrage before the window; with no payment and no
penalty an event adds nothing, so the plan never pre-charges at a loss for it.

Pure: events, the clock offset and the forecast come in; per-step arrays come out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import tzinfo

import numpy as np

from ems.forecast import FloatArray
from ems.model.dr import DrEvent
from ems.tariff.calendar import local_seconds

# the program's baseline of an event's window (local seconds), None where it cannot be had
BaselineOf = Callable[[DrEvent, float, float], float | None]


@dataclass(frozen=True, slots=True)
class DrTerms:
    target_w: FloatArray  # per step: the import target (+inf: no event)
    over_cost_per_kwh: FloatArray  # per step: what a kWh over it costs
    event_ids: tuple[str, ...]  # the events planned for


def over_cost_per_kwh(event: DrEvent, default_penalty_per_kwh: float = 0.0) -> float:
    """What a kWh imported over the event's target costs the site: the reduction payment it
    forgoes (per kWh, and per kW averaged over the window) and the penalty."""
    hours = (event.end_s - event.start_s) / 3600.0
    penalty = event.penalty_per_kwh if event.penalty_per_kwh > 0 else default_penalty_per_kwh
    return max(event.price_per_kwh + event.price_per_kw / hours + penalty, 0.0)


def dr_terms(events: Sequence[DrEvent], local_offset_s: float, start_local_s: float, step_s: float,
             net_w: FloatArray, baseline_of: BaselineOf, margin_fraction: float = 0.0,
             default_penalty_per_kwh: float = 0.0) -> DrTerms:
    """Per plan step, the target and the cost of import over it. `local_offset_s`: local time
    less the events' wall clock now. A reduction needs a baseline: the event's own, else the
    program's (`baseline_of`), else the forecast over the window's steps in the horizon.
    Where windows overlap, the event in force is the higher priority, then the earlier (as
    the event book says)."""
    n = net_w.size
    target = np.full(n, np.inf)
    cost = np.zeros(n)
    planned = []
    # the one in force written last
    for e in sorted(events, key=lambda e: (e.priority, -e.start_s)):
        a = e.start_s + local_offset_s - start_local_s
        b = e.end_s + local_offset_s - start_local_s
        i, j = max(math.floor(a / step_s + 1e-9), 0), min(math.ceil(b / step_s - 1e-9), n)
        if j <= i:
            continue
        baseline = e.baseline_w
        if baseline is None and e.target_import_w is None:
            baseline = baseline_of(e, e.start_s + local_offset_s, e.end_s + local_offset_s)
            if baseline is None:
                baseline = float(np.mean(net_w[i:j]))
        goal_w = e.target_w(0.0 if baseline is None else baseline)
        steps = np.arange(i, j)
        # a step the window covers only in part: its share of the cost
        share = (np.minimum((steps + 1) * step_s, b) - np.maximum(steps * step_s, a)) / step_s
        target[i:j] = max(goal_w - margin_fraction * abs(goal_w), 0.0)
        cost[i:j] = over_cost_per_kwh(e, default_penalty_per_kwh) * np.clip(share, 0.0, 1.0)
        planned.append(e.event_id)
    return DrTerms(target, cost, tuple(sorted(planned)))


def on_local_clock(events: Sequence[DrEvent], zone: tzinfo, local_offset_s: float) -> list[DrEvent]:
    """The events with their windows moved so that `start_s + local_offset_s` (now's offset) is
    the local time of their start on the zone's clock then: an event past a daylight-saving
    change lands on its own local hours, not an hour off. An event whose local window would not
    run forwards (within the autumn's repeated hour) stays as it is."""
    out = []
    for e in events:
        start_s = local_seconds(e.start_s, zone) - local_offset_s
        end_s = local_seconds(e.end_s, zone) - local_offset_s
        moved = (start_s, end_s) != (e.start_s, e.end_s) and end_s > start_s
        out.append(replace(e, start_s=start_s, end_s=end_s) if moved else e)
    return out
