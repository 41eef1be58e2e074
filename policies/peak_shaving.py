"""Peak shaving: keep grid import at or under a cap; recharge when import is low.

With the site load P = grid + battery (what the grid would see without the battery),
cap L and recharge threshold R (OpenEMS semantics): the battery must discharge at
least P - L (a hard bound: when P < L this allows charging up to L - P); when P < R it
prefers to charge R - P. With `peak_hold_s`, P is the highest load seen over that window,
so swings faster than the control period are covered at their peaks, and recharging
waits until the whole window was under R.
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


def decide(snap: SiteSnapshot, p: PeakShavingParams,
           state: PeakShavingState) -> tuple[Decision, PeakShavingState]:
    load_w = snap.site_load_w
    if load_w is None:
        # no trusted meter: acting on a guess could raise the peak or export. The safe action
        # holds the last setpoint for a while (a short meter outage must not start a peak),
        # then rests at 0 W.
        since = snap.meter_invalid_since_s
        holding = since is not None and snap.now_s - since < p.meter_invalid_hold_s
        why = snap.meter_invalid or Reason.STALE_METER
        return Decision(NAME, why, target_w=snap.last_setpoint_w if holding else 0.0), state
    window = tuple((t, w) for t, w in state.recent_load if snap.now_s - t < p.peak_hold_s)
    window += ((snap.now_s, load_w),)
    new_state = PeakShavingState(window)
    peak_w = max(w for _, w in window)
    need_w = peak_w - p.grid_import_cap_w
    if need_w > 0:
        return Decision(NAME, Reason.PEAK_SHAVING_ACTIVE, min_w=need_w), new_state
    if peak_w < p.recharge_below_w:
        # recharge against the held peak too: a short dip (a checkpoint) must not start
        # a charge that is still running when the load snaps back
        return Decision(NAME, Reason.PEAK_SHAVING_RECHARGE, min_w=need_w,
                        target_w=-(p.recharge_below_w - peak_w)), new_state
    return Decision(NAME, Reason.PEAK_SHAVING_STANDBY, min_w=need_w), new_state
