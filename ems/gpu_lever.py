"""The GPU floors and ramps, decided each period (policies/gpu_smoothing.py) from the fast
loop's measured swing and the battery's headroom around its base power this period."""

from __future__ import annotations

from ems.config import SiteConfig
from ems.model.racks import SmoothingProfile
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot
from ems.period import StepResult
from policies import gpu_smoothing


class GpuLever:
    def __init__(self, params: gpu_smoothing.GpuSmoothingParams) -> None:
        self.params = params
        self.state = gpu_smoothing.GpuSmoothingState()
        self.reason: Reason | None = None

    def decide(self, snap: SiteSnapshot, result: StepResult, swing_w: float,
               grid_band_rms_w: float) -> dict[str, SmoothingProfile | None]:
        lo = sum(b[0] for b in result.unit_bounds_w.values())
        hi = sum(b[1] for b in result.unit_bounds_w.values())
        base = result.setpoint_w
        profiles, self.reason, self.state = gpu_smoothing.decide(
            snap.now_s, swing_w, min(hi - base, base - lo), grid_band_rms_w, snap.racks, self.params, self.state)
        return profiles


def gpu_lever(cfg: SiteConfig) -> GpuLever | None:
    """The GPU lever a site file asks for (`policies.smoothing.gpu`), or None."""
    sm = cfg.policies.smoothing
    if sm is None or not sm.enabled or not sm.gpu:
        return None
    return GpuLever(gpu_smoothing.GpuSmoothingParams(
        sm.gpu_floor_fraction, sm.gpu_ramp_w_per_s, sm.gpu_release_after_s, frozenset(cfg.racks.critical_rows),
        cfg.grid_connection.oscillation_limit_w_rms))
