"""The average of a sampled signal over a trailing window (trapezoids between samples)."""

from __future__ import annotations

from collections import deque
from itertools import pairwise


class TimeAverage:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()  # (time s, value)

    def add(self, t_s: float, value: float) -> float:
        """Add a sample; the average over [t - window, t] of what the samples say (the
        first sample's value before it, for a window not yet full)."""
        if self._samples and t_s <= self._samples[-1][0]:
            self._samples.pop()  # a repeated instant: the newer value stands
        self._samples.append((t_s, value))
        start = t_s - self.window_s
        while len(self._samples) > 1 and self._samples[1][0] <= start:
            self._samples.popleft()  # keep one sample at or before the window's start
        if len(self._samples) == 1:
            return value
        area, span = 0.0, 0.0
        for (t0, v0), (t1, v1) in pairwise(self._samples):
            if t0 < start:  # the window starts inside this stretch: interpolate
                v0 += (v1 - v0) * (start - t0) / (t1 - t0)
                t0 = start
            area += 0.5 * (v0 + v1) * (t1 - t0)
            span += t1 - t0
        return area / span if span > 0 else value
