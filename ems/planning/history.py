"""Averages of a power over clock-aligned steps: the planner's load history."""

from __future__ import annotations

import math

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

    def complete_until(self, t_s: float) -> np.ndarray:
        """The completed steps, as an array, once every step before `t_s` is closed."""
        b = math.floor(t_s / self.step_s + 1e-9)
        if self._bin is not None and b > self._bin:
            self._close(b)
        return self._buf[max(0, self._end - self.keep_steps):self._end].copy()
