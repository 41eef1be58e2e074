"""A diesel genset: start delay, warm-up, rated power, ramp, fuel, cool-down.

stopped -> (start) starting -> warmup -> running -> (stop) cooldown -> stopped. A genset
set to fail does so at the end of its start delay, and one tripped while running at once
(state `failed` until reset by a stop command). It only carries load when the site is
islanded (it is not paralleled with the grid): then it follows its share of the island's
net load (the plant shares it by rating among the running gensets) plus an optional
battery-charging request, ramp-limited, up to its rating.
"""

from __future__ import annotations

from dataclasses import dataclass

from ems.model.readings import GensetState
from plant.config import SimGensetConfig


@dataclass
class GensetModel:
    cfg: SimGensetConfig
    state: GensetState = GensetState.STOPPED
    since_s: float = 0.0
    power_w: float = 0.0
    charge_request_w: float = 0.0  # extra output the controller asks for, to charge the battery
    fuel_l: float = 0.0
    run_s: float = 0.0
    starts: int = 0
    fail_next_start: bool = False

    @property
    def available(self) -> bool:
        return self.state is GensetState.RUNNING

    def command_start(self, now_s: float) -> None:
        if self.state in (GensetState.STOPPED, GensetState.COOLDOWN):
            self.state, self.since_s = GensetState.STARTING, now_s
            self.starts += 1

    def command_stop(self, now_s: float) -> None:
        if self.state in (GensetState.STARTING, GensetState.WARMUP, GensetState.RUNNING):
            self.state, self.since_s = GensetState.COOLDOWN, now_s
        elif self.state is GensetState.FAILED:
            self.state, self.since_s = GensetState.STOPPED, now_s  # acknowledge the failure

    def trip(self, now_s: float) -> None:
        """A fault while running (or starting): off at once, `failed` until acknowledged."""
        if self.state in (GensetState.STARTING, GensetState.WARMUP, GensetState.RUNNING):
            self.state, self.since_s, self.power_w = GensetState.FAILED, now_s, 0.0

    def step(self, now_s: float, dt_s: float, island_net_load_w: float | None) -> None:
        """`island_net_load_w`: what the island needs from sources other than the battery
        (None while grid-connected: the genset then runs unloaded)."""
        cfg, elapsed = self.cfg, now_s - self.since_s
        if self.state is GensetState.STARTING and elapsed >= cfg.start_delay_s:
            if self.fail_next_start or cfg.fails_to_start:
                self.state, self.fail_next_start = GensetState.FAILED, False
            else:
                self.state = GensetState.WARMUP
            self.since_s = now_s
        elif self.state is GensetState.WARMUP and elapsed >= cfg.warmup_s:
            self.state, self.since_s = GensetState.RUNNING, now_s
        elif self.state is GensetState.COOLDOWN and elapsed >= cfg.cooldown_s:
            self.state, self.since_s = GensetState.STOPPED, now_s
        target = 0.0
        if self.state is GensetState.RUNNING and island_net_load_w is not None:
            target = min(cfg.rated_power_w, max(0.0, island_net_load_w + self.charge_request_w))
        step_w = cfg.ramp_w_per_s * dt_s
        self.power_w += min(step_w, max(-step_w, target - self.power_w))
        running = self.state in (GensetState.WARMUP, GensetState.RUNNING, GensetState.COOLDOWN)
        if running:
            self.run_s += dt_s
            # Willans line: idle consumption plus a share proportional to output
            litres_per_h = cfg.fuel_idle_l_per_h + cfg.fuel_l_per_kwh * self.power_w / 1000.0
            self.fuel_l += litres_per_h * dt_s / 3600.0
