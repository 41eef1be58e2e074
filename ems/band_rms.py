"""Running RMS of a power signal's fast part: what oscillates above `low_hz`, over a window.

The signal minus its own low-pass (time constant 1 / (2 pi low_hz)) is what a band
above `low_hz` holds (the sampling rate bounds it from above); its RMS over the last
`window_s` is what an oscillation limit at the grid connection is weighed against.
"""

from __future__ import annotations

import math
from collections import deque


class BandRms:
    def __init__(self, low_hz: float, window_s: float) -> None:
        self.tau_s = 1.0 / (2 * math.pi * low_hz)
        self.window_s = window_s
        self._lowpass: float | None = None
        self._squares: deque[tuple[float, float]] = deque()  # (time s, deviation^2)
        self._sum = 0.0

    def add(self, t_s: float, value: float, dt_s: float) -> None:
        if self._lowpass is None:
            self._lowpass = value
        else:
            self._lowpass += (1.0 - math.exp(-max(dt_s, 0.0) / self.tau_s)) * (value - self._lowpass)
        sq = (value - self._lowpass) ** 2
        self._squares.append((t_s, sq))
        self._sum += sq
        while self._squares and t_s - self._squares[0][0] > self.window_s:
            self._sum -= self._squares.popleft()[1]

    @property
    def rms(self) -> float:
        return math.sqrt(max(self._sum, 0.0) / len(self._squares)) if self._squares else 0.0
