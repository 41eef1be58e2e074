"""GPU rack telemetry as one period sees it: arrays indexed by rack, with ages.

A rack whose stream is missing or stale is never read as 0 W: the conservative estimate
assumes it draws its cap or nameplate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RacksReading:
    rack_ids: tuple[str, ...]
    row_of_rack: tuple[str, ...]
    power_w: FloatArray  # last reported; NaN where nothing was ever received
    cap_w: FloatArray  # cap the rack reports in effect; NaN = none
    nameplate_w: FloatArray
    age_s: FloatArray  # inf where nothing was ever received
    stale_after_s: float

    @property
    def fresh(self) -> npt.NDArray[np.bool_]:
        return self.age_s <= self.stale_after_s

    @property
    def stale_count(self) -> int:
        return int((~self.fresh).sum())

    @property
    def reported_power_w(self) -> float:
        """Sum over racks with fresh telemetry only."""
        return float(np.where(self.fresh, self.power_w, 0.0).sum())

    def conservative_power_w(self) -> FloatArray:
        """Per rack: reported power if fresh, else its cap, else nameplate (never 0). A stale
        rack is never read below its last reported power: a cap it reports under what it draws
        (not yet in force, or a faulty or lying agent's `cap_w: 0`) is no bound on it."""
        capped = np.fmax(self.cap_w, self.power_w)  # fmax: a NaN power (never received) leaves the cap
        fallback = np.where(np.isnan(self.cap_w), self.nameplate_w, capped)
        return np.where(self.fresh, self.power_w, fallback)

    @property
    def load_estimate_w(self) -> float:
        return float(self.conservative_power_w().sum())


@dataclass(frozen=True, slots=True)
class SmoothingProfile:
    """What a rack is told to do about its own swing: hold at least `floor_w` while a job
    runs, and change power no faster than `ramp_w_per_s` (GPU power smoothing)."""

    floor_w: float
    ramp_w_per_s: float
