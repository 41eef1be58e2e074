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

from ems.demand import DemandMeter, DemandMeterError
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
            "site": ctl.cfg.site,  # whose: a state dir copied from another site is not taken (`restore`)
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
        path = str(self.store.path)
        if "site" in saved and saved["site"] != ctl.cfg.site:
            # another site's month peak, setpoints and load history would be planned and shaved on
            log.error("persisted state is another site's: not restored, replaced at the next save", path=path,
                      saved_site=str(saved["site"])[:80], site=ctl.cfg.site)
            return {}
        if "demand" in saved:
            try:
                if not isinstance(saved["demand"], dict):
                    raise DemandMeterError(f"not a mapping: {type(saved['demand']).__name__}") from TypeError()
                ctl.demand = DemandMeter.from_dict(saved["demand"], ctl.demand.tariff, ctl.demand.zone)
            except DemandMeterError as exc:
                if exc.__cause__ is None:  # a newer version's state: refused, never overwritten by this one
                    raise DemandMeterError(f"{path}: {exc}") from None
                # garbage (a hand edit, a broken handover): the month's peak from zero, as for a corrupt file
                log.error("persisted demand state unreadable, not restored", path=path, error=str(exc)[:200])
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
        # a value of the wrong type or not a number of watts (NaN, inf, a string) is not restored:
        # a NaN written_w would hold every later write back (never past the deadband)
        sp, beats = _mapping(saved, "setpoints", path), _mapping(saved, "heartbeats", path)
        units_w = _mapping(sp, "units_w", path)
        ctl.last_setpoint_w = _watts(sp, "site_w", path) or 0.0
        for w in ctl.actuators.units:
            w.written_w = _watts(units_w, w.io.unit_id, path)  # None: the next period writes
            beat = beats.get(w.io.unit_id, 0)
            if not isinstance(beat, int) or isinstance(beat, bool):
                log.warning("persisted heartbeat unreadable, not restored", path=path, unit=w.io.unit_id)
                beat = 0
            # carry on counting so the PCS sees the heartbeat move at once
            w.heartbeat = (beat + 1) % 65536
        if saved:
            log.info("resumed from persisted state", month_peak_w=round(ctl.demand.month_peak_w),
                     site_setpoint_w=round(ctl.last_setpoint_w))
        return saved


MAX_ABS_W = 1e10  # 10 GW: past any site's setpoint


def _mapping(saved: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = saved.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        log.warning("persisted state unreadable, not restored", path=path, key=key, error=type(value).__name__)
        return {}
    return value


def _watts(saved: dict[str, Any], key: str, path: str) -> float | None:
    """A saved setpoint, where it is a number of watts a site can have (None: absent or not)."""
    v = saved.get(key)
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= MAX_ABS_W:  # NaN fails too
        return float(v)
    log.warning("persisted setpoint unreadable, not restored", path=path, key=key, value=repr(v)[:40])
    return None
