"""A solved arbitrage plan as the policies read it: pure data in site monotonic time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PlanView:
    """What the live policies need from a solved plan (pure data, site monotonic time)."""

    made_at_s: float  # when the plan was built (its inputs' time)
    start_s: float  # start of step 0
    step_s: float
    soc: tuple[float, ...]  # n + 1 values: soc[k] at the start of step k
    battery_w: tuple[float, ...]  # n planned powers (> 0 discharge)
    grid_w: tuple[float, ...]  # n planned grid imports
    import_cap_w: tuple[float, ...]  # n: highest grid import the plan allows in step k
    expected_savings: float  # plan's cost without battery - with battery, over the horizon

    def step_at(self, now_s: float) -> int | None:
        """Index of the step containing `now_s`, or None outside the plan."""
        if now_s < self.start_s:
            return None
        k = int((now_s - self.start_s) // self.step_s)
        return k if k < len(self.battery_w) else None
