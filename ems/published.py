"""What a control period publishes: the one result every reader works from.

The site status topic, the operator server (in its own thread), the metrics, the
dashboard's history and the transition observer all read `PeriodResult`s; none of them
reaches into the controller. A result is immutable once published (its `status` dict is
built once and never changed; its mappings are copies the loop does not keep).

`Published` is what the loop shares with readers in other threads: the latest result and
the operator state, each an immutable value behind a reference the loop replaces (one
attribute assignment, atomic), the event log (whose queries read on their own
connection), and the queue that takes operator actions back to the loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

from ems.model.snapshot import SiteSnapshot
from ems.period import StepResult

if TYPE_CHECKING:
    from ems.action_queue import ActionQueue
    from ems.clock import Clock
    from ems.events import EventLog
    from ems.operator.controls import OperatorControls, OperatorView


@dataclass(frozen=True)
class PeriodResult:
    period: int  # count of periods run, this one included
    snapshot: SiteSnapshot
    step: StepResult
    writes: int
    duration_s: float
    lateness_s: float
    islanded: bool = False
    devices_down: dict[str, str] = field(default_factory=dict)  # device -> its last read or write error
    broker_connected: bool = True
    plan_error: str | None = None  # the planner's last failure (kind), None when it has a plan or none is due
    status: dict[str, Any] = field(default_factory=dict)  # JSON-ready, as published on `PREFIX/site/status`
    # what the loop holds after the period, copied for readers that must not reach into it
    unit_written_w: Mapping[str, float | None] = field(default_factory=dict)  # last setpoint each PCS accepted
    rack_caps_sent_w: Mapping[str, float | None] = field(default_factory=dict)  # by row; NaN: unknown
    read_at_s: Mapping[str, float] = field(default_factory=dict)  # "meter", "UNIT.bms", ...: last good reading
    driver_errors: Mapping[str, int] = field(default_factory=dict)  # failed reads and writes by device, ever
    overruns: int = 0
    write_failures: int = 0

    @property
    def setpoint_w(self) -> float:
        """The site battery setpoint written this period (> 0 discharge)."""
        return self.step.setpoint_w


class Published:
    def __init__(self, site: str, clock: Clock, zone: tzinfo, events: EventLog, actions: ActionQueue[OperatorControls],
                 operator: OperatorView) -> None:
        self.site, self.clock, self.zone = site, clock, zone
        self.events = events
        self.actions = actions
        self.operator = operator  # replaced at each operator change
        self.result: PeriodResult | None = None  # replaced once per period

    def set_operator(self, view: OperatorView) -> None:
        self.operator = view
