"""GPU power floors and ramp limits: the lever after the battery.

A GPU can be told to hold its power above a floor while a job runs (burning power in
the communication phases instead of dropping) and to change it no faster than a ramp
rate, which together flatten a training job's swing at its source. It costs energy
(the floor's filler) and, with a ramp limit on the way up, some work delayed. So it is
engaged only when the battery cannot hold the swing: when half the swing the fast loop
measured exceeds the battery's headroom around its base power this period (its room to
discharge and to charge), or when the grid's oscillation (its RMS in the band) has been
over the connection's limit for PERSIST_S all the same (the battery answers too late for
the swing's edges; one step, a checkpoint's dip, holds the window's RMS up for the
window's length and no longer: the ramp limit, not the floors, is what answers a step).
It is released when the swing fits in half that headroom for `release_after_s`
(hysteresis: floors do not flap) and the battery would hold the limit alone: the swing
could not break it even unsmoothed (half of it, the RMS of a square wave that size,
within the limit), or, where the swing the floors went on for fits half the headroom too,
the grid's band RMS has stayed within 3/4 of the limit that long. The latter is a trial
of the battery alone, since under the floors nothing measures what it would leave of the
unfloored swing: for TRIAL_GRACE_S after a release the oscillation does not engage the
floors again (the fast loop's predictor learns the unfloored swing and the band RMS
window fills), and a trial that fails (the lever is needed again within
`release_after_s` of the release) doubles the calm the next release waits for, up to
2**HOLD_DOUBLINGS times `release_after_s`; one that holds resets it. So floors engaged
for a transient (the fast loop's first seconds, before its predictor has history; a
job's new swing) do not stay on for a swing the battery holds, and a swing it cannot
hold gets through rarely and briefly. Critical rows are never touched.
Pure: the caller supplies the swing, the headroom and the time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ems.model.racks import RacksReading, SmoothingProfile
from ems.model.reasons import Reason

RELEASE_SHARE = 0.75  # of the oscillation limit: the grid's band RMS within this to count as calm
HOLD_DOUBLINGS = 6  # failed trials double the calm a release waits for, at most this many times
TRIAL_GRACE_S = 20.0  # after a release, the battery's predictor and the band's window settle
PERSIST_S = 15.0  # the grid's band RMS over the limit this long is an oscillation, not one step in the window


@dataclass(frozen=True, slots=True)
class GpuSmoothingParams:
    floor_fraction: float  # of a rack's nameplate, held while a job runs
    ramp_w_per_s: float  # per rack, up and down
    release_after_s: float = 300.0
    critical_rows: frozenset[str] = frozenset()
    oscillation_limit_w_rms: float | None = None


@dataclass(frozen=True, slots=True)
class GpuSmoothingState:
    engaged: bool = False
    fits_since_s: float | None = None  # since when the swing fits the battery's headroom
    hold_s: float | None = None  # the calm the next release waits for (None: release_after_s)
    released_at_s: float | None = None  # when the floors last went: a trial of the battery alone
    swing_before_w: float | None = None  # the swing when the floors went on (under them it is not seen)
    over_since_s: float | None = None  # since when the grid's band RMS is over the limit


def decide(now_s: float, swing_w: float, headroom_w: float, grid_band_rms_w: float, racks: RacksReading,
           p: GpuSmoothingParams, state: GpuSmoothingState
           ) -> tuple[dict[str, SmoothingProfile | None], Reason | None, GpuSmoothingState]:
    """Each rack's profile (None: no profile) and the reason when engaged."""
    limit = p.oscillation_limit_w_rms
    settling = state.released_at_s is not None and now_s - state.released_at_s < TRIAL_GRACE_S
    over = limit is not None and grid_band_rms_w > limit
    over_since = (now_s if state.over_since_s is None else state.over_since_s) if over else None
    need = swing_w / 2 > headroom_w or (over_since is not None and now_s - over_since >= PERSIST_S and not settling)
    before_w = swing_w if state.swing_before_w is None else max(swing_w, state.swing_before_w)
    fits = swing_w / 2 <= headroom_w / 2 and (
        limit is None or swing_w / 2 <= limit
        or (before_w / 2 <= headroom_w / 2 and grid_band_rms_w <= RELEASE_SHARE * limit))
    hold = p.release_after_s if state.hold_s is None else state.hold_s
    if need:
        if not state.engaged:  # a trial that failed soon after the release waits longer next time
            failed = state.released_at_s is not None and now_s - state.released_at_s < p.release_after_s
            hold = min(2 * hold, 2**HOLD_DOUBLINGS * p.release_after_s) if failed else p.release_after_s
        before = state.swing_before_w if state.engaged else swing_w
        state = GpuSmoothingState(True, None, hold, state.released_at_s, before, over_since)
    elif state.engaged:
        since = state.fits_since_s if fits and state.fits_since_s is not None else (now_s if fits else None)
        engaged = since is None or now_s - since < hold
        state = GpuSmoothingState(engaged, since, hold, state.released_at_s if engaged else now_s,
                                  state.swing_before_w if engaged else None, over_since)
    else:
        state = replace(state, over_since_s=over_since)
    if not state.engaged:
        return dict.fromkeys(racks.rack_ids), None, state
    profiles: dict[str, SmoothingProfile | None] = {}
    for rid, row, nameplate_w in zip(racks.rack_ids, racks.row_of_rack, racks.nameplate_w.tolist(), strict=True):
        profiles[rid] = None if row in p.critical_rows else SmoothingProfile(p.floor_fraction * nameplate_w,
                                                                         p.ramp_w_per_s)
    return profiles, Reason.GPU_SMOOTHING, state
