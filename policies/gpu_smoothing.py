"""GPU power floors and ramp limits: the lever after the battery.

A GPU can be told to hold its power above a floor while a job runs (burning power in
the communication phases instead of dropping) and to change it no faster than a ramp
rate, which together flatten a training job's swing at its source. It costs energy
(the floor's filler) and, with a ramp limit on the way up, some work delayed. So it is
engaged only when the battery cannot hold the swing: when half the swing the fast loop
measured exceeds the battery's headroom around its base power this period (its room to
discharge and to charge), or when the grid's oscillation (its RMS in the band) is over
the connection's limit all the same (the battery answers too late for the swing's
edges). It is released when the swing fits in half that headroom and the battery would
hold the limit alone, for `release_after_s` (hysteresis: floors do not flap). The battery
would hold it alone where the swing could not break the limit even unsmoothed (half of
it, the RMS of a square wave that size, within the limit), or where what the battery
leaves of the floored load's band RMS (grid / load, measured now), applied to the load's
band RMS when the floors went on, is within 3/4 of the limit: the floors then cost energy
for an oscillation the battery would keep off the grid anyway. Critical rows are never
touched.
Pure: the caller supplies the swing, the headroom and the time.
"""

from __future__ import annotations

from dataclasses import dataclass

from ems.model.racks import RacksReading, SmoothingProfile
from ems.model.reasons import Reason

RELEASE_SHARE = 0.75  # of the oscillation limit: the battery alone must hold this for the floors to go


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
    unfloored_load_rms_w: float | None = None  # the load's band RMS when the floors went on


def battery_holds(grid_band_rms_w: float, load_band_rms_w: float | None, unfloored_load_rms_w: float | None,
                  limit_w: float) -> bool:
    """Whether the battery alone would keep the unfloored load's band RMS within 3/4 of the limit,
    at the share of the load's it leaves now (False where that is not measured)."""
    if load_band_rms_w is None or unfloored_load_rms_w is None or load_band_rms_w <= 0.0:
        return False
    return grid_band_rms_w / load_band_rms_w * unfloored_load_rms_w <= RELEASE_SHARE * limit_w


def decide(now_s: float, swing_w: float, headroom_w: float, grid_band_rms_w: float, racks: RacksReading,
           p: GpuSmoothingParams, state: GpuSmoothingState, load_band_rms_w: float | None = None
           ) -> tuple[dict[str, SmoothingProfile | None], Reason | None, GpuSmoothingState]:
    """Each rack's profile (None: no profile) and the reason when engaged. `load_band_rms_w`: the
    site load's band RMS without the battery, as the fast loop measures it (None: unknown)."""
    limit = p.oscillation_limit_w_rms
    need = swing_w / 2 > headroom_w or (limit is not None and grid_band_rms_w > limit)
    fits = swing_w / 2 <= headroom_w / 2 and (
        limit is None or swing_w / 2 <= limit
        or battery_holds(grid_band_rms_w, load_band_rms_w, state.unfloored_load_rms_w, limit))
    if need:
        unfloored = state.unfloored_load_rms_w if state.engaged else load_band_rms_w
        state = GpuSmoothingState(True, None, unfloored)
    elif state.engaged:
        since = state.fits_since_s if fits and state.fits_since_s is not None else (now_s if fits else None)
        engaged = since is None or now_s - since < p.release_after_s
        state = GpuSmoothingState(engaged, since, state.unfloored_load_rms_w if engaged else None)
    if not state.engaged:
        return dict.fromkeys(racks.rack_ids), None, state
    profiles: dict[str, SmoothingProfile | None] = {}
    for rid, row, nameplate_w in zip(racks.rack_ids, racks.row_of_rack, racks.nameplate_w.tolist(), strict=True):
        profiles[rid] = None if row in p.critical_rows else SmoothingProfile(p.floor_fraction * nameplate_w,
                                                                         p.ramp_w_per_s)
    return profiles, Reason.GPU_SMOOTHING, state
