"""Whether the grid kept the utility's ramp limit, as the meter measured it.

The ramp constraint (policies/grid_ramp.py) and the fast loop keep what the site plans inside
the limit; this watches what happened: each period's metered grid power (the period's
average) over the last `window_s`, its spread (highest - lowest) against `limit_w`. Seconds
spent over the limit, the episodes (a stretch over it counts once) and the worst spread are
what a utility would hold against the site: a job step the battery cannot take, announced
too late or not at all, shows here (docs/smoothing.md), in the status and in the metrics.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class RampWatch:
    window: deque[tuple[float, float]] = field(default_factory=deque)  # (site s, grid W)
    swing_w: float = 0.0  # the window's spread at the last reading
    worst_w: float = 0.0  # the largest spread seen
    exceeded_s: float = 0.0  # time the window's spread was over the limit
    episodes: int = 0  # stretches over the limit
    _over: bool = False
    _last_s: float | None = None

    def observe(self, now_s: float, grid_w: float, limit_w: float, window_s: float, max_gap_s: float) -> None:
        """One period's reading. A gap longer than `max_gap_s` (no meter, the loop stopped)
        starts the window again: a spread across it is not a ramp anyone saw."""
        if self._last_s is not None and now_s - self._last_s > max_gap_s:
            self.window.clear()
            self._over = False
        while self.window and now_s - self.window[0][0] >= window_s:
            self.window.popleft()
        self.window.append((now_s, grid_w))
        values = [w for _, w in self.window]
        self.swing_w = max(values) - min(values)
        self.worst_w = max(self.worst_w, self.swing_w)
        over = self.swing_w > limit_w
        if over and self._last_s is not None:  # the time since the last reading ended over the limit
            self.exceeded_s += now_s - self._last_s
        if over and not self._over:
            self.episodes += 1
        self._over = over
        self._last_s = now_s

    def status(self) -> dict[str, float | int]:
        return {"swing_w": round(self.swing_w, 1), "worst_w": round(self.worst_w, 1),
                "exceeded_s": round(self.exceeded_s, 3), "episodes": self.episodes}
