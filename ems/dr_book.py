"""The demand-response events the site has accepted, from whichever channel brought them.

OpenADR (ems/openadr_ven.py), the MQTT load-target channel (ems/load_target.py) and the
operator API add, change and cancel events here; the control loop asks it once a period
for the event in force (or due within the pre-charge) and gives it to the step as data.
Bounded: a flood of events cannot grow it without limit. Finished events' figures are kept
(the last `keep_results`) for status and reports. Lives on the loop's thread: the operator
server's requests reach it through the action queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from ems.model.dr import DrEvent
from ems.model.errors import EmsError
from policies.demand_response import DrOutcome, DrParams, EventTally

MAX_EVENTS = 64


class DrBookFull(EmsError):
    """More pending events than the book holds: the new one is refused."""


class DrBook:
    def __init__(self, keep_results: int = 50) -> None:
        self.events: dict[str, DrEvent] = {}
        self.opted_out: set[str] = set()
        self.results: deque[dict[str, object]] = deque(maxlen=keep_results)
        self.received = 0
        self.listeners: list[Callable[[dict[str, object]], None]] = []  # told each finished event's figures

    def add(self, event: DrEvent) -> None:
        """Add or replace (same id) an event."""
        if event.event_id not in self.events and len(self.events) >= MAX_EVENTS:
            raise DrBookFull(f"{MAX_EVENTS} demand-response events pending already")
        self.events[event.event_id] = event
        self.received += 1

    def add_unbounded(self, event: DrEvent) -> None:
        """A replay's events (a backtest's year of them): known in advance, no bound."""
        self.events[event.event_id] = event

    def cancel(self, event_id: str) -> bool:
        return self.events.pop(event_id, None) is not None

    def opt_out(self, event_id: str) -> None:
        """The site declines this event (an operator's or the VEN's choice): it is not acted on."""
        self.opted_out.add(event_id)

    def current(self, wall_s: float, precharge_s: float) -> DrEvent | None:
        """The event in force, else the next one due within its pre-charge; past ones are dropped."""
        for eid in [e.event_id for e in self.events.values() if e.end_s <= wall_s]:
            del self.events[eid]
            self.opted_out.discard(eid)
        due = [e for e in self.events.values()
               if e.event_id not in self.opted_out and e.start_s - precharge_s <= wall_s]
        active = [e for e in due if e.start_s <= wall_s]
        if active:  # where events overlap, the higher priority, then the earlier
            return min(active, key=lambda e: (-e.priority, e.start_s))
        return min(due, key=lambda e: e.start_s, default=None)

    def ahead(self, wall_s: float, horizon_s: float) -> list[DrEvent]:
        """The events the site acts on that are not over and begin within `horizon_s`: what
        the planner plans for."""
        return [e for e in self.events.values() if e.event_id not in self.opted_out
                and e.end_s > wall_s and e.start_s < wall_s + horizon_s]

    def finished(self, summary: dict[str, object]) -> None:
        self.results.append(summary)
        for tell in self.listeners:
            tell(summary)

    def pending(self) -> list[DrEvent]:
        return sorted(self.events.values(), key=lambda e: e.start_s)


def row_budgets(outcome: DrOutcome, p: DrParams, rack_ids: Sequence[str]) -> dict[str, dict[str, object]]:
    """Per row, what a scheduler follows: its flex tier and, while DR caps it, its racks' caps
    summed (null: the row is not capped; its racks may draw their nameplate)."""
    budget: dict[str, float | None] = {}
    capped: dict[str, int] = {}
    for rid in rack_ids:
        row, cap = rid.split("-")[0], outcome.caps_w.get(rid)
        have = budget.setdefault(row, None)
        capped[row] = capped.get(row, 0) + (cap is not None)
        if cap is not None:
            budget[row] = (have or 0.0) + cap
    return {row: {"flex_tier": p.tier_of_row.get(row, p.default_tier),
                  "budget_w": None if w is None else round(w, 1), "racks_capped": capped[row]}
            for row, w in budget.items()}


def dr_status(book: DrBook, outcome: DrOutcome | None, tally: EventTally | None,
              p: DrParams | None = None, rack_ids: Sequence[str] = ()) -> dict[str, object] | None:
    """The status's `dr` section: the phase, the target, the GPU cut and the event's figures so far."""
    if outcome is None:
        return None
    return {"phase": outcome.phase, "event_id": outcome.event_id, "target_w": outcome.target_w,
            "battery_room_w": round(outcome.battery_room_w, 1), "gpu_cut_w": round(outcome.cut_w, 1),
            "gpu": None if outcome.gpu_reason is None else outcome.gpu_reason.code,
            "racks_capped": sum(c is not None for c in outcome.caps_w.values()),
            "rows": {} if p is None else row_budgets(outcome, p, rack_ids),
            "event": None if tally is None else tally.summary(),
            "pending": [{"event_id": e.event_id, "start_s": e.start_s, "end_s": e.end_s, "source": e.source,
                         "target_import_w": e.target_import_w, "reduction_w": e.reduction_w,
                         "opted_out": e.event_id in book.opted_out} for e in book.pending()],
            "received": book.received, "last_result": book.results[-1] if book.results else None}
