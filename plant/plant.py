"""The physical site as one model stepped on an injected clock.

grid power = racks + facility overhead (cooling, as a PUE factor) - PV - battery.
The plant also keeps the counterfactual (the same site with no battery) so a run can
report what the battery changed.

Off-grid (`simulation.grid.connected: false`) there is no grid at all: the BESS units form
the island from the start (the site was black-started before the controller came up), the
genset follows what the island needs beyond the battery, PV feeds the island and is
curtailed (frequency-watt, as a grid-forming inverter's rising frequency makes PV inverters
do) by what neither the load nor the forming units can take; the meter at the open PCC
reads 0. PCS trips and lost racks count in the island's own outage record.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ems.model.readings import GensetState, PcsMode
from plant.battery import BessUnitModel
from plant.config import PlantConfig, ScenarioEvent
from plant.filler import FillerLoad
from plant.genset import GensetModel
from plant.island import GridSide
from plant.racks import RackFleet


@dataclass
class MeterState:
    grid_power_w: float = 0.0
    voltage_v: float = 230.0
    frequency_hz: float = 50.0
    import_wh: float = 0.0
    export_wh: float = 0.0
    average_w: float = 0.0  # grid power over the meter's averaging window


class SlidingAverage:
    """The average of a power over the last `window_s` (a meter's demand sub-interval)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._parts: deque[tuple[float, float]] = deque()  # (dt s, energy W s)
        self._span_s = self._energy_ws = 0.0

    def add(self, power_w: float, dt_s: float) -> float:
        self._parts.append((dt_s, power_w * dt_s))
        self._span_s += dt_s
        self._energy_ws += power_w * dt_s
        while len(self._parts) > 1 and self._span_s - self._parts[0][0] >= self.window_s - 1e-9:
            dt, e = self._parts.popleft()
            self._span_s -= dt
            self._energy_ws -= e
        return self._energy_ws / self._span_s if self._span_s > 0 else power_w


class DemandTracker:
    """Highest average import over fixed demand intervals (how utilities bill demand), and how
    much the average moved from one interval to the next (the swing a ramp limit looks at)."""

    def __init__(self, interval_s: float = 900.0, keep_steps: int = 50_000) -> None:
        self.interval_s = interval_s
        self.peak_w = 0.0
        self.last_w: float | None = None
        self.steps_w: deque[float] = deque(maxlen=keep_steps)  # |change| between consecutive intervals
        self._energy_ws = 0.0
        self._elapsed_s = 0.0

    def add(self, power_w: float, dt_s: float) -> None:
        while dt_s > 0:
            take = min(dt_s, self.interval_s - self._elapsed_s)
            self._energy_ws += power_w * take
            self._elapsed_s += take
            dt_s -= take
            if self._elapsed_s >= self.interval_s - 1e-9:
                avg_w = self._energy_ws / self.interval_s
                self.peak_w = max(self.peak_w, avg_w)
                if self.last_w is not None:
                    self.steps_w.append(abs(avg_w - self.last_w))
                self.last_w = avg_w
                self._energy_ws = self._elapsed_s = 0.0

    def step_w(self, percentile: float) -> float:
        """A percentile of the interval-to-interval change (0 before two intervals)."""
        return float(np.percentile(self.steps_w, percentile)) if self.steps_w else 0.0


@dataclass
class PlantStats:
    peak_import_w: float = 0.0
    peak_import_without_battery_w: float = 0.0
    demand: DemandTracker = field(default_factory=DemandTracker)
    demand_without_battery: DemandTracker = field(default_factory=DemandTracker)
    minute: DemandTracker = field(default_factory=lambda: DemandTracker(60.0))
    minute_without_battery: DemandTracker = field(default_factory=lambda: DemandTracker(60.0))
    soc_min: float = 1.0
    soc_max: float = 0.0
    steps: int = 0
    pv_wh: float = 0.0  # PV energy fed in (after curtailment)
    pv_curtailed_wh: float = 0.0  # off-grid: PV the island could not take
    genset_wh: float = 0.0


def pv_power_w(peak_w: float, sunrise_h: float, sunset_h: float, hour: float) -> float:
    """Clear-sky-shaped PV output: a sine arch between sunrise and sunset, sharpened."""
    if not sunrise_h < hour < sunset_h:
        return 0.0
    x = math.sin(math.pi * (hour - sunrise_h) / (sunset_h - sunrise_h))
    return float(peak_w * x**1.5)


class Plant:
    def __init__(
        self,
        sim: PlantConfig,
        unit_ids: list[str],
        rack_ids: list[str],
        row_of_rack: list[str],
        rack_nameplate_w: float,
        genset_ids: list[str] | None = None,
    ) -> None:
        self.cfg = sim
        rng = np.random.default_rng(sim.seed)
        bess_cfgs = sim.bess if len(sim.bess) == len(unit_ids) else sim.bess * len(unit_ids)
        self.units = {uid: BessUnitModel(uid, c) for uid, c in zip(unit_ids, bess_cfgs, strict=True)}
        self.racks = RackFleet(rack_ids, row_of_rack, rack_nameplate_w, sim.racks, rng)
        self.racks.reboot_s = sim.grid.rack_reboot_s
        self.grid = GridSide(sim.grid)
        self._meter_average = SlidingAverage(sim.meter_average_s)
        self.meter_frozen = False  # fault injection: the meter keeps reporting its last values
        # every genset by its device name: the site's `genset`, then `gensets:` (ids as the site file names them)
        more = genset_ids or [f"genset-{i + 2}" for i in range(len(sim.gensets))]
        self.gensets: dict[str, GensetModel] = {} if sim.genset is None else {"genset": GensetModel(sim.genset)}
        self.gensets |= {gid: GensetModel(c) for gid, c in zip(more, sim.gensets, strict=True)}
        self.filler = None if sim.filler is None else FillerLoad(sim.filler)
        self.meter = MeterState(
            voltage_v=sim.grid.nominal_voltage_v, frequency_hz=sim.grid.nominal_frequency_hz
        )
        self.stats = PlantStats()
        if self.grid.off_grid:  # black-started: every unit forms the island, no grid behind the PCC
            for u in self.units.values():
                u.grid_ok = False
                u.mode = u.mode_command = PcsMode.GRID_FORMING
            self.meter.voltage_v = self.meter.frequency_hz = 0.0
        self.now_s = 0.0
        self.pv_w = 0.0
        self.pv_available_w = 0.0  # what the PV could give now, before any curtailment
        self.pv_limit_w: float | None = None  # the PV inverter's curtailment limit, if one is set
        self.overhead_w = 0.0
        self.grid_without_battery_w = 0.0
        # set by a backtest: the site draws this (W, before PV and battery) instead of racks x PUE
        self.site_load_w: float | None = None
        self._rng = rng
        self._pending = sorted(sim.scenario, key=lambda e: e.at_s)
        self.events_applied: list[tuple[float, ScenarioEvent]] = []

    # --- time ------------------------------------------------------------------------
    def hour_of_day(self, now_s: float | None = None) -> float:
        t = self.now_s if now_s is None else now_s
        return (self.cfg.start_hour + t / 3600.0) % 24.0

    def pue(self) -> float:
        h = self.hour_of_day()
        return self.cfg.pue + self.cfg.pue_daily_amplitude * math.cos(2 * math.pi * (h - 15.0) / 24.0)

    @property
    def battery_power_w(self) -> float:
        return sum(u.power_w for u in self.units.values())

    # --- scenario --------------------------------------------------------------------
    def _apply(self, ev: ScenarioEvent) -> None:
        if ev.action == "rack_load":
            self.racks.set_override(ev.fraction, ev.rows)
        elif ev.action == "rack_model":
            self.racks.set_override(None, ev.rows)
        elif ev.action == "pcs_fault":
            self.units[str(ev.unit)].inject_fault()
        elif ev.action == "pcs_clear_fault":
            self.units[str(ev.unit)].clear_fault()
        elif ev.action == "grid_loss":
            self.lose_grid()
        elif ev.action == "grid_return":
            self.restore_grid()
        elif ev.action == "grid_dip":
            self.grid.disturb(self.now_s, ev.voltage_pu, ev.frequency_pu, ev.duration_s)
        elif ev.action == "genset_fail_next_start" and (g := self.gensets.get(ev.genset or "genset")) is not None:
            g.fail_next_start = True
        elif ev.action == "genset_trip" and (g := self.gensets.get(ev.genset or "genset")) is not None:
            g.trip(self.now_s)
        self.events_applied.append((self.now_s, ev))

    # --- grid and commands that change the topology ----------------------------------
    def lose_grid(self) -> None:
        self.grid.lose(self.now_s, time.monotonic_ns(), self.units)
        self.meter.grid_power_w = 0.0
        self.meter.voltage_v = self.meter.frequency_hz = 0.0

    def restore_grid(self) -> None:
        self.grid.restore(time.monotonic_ns(), self.units)

    def command_pcs_mode(self, unit_id: str, mode: PcsMode, now_s: float) -> None:
        now_ns = time.monotonic_ns()
        unit = self.units[unit_id]
        unit.command_mode(mode, now_s)
        self.grid.receipt(f"{unit_id}.pcs", now_ns)
        self.grid.mode_command(unit, mode, now_s, now_ns, self.units, self.racks)

    @property
    def genset(self) -> GensetModel | None:
        """The site's `genset` device's (the first)."""
        return self.gensets.get("genset")

    @property
    def genset_power_w(self) -> float:
        return sum(g.power_w for g in self.gensets.values())

    def command_genset(self, start: bool, now_s: float, genset_id: str = "genset") -> None:
        g = self.gensets.get(genset_id)
        if g is None:
            return
        self.grid.receipt(genset_id, time.monotonic_ns())
        if start:
            g.command_start(now_s)
        else:
            g.command_stop(now_s)

    # --- stepping --------------------------------------------------------------------
    def advance_to(self, now_s: float) -> None:
        """Integrate from the current time to `now_s` in sub-steps of at most max_substep_s."""
        while self.now_s < now_s - 1e-9:
            dt = min(self.cfg.max_substep_s, now_s - self.now_s)
            self.step(dt)

    def step(self, dt_s: float) -> None:
        t = self.now_s + dt_s
        while self._pending and self._pending[0].at_s <= t:
            self._apply(self._pending.pop(0))
        pv_cfg = self.cfg.pv
        # PV inverters cease to energise on grid loss (anti-islanding): none while islanded, but
        # off-grid they follow the island the BESS forms
        self.pv_available_w = 0.0 if pv_cfg is None or (self.grid.islanded and not self.grid.off_grid) else pv_power_w(
            pv_cfg.peak_w, pv_cfg.sunrise_h, pv_cfg.sunset_h, self.hour_of_day(t)
        )
        # a curtailed inverter (its limit written by the controller) gives no more than its limit
        limit = self.pv_limit_w
        self.pv_w = self.pv_available_w if limit is None else min(self.pv_available_w, limit)
        if self.site_load_w is None:
            self.racks.step(t, dt_s)
            pue = self.pue()
            racks_w = self.racks.total_power_w
            self.overhead_w = (pue - 1.0) * racks_w
            site_net_w = racks_w + self.overhead_w - self.pv_w
            # without a battery nobody caps racks for it either: use what they demand
            self.grid_without_battery_w = self.racks.total_demand_w * pue - self.pv_w
        else:
            # an external load (a backtest) stands for the whole site, cooling included:
            # the rack model and its PUE play no part, so they are not evaluated
            self.overhead_w = 0.0
            site_net_w = self.grid_without_battery_w = self.site_load_w - self.pv_w
        if self.filler is not None:  # a smoothing lever like the battery: not in the counterfactual
            self.filler.step(t, dt_s)
            site_net_w += self.filler.power_w
        islanded = self.grid.islanded
        # the running gensets share the island's net load by rating (isochronous load sharing)
        running_w = sum(g.cfg.rated_power_w for g in self.gensets.values() if g.state is GensetState.RUNNING)
        for g in self.gensets.values():
            # one that comes to running in this step takes its share from the next (no double share)
            share = g.cfg.rated_power_w / running_w if g.state is GensetState.RUNNING else 0.0
            g.step(t, dt_s, site_net_w * share if islanded else None)
        if self.grid.off_grid:
            site_net_w += self._curtail_pv(site_net_w, dt_s)
        if islanded:
            genset_w = self.genset_power_w
            self.grid.step(t, dt_s, time.monotonic_ns(), site_net_w - genset_w, self.units, self.racks)
        for unit in self.units.values():
            unit.step(t, dt_s)
        grid_w = 0.0 if islanded else site_net_w - self.battery_power_w
        m = MeterState() if self.meter_frozen else self.meter  # a frozen meter's registers do not move
        m.grid_power_w = grid_w
        m.average_w = self._meter_average.add(grid_w, dt_s)
        if grid_w >= 0:
            m.import_wh += grid_w * dt_s / 3600.0
        else:
            m.export_wh -= grid_w * dt_s / 3600.0
        nominal_v, nominal_hz = self.cfg.grid.nominal_voltage_v, self.cfg.grid.nominal_frequency_hz
        # the meter sits on the grid side of the PCC breaker: it sees the grid, not the island
        v_pu, f_pu = self.grid.voltage_frequency_pu(t)
        m.voltage_v = v_pu * nominal_v * (1.0 + 0.005 * self._rng.standard_normal())
        m.frequency_hz = f_pu * nominal_hz + (0.01 if f_pu else 0.0) * self._rng.standard_normal()
        s = self.stats
        s.peak_import_w = max(s.peak_import_w, grid_w)
        s.peak_import_without_battery_w = max(s.peak_import_without_battery_w, self.grid_without_battery_w)
        s.demand.add(max(grid_w, 0.0), dt_s)
        s.demand_without_battery.add(max(self.grid_without_battery_w, 0.0), dt_s)
        s.minute.add(max(grid_w, 0.0), dt_s)
        s.minute_without_battery.add(max(self.grid_without_battery_w, 0.0), dt_s)
        for unit in self.units.values():
            s.soc_min = min(s.soc_min, unit.soc)
            s.soc_max = max(s.soc_max, unit.soc)
        s.steps += 1
        s.pv_wh += self.pv_w * dt_s / 3600.0
        s.genset_wh += self.genset_power_w * dt_s / 3600.0
        self.now_s = t

    def _curtail_pv(self, site_net_w: float, dt_s: float) -> float:
        """Off-grid: the PV the island cannot take (after the genset, what the forming units can
        charge) is curtailed; returns the W added back to the net load."""
        genset_w = self.genset_power_w
        forming = [u for u in self.units.values() if u.mode is PcsMode.GRID_FORMING and not u.faults]
        # a margin under what they can take, so no forming unit is ever asked for more (an overload)
        room_w = 0.99 * sum(min(u.cfg.rated_power_w, u.allowed_charge_w()) for u in forming)
        excess_w = -(site_net_w - genset_w) - room_w
        cut_w = min(max(excess_w, 0.0), self.pv_w)
        self.pv_w -= cut_w
        self.stats.pv_curtailed_wh += cut_w * dt_s / 3600.0
        return cut_w

    def summary(self) -> dict[str, float]:
        units = self.units.values()
        return {
            "site_time_s": self.now_s,
            "peak_import_w": self.stats.peak_import_w,
            "peak_import_without_battery_w": self.stats.peak_import_without_battery_w,
            "peak_1min_w": self.stats.minute.peak_w,
            "peak_1min_without_battery_w": self.stats.minute_without_battery.peak_w,
            "swing_1min_p95_w": self.stats.minute.step_w(95),
            "swing_1min_p95_without_battery_w": self.stats.minute_without_battery.step_w(95),
            "swing_1min_max_w": self.stats.minute.step_w(100),
            "swing_1min_max_without_battery_w": self.stats.minute_without_battery.step_w(100),
            "peak_demand_15min_w": self.stats.demand.peak_w,
            "peak_demand_15min_without_battery_w": self.stats.demand_without_battery.peak_w,
            "battery_discharged_wh": sum(u.energy_discharged_wh for u in units),
            "battery_charged_wh": sum(u.energy_charged_wh for u in units),
            "soc_min": self.stats.soc_min,
            "soc_max": self.stats.soc_max,
            "grid_import_wh": self.meter.import_wh,
            "heartbeat_timeouts": float(sum(u.heartbeat_timeouts for u in units)),
            "units_in_standby": float(sum(u.mode is PcsMode.STANDBY for u in units)),
            "outages": float(len(self.grid.outages)),
            "grid_dips": float(len(self.grid.dips)),
            "dropped_off_on_dips": float(sum(d.site_islanded for d in self.grid.dips)),
            "lost_racks": float(sum(o.lost_racks for o in self.grid.outages)),
            "pcs_trips": float(sum(o.pcs_trips for o in self.grid.outages)),
            "genset_fuel_l": sum(g.fuel_l for g in self.gensets.values()),
            "genset_starts": float(sum(g.starts for g in self.gensets.values())),
            "genset_energy_wh": self.stats.genset_wh,
            "pv_energy_wh": self.stats.pv_wh,
            "pv_curtailed_wh": self.stats.pv_curtailed_wh,
            "off_grid": float(self.grid.off_grid),
        }
