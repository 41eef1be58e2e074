"""What a control period publishes: the one result every reader works from.

The site status topic, the operator server (in its own thread), the metrics, the
dashboard's history and the transition observer all read `PeriodResult`s; none of them
reaches into the controller. A result is immutable once published (its `status` dict is
built once and never changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ems.model.snapshot import SiteSnapshot
from ems.period import StepResult


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

    @property
    def setpoint_w(self) -> float:
        """The site battery setpoint written this period (> 0 discharge)."""
        return self.step.setpoint_w
