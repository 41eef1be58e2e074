"""The armed failover plan: what to do the instant the grid is lost, computed beforehand.

Every control period, from the frozen snapshot: which PCS units go grid-forming, what
the battery can deliver now (power-limited by the units and BMS, energy-limited so it
bridges until the genset carries the load), the island's expected load (racks at their
conservative estimate — stale racks at cap or nameplate, never 0 — plus facility
overhead; PV is taken as 0 because it ceases to energise on grid loss), the rack caps
that make the load fit, in shed order (critical rows last), and whether to start the
genset. The fast path only fires this plan; it does no planning on the event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ems.model.racks import FloatArray, RacksReading
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot


@dataclass(frozen=True, slots=True)
class FailoverParams:
    shed_order: tuple[str, ...]  # rows, capped first .. last
    critical_rows: frozenset[str]
    min_cap_fraction: float
    island_loading: float  # plan to load the BESS up to this share of what it can deliver
    overhead_fraction: float
    soc_floor: float  # usable energy is above this
    bridge_s: float  # how long the battery must carry the island until the genset does
    start_genset: bool  # start it as part of the plan (a genset exists and starts at once)


@dataclass(frozen=True, slots=True)
class FailoverPlan:
    armed_at_s: float
    units: tuple[str, ...]  # PCS units to switch to grid-forming
    deliverable_w: float  # what the BESS can carry now, after the loading margin
    island_load_w: float  # expected island load before caps
    planned_load_w: float  # after caps
    rack_caps_w: dict[str, float]  # racks to cap, by id
    genset_start: bool
    shortfall_w: float  # > 0: even capping every rack does not fit
    reason: Reason

    @property
    def rows_capped(self) -> dict[str, dict[str, float | None]]:
        """Caps grouped per row, ready for one group message per row."""
        out: dict[str, dict[str, float | None]] = {}
        for rack, cap in self.rack_caps_w.items():
            out.setdefault(rack.split("-")[0], {})[rack] = cap
        return out


def shed_sequence(rows: list[str], shed_order: tuple[str, ...], critical: frozenset[str]) -> list[str]:
    """Rows in the order they are capped: the configured order first, then the other
    non-critical rows from the last row backwards, then critical rows."""
    listed = [r for r in shed_order if r in rows and r not in critical]
    rest = [r for r in reversed(rows) if r not in listed and r not in critical]
    return listed + rest + [r for r in reversed(rows) if r in critical]


def battery_deliverable_w(snap: SiteSnapshot, p: FailoverParams) -> tuple[tuple[str, ...], float]:
    """Units that can form the island and the power they can carry for `bridge_s`."""
    units: list[str] = []
    power_w = energy_wh = 0.0
    for u in snap.units:
        if u.pcs is None or u.bms is None or u.pcs.fault:
            continue
        units.append(u.unit_id)
        power_w += min(u.pcs.rated_power_w, u.bms.max_discharge_w)
        energy_wh += max(u.bms.soc - p.soc_floor, 0.0) * u.bms.capacity_wh
    energy_limited_w = energy_wh * 3600.0 / p.bridge_s
    return tuple(units), p.island_loading * min(power_w, energy_limited_w)


def caps_to_fit(racks: RacksReading, load_w: FloatArray, excess_w: float,
                p: FailoverParams) -> tuple[dict[str, float], float]:
    """Caps that remove `excess_w` of island load, row by row in shed order; within a row
    every rack gives up the same share of its room above the minimum cap. Returns the caps
    and what could not be removed."""
    caps: dict[str, float] = {}
    scale = 1.0 + p.overhead_fraction
    rows = list(dict.fromkeys(racks.row_of_rack))
    row_of = np.array(racks.row_of_rack)
    for row in shed_sequence(rows, p.shed_order, p.critical_rows):
        if excess_w <= 0:
            break
        idx = np.flatnonzero(row_of == row)
        room_w = np.maximum(load_w[idx] - p.min_cap_fraction * racks.nameplate_w[idx], 0.0)
        available_w = float(room_w.sum()) * scale
        if available_w <= 0:
            continue
        share = min(1.0, excess_w / available_w)
        for i, cap in zip(idx, load_w[idx] - share * room_w, strict=True):
            if load_w[i] - cap > 1.0:
                caps[racks.rack_ids[i]] = float(cap)
        excess_w -= share * available_w
    return caps, max(excess_w, 0.0)


def arm(snap: SiteSnapshot, p: FailoverParams) -> FailoverPlan:
    racks = snap.racks
    load_w = racks.conservative_power_w()
    island_load_w = float(load_w.sum()) * (1.0 + p.overhead_fraction)
    units, deliverable_w = battery_deliverable_w(snap, p)
    caps, shortfall_w = caps_to_fit(racks, load_w, island_load_w - deliverable_w, p)
    if not units or shortfall_w > 0:
        reason = Reason.FAILOVER_SHORT
    elif caps:
        reason = Reason.FAILOVER_SHED
    else:
        reason = Reason.FAILOVER_ARMED
    planned_w = min(island_load_w, deliverable_w + shortfall_w)
    return FailoverPlan(snap.now_s, units, deliverable_w, island_load_w, planned_w, caps, p.start_genset,
                        shortfall_w, reason)
