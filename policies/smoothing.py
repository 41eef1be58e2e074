"""Smoothing the site's training swings with the battery: the fast part, tick by tick.

Synchronous training swings a cluster's power at 0.2-3 Hz between compute and
communication; a period loop at 1 s cannot follow that. A fast loop (10-50 Hz, beside
the period loop) runs this pure core each tick on the fast meter signal. The period
step sets the battery's base power B0 (peak shaving, arbitrage, reserve...) and the
site bounds [lo, hi] within which the battery may move this period (the units'
envelopes, the grid limits); the core adds the fast part:

    grid target G*  follows a low-pass of (P - B0), time constant `tau_s` (so the swing's
                    band is kept off the grid), never moving faster than the grid ramp
                    limit per tick;
    battery B     = P(t + lead) - G*, clamped to [lo, hi]: the load where it will be when
                    the command lands (policies/load_predictor.py);
    filler F      = what B could not charge of it (lo - (P - G*)), up to the filler's rating,
                    where the site has one and allows it (off by default).

On average B is B0 (the low-pass tracks P's mean), so the slow policies keep their say;
within a period the battery absorbs what the grid must not see. Where the bounds clip
B, the swing goes through to the grid (and the GPU levers, policies/gpu_smoothing.py,
are what is left). Pure: no clock, no I/O; the state is the filter's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ems.model.reasons import Reason


@dataclass(frozen=True, slots=True)
class SmoothingParams:
    tau_s: float  # low-pass time constant of the grid target (1 / (2 pi f_cut))
    ramp_w_per_s: float | None  # the grid ramp limit as a rate (limit / window)
    deadband_w: float = 1000.0  # below this the fast part is not worth a write
    lead_ticks: float = 0.0  # answer the load this many ticks ahead: the loop's own latency
    filler_max_w: float = 0.0  # a filler load's rating, where the site may use one (0: none)


@dataclass(frozen=True, slots=True)
class SmoothingState:
    grid_target_w: float | None = None  # G*; None until the first tick
    filtered_w: float | None = None  # low-pass of (P - B0)
    last_load_w: float | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    battery_w: float  # site battery power to command (> 0 discharge)
    grid_target_w: float
    filler_w: float  # the filler load's power to command (>= 0)
    clipped: bool  # the bounds kept the battery from holding the target
    reason: Reason


def tick(load_w: float, base_w: float, lo_w: float, hi_w: float, dt_s: float, p: SmoothingParams,
         state: SmoothingState, start_load_w: float | None = None,
         import_limit_w: float | None = None, predicted_w: float | None = None) -> tuple[Tick, SmoothingState]:
    """One fast tick: `load_w` the site load now (grid + battery - filler, measured), `base_w` the
    period's setpoint, [`lo_w`, `hi_w`] the battery's bounds for this period. A fresh core starts
    from `start_load_w` (the period's averaged load) where given, not from one instant of a
    swing. Where the battery cannot charge as far as the target needs (a drop of the load while
    it is full, or at its power limit), the filler load burns the rest, up to its rating and
    never past the grid's import limit. `predicted_w`: the load `lead_ticks` ahead where a
    predictor (policies/load_predictor.py) gives it; otherwise the last change is extrapolated."""
    desired = load_w - base_w
    if state.filtered_w is None or state.grid_target_w is None or not math.isfinite(state.filtered_w):
        start = desired if start_load_w is None or not math.isfinite(start_load_w) else start_load_w - base_w
        filtered, target = start, start
    else:
        alpha = 1.0 - math.exp(-max(dt_s, 0.0) / max(p.tau_s, 1e-9))
        filtered = state.filtered_w + alpha * (desired - state.filtered_w)
        step_w = filtered - state.grid_target_w
        if p.ramp_w_per_s is not None:
            most_w = p.ramp_w_per_s * dt_s
            step_w = min(most_w, max(-most_w, step_w))
        target = state.grid_target_w + step_w
    # the command lands a tick or two after the reading (read, write, the PCS's own ramp): answer
    # the load where it is heading, not where it was
    if predicted_w is not None and math.isfinite(predicted_w):
        lead_w = predicted_w - load_w
    else:
        lead_w = 0.0 if state.last_load_w is None else p.lead_ticks * (load_w - state.last_load_w)
    want_w = load_w + lead_w - target
    battery_w = min(hi_w, max(lo_w, want_w))
    # the filler burns what the battery at its bound leaves of a drop now (no lead: a load bank
    # told the drop ahead would push the grid up), within its rating and the import limit
    filler_w = min(max(lo_w - (load_w - target), 0.0), p.filler_max_w)
    if import_limit_w is not None:
        filler_w = min(filler_w, max(import_limit_w - load_w + battery_w, 0.0))
    clipped = abs(battery_w - (want_w if filler_w == 0.0 else filler_w + load_w - target)) > p.deadband_w
    if clipped:
        # the battery cannot hold the target: the grid takes the rest, and the target
        # follows what the grid does so the filter does not wind up against the bound
        target = load_w - battery_w + filler_w
    fast = abs(battery_w - base_w) > p.deadband_w
    reason = Reason.SMOOTHING_CLIPPED if clipped else Reason.FILLER_LOAD if filler_w > p.deadband_w else \
        Reason.SMOOTHING_ACTIVE if fast else Reason.IDLE
    return Tick(battery_w, target, filler_w, clipped, reason), SmoothingState(target, filtered, load_w)
