"""Averages of a power over clock-aligned steps: the planner's load history (kept across a
restart by ems/persistence.py, so a restarted controller plans at once, not a day later)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class StepHistory:
    """Averages of a power over clock-aligned steps, the newest last (a bounded window).

    A step with no observation (the loop was down) repeats the previous step's value. The
    values live in a buffer of twice the window, moved down when full: reading the window
    is one slice (a planner reads weeks of steps every period)."""

    def __init__(self, step_s: float, keep_steps: int) -> None:
        self.step_s = step_s
        self.keep_steps = keep_steps
        self._buf = np.zeros(2 * max(keep_steps, 1))
        self._end = 0  # the values are _buf[max(0, _end - keep_steps):_end]
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
            self._append(self._sum_ws / self._time_s)
        gap = new_bin - (new_bin if self._bin is None else self._bin) - 1
        if self._end:
            last = float(self._buf[self._end - 1])
            for _ in range(min(gap, self.keep_steps)):
                self._append(last)
        self._bin, self._sum_ws, self._time_s = new_bin, 0.0, 0.0

    def _append(self, value: float) -> None:
        if self._end == self._buf.size:  # full: keep the window's last steps, at the front
            keep = self.keep_steps
            self._buf[:keep] = self._buf[self._end - keep:self._end]
            self._end = keep
        self._buf[self._end] = value
        self._end += 1

    def _window(self) -> np.ndarray:
        return self._buf[max(0, self._end - self.keep_steps):self._end]

    @property
    def values(self) -> list[float]:
        """The closed steps, the newest last (a copy)."""
        out: list[float] = self._window().tolist()
        return out

    @property
    def end_s(self) -> float | None:
        """The end of the newest closed step (None: nothing observed yet)."""
        return None if self._bin is None else self._bin * self.step_s

    def complete_until(self, t_s: float) -> np.ndarray:
        """The completed steps, as an array, once every step before `t_s` is closed."""
        b = math.floor(t_s / self.step_s + 1e-9)
        if self._bin is not None and b > self._bin:
            self._close(b)
        return self._window().copy()

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
        # JSON ints have no bound: one past a float's range would raise (OverflowError) in the
        # arithmetic below, at start-up; a value past any site's power is not a history of one
        if not abs(b) < 2**53 or not all(_power(v) for v in values):
            return False
        gap_s = now_s - b * self.step_s
        if not 0 <= gap_s <= max_gap_s:
            return False
        kept = [float(v) for v in values[-self.keep_steps:]] if self.keep_steps else []
        self._buf[:len(kept)] = kept
        self._end = len(kept)
        self._bin, self._sum_ws, self._time_s = b, 0.0, 0.0
        return True


MAX_ABS_W = 1e10  # 10 GW: past any site's meter


def _power(v: object) -> bool:
    """A saved step's value is a number of watts a site can have (not NaN, inf, or 10**400)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= MAX_ABS_W
