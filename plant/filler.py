"""A filler load (a load bank): draws what it is told, up to its rating, after a response time.

The last lever for keeping a drop of the site's load off the grid where the battery cannot
charge any more (full, or at its power limit): the energy it burns is the cost.
"""

from __future__ import annotations

from plant.config import SimFillerConfig


class FillerLoad:
    def __init__(self, cfg: SimFillerConfig) -> None:
        self.cfg = cfg
        self.setpoint_w = 0.0
        self.power_w = 0.0
        self.energy_wh = 0.0
        self._pending: tuple[float, float] | None = None  # (setpoint, effective at)

    def command(self, setpoint_w: float, now_s: float) -> None:
        self.setpoint_w = min(max(setpoint_w, 0.0), self.cfg.rated_power_w)
        self._pending = (self.setpoint_w, now_s + self.cfg.response_s)

    def step(self, now_s: float, dt_s: float) -> None:
        if self._pending is not None and now_s >= self._pending[1]:
            self.power_w, self._pending = self._pending[0], None
        self.energy_wh += self.power_w * dt_s / 3600.0
