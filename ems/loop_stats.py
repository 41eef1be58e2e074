"""The control loop's own figures: periods, overruns, clamped periods, duration and lateness."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoopStats:
    periods: int = 0
    overruns: int = 0
    periods_clamped: int = 0
    durations_s: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    lateness_s: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))

    def count(self, clamped: bool, duration_s: float, lateness_s: float) -> None:
        self.periods += 1
        self.periods_clamped += clamped
        self.durations_s.append(duration_s)
        self.lateness_s.append(lateness_s)

    def percentiles_ms(self) -> dict[str, float]:
        if not self.durations_s:
            return {}
        d = np.array(self.durations_s) * 1e3
        late = np.array(self.lateness_s) * 1e3
        return {"duration_p50_ms": float(np.percentile(d, 50)), "duration_p99_ms": float(np.percentile(d, 99)),
                "lateness_p50_ms": float(np.percentile(late, 50)), "lateness_p99_ms": float(np.percentile(late, 99))}
