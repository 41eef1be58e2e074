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
    dr_event_ids: tuple[str, ...] = ()  # demand-response events the plan charges for (the step then
    # leaves the pre-charge to it)

    def step_at(self, now_s: float) -> int | None:
        """Index of the step containing `now_s`, or None outside the plan."""
        if now_s < self.start_s:
            return None
        k = int((now_s - self.start_s) // self.step_s)
        return k if k < len(self.battery_w) else None


@dataclass(frozen=True, slots=True)
class GensetSchedule:
    """The gensets' planned schedule (ems/planning/genset_milp.py): how many run in each step
    and what they give together; the period step holds at least that many on."""

    start_s: float  # site time of step 0
    step_s: float
    on: tuple[int, ...]  # n: gensets on in step k
    power_w: tuple[float, ...]  # n: their planned output together
    soc: tuple[float, ...]  # n + 1: the battery's planned SoC at the start of each step
    fuel_l: float  # the plan's litres over its horizon
    solve_s: float = 0.0

    def step_at(self, now_s: float) -> int | None:
        """Index of the step containing `now_s`, or None outside the schedule."""
        if now_s < self.start_s:
            return None
        k = int((now_s - self.start_s) // self.step_s)
        return k if k < len(self.on) else None
