"""Injected time. Control uses a monotonic clock; billing and timestamps use wall time.

`ScaledClock` runs the site clock faster than real time (for demos): it is anchored on
the system-wide CLOCK_MONOTONIC, so separate processes given the same anchor and speed
agree on site time. `ManualClock` is for pure tests and fast-time backtests.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    speed: float

    def monotonic(self) -> float:
        """Site seconds on a monotonic scale (never jumps)."""
        ...

    def wall(self) -> float:
        """Site wall-clock time, seconds since the Unix epoch."""
        ...

    async def sleep_until(self, monotonic_s: float) -> None:
        """Sleep until the site monotonic clock reaches `monotonic_s`."""
        ...


class ScaledClock:
    """Site time = speed x (real monotonic time - anchor). speed=1 is the real clock."""

    def __init__(self, speed: float = 1.0, anchor_monotonic: float | None = None,
                 epoch_wall: float | None = None) -> None:
        self.speed = speed
        self.anchor = time.monotonic() if anchor_monotonic is None else anchor_monotonic
        # wall time at site monotonic 0
        self.epoch_wall = time.time() - (time.monotonic() - self.anchor) if epoch_wall is None else epoch_wall

    def monotonic(self) -> float:
        return (time.monotonic() - self.anchor) * self.speed

    def wall(self) -> float:
        return self.epoch_wall + self.monotonic()

    async def sleep_until(self, monotonic_s: float) -> None:
        delay_real = (monotonic_s - self.monotonic()) / self.speed
        if delay_real > 0:
            await asyncio.sleep(delay_real)


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start_s: float = 0.0, epoch_wall: float = 1_767_225_600.0) -> None:
        self.speed = 1.0
        self.now_s = start_s
        self.epoch_wall = epoch_wall

    def monotonic(self) -> float:
        return self.now_s

    def wall(self) -> float:
        return self.epoch_wall + self.now_s

    def advance(self, dt_s: float) -> None:
        self.now_s += dt_s

    async def sleep_until(self, monotonic_s: float) -> None:
        self.now_s = max(self.now_s, monotonic_s)
        await asyncio.sleep(0)
