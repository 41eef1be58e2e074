"""A filler load (a load bank): draws what it is told, up to its rating, after a response time;
drops to 0 W when no setpoint was written for its watchdog time (the controller is gone).

The last lever for keeping a drop of the site's load off the grid where the battery cannot
charge any more (full, or at its power limit): the energy it burns is the cost.
"""

from __future__ import annotations

from collections import deque

from plant.config import SimFillerConfig


class FillerLoad:
    def __init__(self, cfg: SimFillerConfig) -> None:
        self.cfg = cfg
        self.setpoint_w = 0.0
        self.power_w = 0.0
        self.energy_wh = 0.0
        self.commanded_at_s = 0.0
        self.watchdog_trips = 0
        # commands in flight, (effective at, setpoint): a delay line, so that a command every tick
        # lands each its response time later rather than pushing the last one back
        self._pending: deque[tuple[float, float]] = deque(maxlen=10_000)

    def command(self, setpoint_w: float, now_s: float) -> None:
        self.setpoint_w = min(max(setpoint_w, 0.0), self.cfg.rated_power_w)
        self._pending.append((now_s + self.cfg.response_s, self.setpoint_w))
        self.commanded_at_s = now_s

    def step(self, now_s: float, dt_s: float) -> None:
        while self._pending and now_s >= self._pending[0][0]:
            self.power_w = self._pending.popleft()[1]
        if self.power_w > 0.0 and now_s - self.commanded_at_s > self.cfg.watchdog_s:
            # no setpoint written for its watchdog: the controller is gone, the load bank stops
            self.setpoint_w = self.power_w = 0.0
            self._pending.clear()
            self.watchdog_trips += 1
        self.energy_wh += self.power_w * dt_s / 3600.0
