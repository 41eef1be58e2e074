"""BESS units added to or removed from the site file while the controller runs (SIGHUP).

A reload whose only device change is units added or removed applies without a restart,
at the start of the next period:

- an added unit is probed first (its BMS and PCS read once each; a unit that does not
  answer is not added, and the event says why), told 0 W, and joins the readings and the
  writes: the step dispatches to it from that period on, its ramp starting at 0 W;
- a removed unit is first driven to 0 W and standby, then dropped from the readings and
  the writes and its connections closed. A unit that cannot be told is still dropped: its
  PCS falls back to 0 W on its own heartbeat timeout (the event says so).

With failover on, an added unit gets its own control connection on the fast path and
is in the failover plan from the next re-arm (the next period); a removed unit's is
dropped before it is retired. The smoothing loop reads an added unit from its next tick
and writes it once a period has armed it; at a removal it stands down until the next
period. Neither touches the event log, the month's demand meter or the other units. A
unit whose endpoints changed, and removing the unit whose PCS is the failover's grid
sensor (the first), still need a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from drivers.errors import DriverError
from ems.actuators import Actuators, UnitWrites
from ems.config import SiteConfig
from ems.device_drivers import bms_driver, pcs_driver
from ems.events import EventLog
from ems.gather import SiteReader, UnitReadings
from ems.model.readings import PcsMode
from ems.topology import BessUnitConfig

log = structlog.get_logger("ems.units")

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class UnitChanges:
    added: tuple[BessUnitConfig, ...]
    removed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


def unit_changes(present: list[str], target: SiteConfig) -> UnitChanges:
    """What makes the units `present` (by id, in the loop now) the site file's."""
    wanted = {u.id for u in target.bess_units}
    return UnitChanges(tuple(u for u in target.bess_units if u.id not in present),
                       tuple(uid for uid in present if uid not in wanted))


def live_unit_change_refused(running: SiteConfig, new: SiteConfig) -> str | None:
    """Why a change of bess_units needs a restart (None: it applies while running)."""
    kept = {u.id: u for u in running.bess_units}
    changed = [u.id for u in new.bess_units if u.id in kept and kept[u.id] != u]
    if changed:
        return f"bess_units ({changed[0]} changed; only units added or removed apply while running)"
    fo = running.failover
    if fo is not None and fo.enabled and running.bess_units and \
            running.bess_units[0].id not in {u.id for u in new.bess_units}:
        # the grid watcher reads the first unit's PCS (ems/failover): it has no other sensor
        return (f"bess_units ({running.bess_units[0].id}'s PCS is the failover's grid sensor; removing it "
                "needs a restart)")
    return None


async def _probe(unit: UnitReadings, now_s: float) -> str | None:
    """Read the new unit's BMS and PCS once and tell it 0 W; the problem, or None."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            unit.last_bms = await unit.bms.read(now_s)
            unit.last_pcs = await unit.pcs.read(now_s)
            await unit.pcs.set_active_power_w(0.0)
    except (DriverError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def _retire(w: UnitWrites) -> str | None:
    """0 W, then standby; the problem, or None."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await w.io.pcs.set_active_power_w(0.0)
            w.written_w = 0.0
            await w.io.pcs.set_mode(PcsMode.STANDBY)
    except (DriverError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def apply_unit_changes(changes: UnitChanges, reader: SiteReader, actuators: Actuators, events: EventLog,
                             now_s: Callable[[], float], wall_s: Callable[[], float]) -> list[str]:
    """Carry out `changes` between two periods; returns the ids of the units added."""
    for uid in changes.removed:
        writes = next((w for w in actuators.units if w.io.unit_id == uid), None)
        if writes is None:
            continue
        problem = await _retire(writes)
        actuators.units.remove(writes)
        reader.units.remove(writes.io)
        writes.io.bms.device.close()
        writes.io.pcs.device.close()
        reader.health.ok(f"{uid}.bms")
        reader.health.ok(f"{uid}.pcs")
        events.record("unit_removed", wall_s(), None, unit=uid, told_standby=problem is None,
                      **({} if problem is None else {"error": problem}))
        log.info("unit removed", unit=uid, told_standby=problem is None, error=problem)
    added: list[str] = []
    for cfg in changes.added:
        unit = UnitReadings(cfg.id, bms_driver(f"{cfg.id}.bms", cfg.bms), pcs_driver(f"{cfg.id}.pcs", cfg.pcs))
        problem = await _probe(unit, now_s())
        if problem is not None:
            unit.bms.device.close()
            unit.pcs.device.close()
            events.record("unit_add_failed", wall_s(), None, unit=cfg.id, error=problem)
            log.warning("unit not added: its probe failed", unit=cfg.id, error=problem)
            continue
        reader.units.append(unit)
        w = UnitWrites(unit)
        w.written_w = 0.0
        actuators.units.append(w)
        added.append(cfg.id)
        events.record("unit_added", wall_s(), None, unit=cfg.id)
        log.info("unit added", unit=cfg.id)
    return added
