"""What the controller keeps across a restart: the month's demand so far, the setpoints
last written and the heartbeat counters (so a restarted controller neither bumps a PCS
nor resets the demand charge it is holding down), and the planner's load history (so it
plans at once instead of after a day of new history).

Saved every `persist_every_s` and at once when the month's peak moves, the history when a
step of it closes; read once at start-up (ems/state_store.py holds the values).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ems.demand import DemandMeter
from ems.state_store import StateStore
from ems.tariff.calendar import local_seconds

if TYPE_CHECKING:
    from ems.control_loop import Controller

log = structlog.get_logger("ems.persistence")

# a history that ended longer ago than this is not restored: the gap would be filled with one value
HISTORY_MAX_GAP_S = 86_400.0


class ControllerState:
    def __init__(self, path: Path | None, every_s: float) -> None:
        self.store = StateStore(path)
        self.every_s = every_s
        self._saved_at_s = -math.inf
        self._saved_peak_w = 0.0
        self._history_end_s: float | None = None  # the planner history's end last saved

    def maybe_save(self, ctl: Controller, now_s: float) -> None:
        if now_s - self._saved_at_s >= self.every_s or ctl.demand.month_peak_w != self._saved_peak_w:
            self.save(ctl)

    def save(self, ctl: Controller) -> None:
        units = ctl.actuators.units
        values = {
            "demand": ctl.demand.to_dict(),
            "setpoints": {"site_w": ctl.last_setpoint_w, "units_w": {w.io.unit_id: w.written_w for w in units}},
            "heartbeats": {w.io.unit_id: w.heartbeat for w in units},
            "periods": ctl.stats.periods,
        }
        builder = None if ctl.planner is None else ctl.planner.runner.builder
        history_end_s = None if builder is None else builder.load.end_s
        if builder is not None and history_end_s != self._history_end_s:  # a step closed: weeks of it, not every save
            values["planner_history"] = builder.history_state()
        saved = self.store.save(values, ctl.clock.wall())
        if saved:  # refused (disk full): tried again next period, with the values of then
            self._saved_at_s, self._saved_peak_w = ctl.clock.monotonic(), ctl.demand.month_peak_w
            self._history_end_s = history_end_s

    def restore(self, ctl: Controller) -> dict[str, Any]:
        """Resume from what a previous run saved: demand so far, setpoints, counters."""
        saved = self.store.load()
        if "demand" in saved:
            ctl.demand = DemandMeter.from_dict(saved["demand"], ctl.demand.tariff, ctl.demand.zone)
            if ctl.planner is not None:
                ctl.planner.runner.peaks = ctl.demand
            self._saved_peak_w = ctl.demand.month_peak_w
        if ctl.planner is not None and "planner_history" in saved:
            now_local_s = local_seconds(ctl.clock.wall(), ctl.planner.zone)
            if ctl.planner.runner.builder.restore_history(saved["planner_history"], now_local_s, HISTORY_MAX_GAP_S):
                self._history_end_s = ctl.planner.runner.builder.load.end_s
                log.info("planner load history resumed", steps=len(ctl.planner.runner.builder.load.values))
            else:
                log.info("planner load history not resumed (too old, another step, or unreadable): planning waits "
                         "for new history")
        sp = saved.get("setpoints") or {}
        ctl.last_setpoint_w = float(sp.get("site_w", 0.0))
        for w in ctl.actuators.units:
            written = (sp.get("units_w") or {}).get(w.io.unit_id)
            w.written_w = None if written is None else float(written)
            # carry on counting so the PCS sees the heartbeat move at once
            w.heartbeat = (int((saved.get("heartbeats") or {}).get(w.io.unit_id, 0)) + 1) % 65536
        if saved:
            log.info("resumed from persisted state", month_peak_w=round(ctl.demand.month_peak_w),
                     site_setpoint_w=round(ctl.last_setpoint_w))
        return saved
