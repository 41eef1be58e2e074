"""The grid connection's ramp limit, as a constraint of the period step.

A utility limits how fast a large load may move its import: no more than `limit_w` over
any `window_s` (e.g. 10 MW a minute at 150 MW). With the site load P the grid carries
P - B for a battery power B, so keeping the next grid value within `limit_w` of every
grid value of the last window asks B >= P - (lowest + limit) and B <= P - (highest -
limit). The window is this policy's state: the grid values the previous periods left
(what they aimed for, the site load then minus the setpoint written). Sub-period swings
are the fast smoothing loop's (policies/smoothing.py); this bound keeps the periods'
own steps, a backtest's included, inside the limit.

A window whose values spread wider than twice the limit allows nothing at all (the battery
could not hold a step, or something else moved the grid): it is no guide, and pressing on
it would push the battery to a bound for a grid that never happened. The constraint then
stands aside and the window starts again from the grid the meter measures.
"""

from __future__ import annotations

from dataclasses import dataclass

from ems.model.decision import Decision
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot

NAME = "grid_ramp"


@dataclass(frozen=True, slots=True)
class GridRampParams:
    limit_w: float  # the largest change of grid import allowed within the window
    window_s: float


@dataclass(frozen=True, slots=True)
class GridRampState:
    recent_grid: tuple[tuple[float, float], ...] = ()  # (site time s, grid W the period left)


def envelope(now_s: float, p: GridRampParams, state: GridRampState) -> tuple[float, float] | None:
    """The grid import the limit allows now (lowest, highest); None with no window yet."""
    window = [w for t, w in state.recent_grid if now_s - t < p.window_s]
    if not window:
        return None
    return max(window) - p.limit_w, min(window) + p.limit_w


def decide(snap: SiteSnapshot, p: GridRampParams, state: GridRampState) -> Decision | None:
    load_w = snap.site_load_avg_w
    allowed = envelope(snap.now_s, p, state)
    if load_w is None or allowed is None:
        return None  # nothing to hold against yet (or no meter: the safe action holds instead)
    lo_grid, hi_grid = allowed
    if lo_grid > hi_grid:
        return None  # the window is no guide (see above); record() starts it again
    return Decision(NAME, Reason.RAMP_LIMITED, min_w=load_w - hi_grid, max_w=load_w - lo_grid)


def allowed_grid(snap: SiteSnapshot, decisions: tuple[Decision, ...]) -> tuple[float, float] | None:
    """The grid import this period's ramp constraint allowed (lowest, highest), read back from
    its bounds on the battery; None where it did not bind (no limit, no window, no guide)."""
    load_w = snap.site_load_avg_w
    d = next((d for d in decisions if d.policy == NAME), None)
    if d is None or load_w is None:
        return None
    return load_w - d.max_w, load_w - d.min_w


def record(snap: SiteSnapshot, p: GridRampParams, state: GridRampState, setpoint_w: float) -> GridRampState:
    """The grid value this period leaves: the site load now minus the battery setpoint written
    (or, where the window has become no guide, the grid the meter measures now)."""
    load_w = snap.site_load_avg_w
    if load_w is None or snap.meter is None:
        return state
    window = (*(tw for tw in state.recent_grid if snap.now_s - tw[0] < p.window_s), (snap.now_s, load_w - setpoint_w))
    values = [w for _, w in window]
    if max(values) - min(values) > 2.0 * p.limit_w:
        return GridRampState(((snap.now_s, snap.meter.mean_w),))
    return GridRampState(window)
