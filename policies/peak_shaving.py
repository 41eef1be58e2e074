"""Peak shaving: keep grid import at or under a cap; recharge when import is low.

With the site load P = grid + battery (what the grid would see without the battery),
cap L and recharge threshold R (OpenEMS semantics): the battery must discharge at
least P - L (a hard bound: when P < L this allows charging up to L - P); when P < R it
prefers to charge R - P. With `peak_hold_s`, P is the highest load seen over that window,
so swings faster than the control period are covered at their peaks, and recharging
waits until the whole window was under R.

Without a trusted meter the safe action holds the last setpoint for a while (a short
meter outage must not start a peak), then rests at 0 W; the plan's cap
(policies/plan_cap.py) takes the same action.
"""

from __future__ import annotations

from dataclasses import dataclass

from ems.model.decision import Decision
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot

NAME = "peak_shaving"


@dataclass(frozen=True, slots=True)
class PeakShavingParams:
    grid_import_cap_w: float
    recharge_below_w: float
    peak_hold_s: float = 0.0
    meter_invalid_hold_s: float = 0.0  # safe action without a trusted meter: hold, then 0 W


@dataclass(frozen=True, slots=True)
class PeakShavingState:
    recent_load: tuple[tuple[float, float], ...] = ()  # (site time s, load W)


def held_load(snap: SiteSnapshot, hold_s: float,
              state: PeakShavingState) -> tuple[float | None, PeakShavingState]:
    """The highest site load over the last `hold_s` (this period's alone with 0); None
    without a trusted meter (the window is kept for when it is back)."""
    load_w = snap.site_load_avg_w
    if load_w is None:
        return None, state
    window = tuple((t, w) for t, w in state.recent_load if snap.now_s - t < hold_s)
    window += ((snap.now_s, load_w),)
    return max(w for _, w in window), PeakShavingState(window)


def without_meter(snap: SiteSnapshot, name: str, meter_invalid_hold_s: float) -> Decision:
    """The safe action while the meter is not trusted: acting on a guess could raise the
    peak or export. Hold the last setpoint for a while, then rest at 0 W."""
    since = snap.meter_invalid_since_s
    holding = since is not None and snap.now_s - since < meter_invalid_hold_s
    why = snap.meter_invalid or Reason.STALE_METER
    return Decision(name, why, target_w=snap.last_setpoint_w if holding else 0.0)


def decide(snap: SiteSnapshot, p: PeakShavingParams,
           state: PeakShavingState) -> tuple[Decision, PeakShavingState]:
    peak_w, new_state = held_load(snap, p.peak_hold_s, state)
    if peak_w is None:
        return without_meter(snap, NAME, p.meter_invalid_hold_s), new_state
    need_w = peak_w - p.grid_import_cap_w
    if need_w > 0:
        return Decision(NAME, Reason.PEAK_SHAVING_ACTIVE, min_w=need_w), new_state
    if peak_w < p.recharge_below_w:
        # recharge against the held peak too: a short dip (a checkpoint) must not start
        # a charge that is still running when the load snaps back
        return Decision(NAME, Reason.PEAK_SHAVING_RECHARGE, min_w=need_w,
                        target_w=-(p.recharge_below_w - peak_w)), new_state
    return Decision(NAME, Reason.PEAK_SHAVING_STANDBY, min_w=need_w), new_state
