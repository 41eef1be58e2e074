"""Averages of a power over clock-aligned steps: the planner's load history (kept across a
restart by ems/persistence.py, so a restarted controller plans at once, not a day later)."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np


class StepHistory:
    """Averages of a power over clock-aligned steps, the newest last (a bounded window).

    A step with no observation (the loop was down) repeats the previous step's value."""

    def __init__(self, step_s: float, keep_steps: int) -> None:
        self.step_s = step_s
        self.values: deque[float] = deque(maxlen=keep_steps)
        self._bin: int | None = None
        self._sum_ws = 0.0
        self._time_s = 0.0

    def observe(self, t_s: float, power_w: float, dt_s: float) -> None:
        """`power_w` averaged over (t_s - dt_s, t_s]; attributed to the step holding t_s - dt_s."""
        b = math.floor((t_s - dt_s) / self.step_s + 1e-9)
        if self._bin is None:
            self._bin = b
        elif b > self._bin:
            self._close(b)
        self._sum_ws += power_w * dt_s
        self._time_s += dt_s

    def _close(self, new_bin: int) -> None:
        if self._time_s > 0:
            self.values.append(self._sum_ws / self._time_s)
        gap = new_bin - (new_bin if self._bin is None else self._bin) - 1
        if self.values:
            for _ in range(min(gap, self.values.maxlen or gap)):
                self.values.append(self.values[-1])
        self._bin, self._sum_ws, self._time_s = new_bin, 0.0, 0.0

    @property
    def end_s(self) -> float | None:
        """The end of the newest closed step (None: nothing observed yet)."""
        return None if self._bin is None else self._bin * self.step_s

    def complete_until(self, t_s: float) -> np.ndarray:
        """The completed steps, as an array, once every step before `t_s` is closed."""
        b = math.floor(t_s / self.step_s + 1e-9)
        if self._bin is not None and b > self._bin:
            self._close(b)
        return np.fromiter(self.values, dtype=np.float64, count=len(self.values))

    def state(self) -> dict[str, Any] | None:
        """The closed steps and where they end, for the state store (None: nothing yet)."""
        if self._bin is None:
            return None
        return {"step_s": self.step_s, "bin": self._bin, "values": [round(v, 1) for v in self.values]}

    def restore(self, saved: object, now_s: float, max_gap_s: float) -> bool:
        """Take the closed steps a previous run saved, where they are this history's (same step)
        and ended at most `max_gap_s` before `now_s` (a longer gap would be filled with one
        value, a guess, not history). False, and nothing changed, otherwise."""
        if not isinstance(saved, dict) or saved.get("step_s") != self.step_s:
            return False
        b, values = saved.get("bin"), saved.get("values")
        if not isinstance(b, int) or isinstance(b, bool) or not isinstance(values, list) or not values:
            return False
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            return False
        gap_s = now_s - b * self.step_s
        if not 0 <= gap_s <= max_gap_s:
            return False
        self.values.clear()
        self.values.extend(float(v) for v in values[-(self.values.maxlen or len(values)):])
        self._bin, self._sum_ws, self._time_s = b, 0.0, 0.0
        return True
