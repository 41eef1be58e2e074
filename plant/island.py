"""Grid loss and island operation, as the plant sees them — with failure made visible.

On grid loss the site is islanded (the PCC breaker opens). The racks keep power only if
a grid-forming source picks up the load within their PSU hold-up (10 ms at full load):
with `seamless_transfer` armed the PCS hardware forms the island at the loss instant;
otherwise the first grid-forming command a PCS receives does, and every rack whose
hold-up ran out before that is lost. While islanded, grid-forming PCS units share what
the genset does not carry, by rating; a unit asked for more than its rating x
`pcs_overload_ratio` (or more than its battery allows) trips at once, one above its rating
for longer than `pcs_overload_s` trips then. With no grid-forming unit left the island
collapses and every rack still up is lost. Times of loss and of each command's receipt
are taken with `time.monotonic_ns()` (system-wide, so comparable across processes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ems.model.readings import PcsMode
from plant.battery import BessUnitModel
from plant.config import SimGridConfig
from plant.racks import RackFleet


@dataclass
class OutageRecord:
    loss_ns: int
    loss_s: float  # plant time
    carried_ns: int | None = None  # when a grid-forming source picked the load up
    receipts_ns: dict[str, int] = field(default_factory=dict)  # device -> first command after loss
    lost_racks: int = 0
    pcs_trips: int = 0
    collapsed: bool = False
    return_ns: int | None = None
    reconnect_ns: int | None = None


def holdup_s(cfg: SimGridConfig, power_w: np.ndarray, nameplate_w: np.ndarray) -> np.ndarray:
    """PSU hold-up per rack: `psu_holdup_s` at full load, longer at part load (stored
    energy / power; ~12 ms at 70 % for 10 ms at 100 %), at most 3x."""
    load = np.maximum(power_w, 0.05 * nameplate_w) / nameplate_w
    out: np.ndarray = np.minimum(cfg.psu_holdup_s * np.sqrt(1.0 / load), 3.0 * cfg.psu_holdup_s)
    return out


@dataclass
class DipRecord:
    """A voltage or frequency disturbance the grid went through (the PCS still sees a grid),
    and whether the site dropped off it (islanded itself while it lasted)."""

    at_s: float
    duration_s: float
    voltage_pu: float
    frequency_pu: float
    site_islanded: bool = False


class GridSide:
    """The grid's presence, its disturbances, the island and every outage's record."""

    def __init__(self, cfg: SimGridConfig) -> None:
        self.cfg = cfg
        self.off_grid = not cfg.connected  # no grid at all: the island is the steady state
        self.grid_ok = cfg.connected
        self.islanded = self.off_grid
        self.carried = True
        # off-grid, the island's own record (PCS trips, lost racks) runs from the start
        self.outage: OutageRecord | None = OutageRecord(0, 0.0, carried_ns=0) if self.off_grid else None
        self.outages: list[OutageRecord] = [] if self.outage is None else [self.outage]
        self.dip: DipRecord | None = None  # the disturbance under way
        self.dips: list[DipRecord] = []
        self._overload_s: dict[str, float] = {}

    # --- events --------------------------------------------------------------------
    def lose(self, now_s: float, now_ns: int, units: dict[str, BessUnitModel]) -> None:
        if not self.grid_ok:
            return
        self.grid_ok = False
        for u in units.values():
            u.grid_ok = False
        if self.islanded:  # lost again before we reconnected: the island just carries on
            return
        self.islanded = True
        self.outage = OutageRecord(now_ns, now_s)
        self.outages.append(self.outage)
        self.carried = False
        if self.cfg.seamless_transfer:
            formed = [u for u in units.values() if u.form_island()]
            if formed:
                self.carried, self.outage.carried_ns = True, now_ns

    def disturb(self, now_s: float, voltage_pu: float, frequency_pu: float, duration_s: float) -> None:
        """The grid's voltage and frequency go to these (per unit) for `duration_s`."""
        self.dip = DipRecord(now_s, duration_s, voltage_pu, frequency_pu)
        self.dips.append(self.dip)

    def voltage_frequency_pu(self, now_s: float) -> tuple[float, float]:
        """What the meter sees of the grid now (0, 0 when it is gone)."""
        if not self.grid_ok:
            return 0.0, 0.0
        if self.dip is not None and now_s >= self.dip.at_s + self.dip.duration_s:
            self.dip = None
        return (1.0, 1.0) if self.dip is None else (self.dip.voltage_pu, self.dip.frequency_pu)

    def restore(self, now_ns: int, units: dict[str, BessUnitModel]) -> None:
        if self.grid_ok or self.off_grid:  # off-grid there is no grid to come back
            return
        self.grid_ok = True
        for u in units.values():
            u.grid_ok = True
        if self.outage is not None and self.outage.return_ns is None:
            self.outage.return_ns = now_ns

    def receipt(self, device: str, now_ns: int) -> None:
        """A command reached `device`: keep the first one after the loss."""
        if self.outage is not None and self.outage.reconnect_ns is None:
            self.outage.receipts_ns.setdefault(device, now_ns)

    def mode_command(self, unit: BessUnitModel, mode: PcsMode, now_s: float, now_ns: int,
                     units: dict[str, BessUnitModel], racks: RackFleet) -> None:
        """A PCS mode command arrived: it may form the island, or reconnect it."""
        if not self.islanded:
            if mode is PcsMode.GRID_FORMING and self.dip is not None and unit.form_island():
                # the controller islands the site on a disturbance: the breaker opens, the
                # forming unit carries the racks at once (a planned transfer), the grid stays
                self.dip.site_islanded = True
                self.islanded, self.carried = True, True
                self.outage = OutageRecord(now_ns, now_s, carried_ns=now_ns)
                self.outages.append(self.outage)
                if self.cfg.seamless_transfer:
                    # the open breaker is a grid loss to the other units too: with the hardware
                    # transfer they form with this one, as in lose(). Otherwise the first command to
                    # land left this unit alone with the whole site until the others' arrived (sent
                    # together, but a plant step between them trips it on a loaded machine)
                    for u in units.values():
                        u.form_island()
            return
        if mode is PcsMode.GRID_FORMING and unit.form_island() and not self.carried:
            self._pick_up(now_s, now_ns, racks)
        elif mode is PcsMode.GRID_FOLLOWING and self.grid_ok:
            # planned reconnection: the PCC breaker closes, every unit follows the grid again
            self.islanded, self.carried = False, True
            for u in units.values():
                if u.mode is PcsMode.GRID_FORMING:
                    u.mode = PcsMode.GRID_FOLLOWING
                u.island_share_w = 0.0
            if self.outage is not None:
                self.outage.reconnect_ns = now_ns
            racks.power_restored(now_s)

    def _pick_up(self, now_s: float, now_ns: int, racks: RackFleet) -> None:
        assert self.outage is not None
        gap_s = (now_ns - self.outage.loss_ns) / 1e9
        lost = holdup_s(self.cfg, racks.power_w, racks.nameplate_w) < gap_s
        self.outage.lost_racks += racks.lose(lost)
        self.carried, self.outage.carried_ns = True, now_ns
        racks.power_restored(now_s)

    # --- island physics ----------------------------------------------------------------
    def step(self, now_s: float, dt_s: float, now_ns: int, net_load_w: float,
             units: dict[str, BessUnitModel], racks: RackFleet) -> None:
        """Share the island's net load (after the genset) across grid-forming units."""
        if not self.islanded:
            return
        assert self.outage is not None
        if not self.carried:
            if (now_ns - self.outage.loss_ns) / 1e9 > 3.0 * self.cfg.psu_holdup_s:
                self.outage.lost_racks += racks.lose(np.ones(len(racks.rack_ids), bool))
                self.outage.collapsed = True
            return
        injected = sum(u.power_w for u in units.values() if u.mode is PcsMode.GRID_FOLLOWING and not u.faults)
        need_w = net_load_w - injected
        for _ in range(len(units) + 1):  # re-share after each trip
            forming = [u for u in units.values() if u.mode is PcsMode.GRID_FORMING and not u.faults]
            if not forming:
                break
            rated = sum(u.cfg.rated_power_w for u in forming)
            tripped = False
            for u in forming:
                share = need_w * u.cfg.rated_power_w / rated
                battery_w = u.allowed_discharge_w() if share >= 0 else u.allowed_charge_w()
                over = abs(share) / max(min(u.cfg.rated_power_w, battery_w), 1e-9)
                late = self._overload_s.get(u.unit_id, 0.0)
                late = late + dt_s if over > 1.0 else 0.0
                self._overload_s[u.unit_id] = late
                if over > self.cfg.pcs_overload_ratio or late > self.cfg.pcs_overload_s:
                    u.inject_fault("overload_trip")
                    self.outage.pcs_trips += 1
                    tripped = True
                else:
                    u.island_share_w = share
            if not tripped:
                return
        if need_w > 0 and not any(u.mode is PcsMode.GRID_FORMING and not u.faults for u in units.values()):
            self.carried = False
            self.outage.collapsed = True
            self.outage.lost_racks += racks.lose(np.ones(len(racks.rack_ids), bool))
