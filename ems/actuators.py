"""What the loop writes: PCS heartbeats, modes and setpoints, rack caps, genset commands.

Each period every PCS gets its heartbeat first (a PCS that just left standby starts its
timeout), then grid-following mode where it has drifted out of it (never without the
grid, nor while islanded: that would drop the island; off-grid or islanded, grid-forming
instead: the battery is the island's heart), then its setpoint if it changed
by more than the deadband, drifted on the device, or must become exactly 0 W. Rack caps
go as one retained message per row. A failed write marks the device down (the period
result says so) and never stops the other writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import structlog

from drivers.bess import GensetDriver
from drivers.errors import DriverError
from drivers.racks import RackCapWriter, RowWriter, SmoothingProfileWriter
from ems.gather import LinkHealth, UnitReadings
from ems.genset_commands import GensetCommand
from ems.model.errors import EmsError
from ems.model.racks import SmoothingProfile
from ems.model.readings import PcsMode
from ems.model.snapshot import SiteSnapshot, UnitSnapshot
from policies.island import IslandActions

log = structlog.get_logger("ems.actuators")
T = TypeVar("T")


def lower_caps(a: dict[str, float | None], b: dict[str, float | None]) -> dict[str, float | None]:
    """Two levers' rack caps as one: the lower where both cap a rack (None: no cap)."""
    out = dict(a)
    for rid, cap in b.items():
        have = out.get(rid)
        out[rid] = cap if have is None else have if cap is None else min(have, cap)
    return out

class SetpointOwner(Protocol):
    """Something else that writes the setpoints while it can (the fast smoothing loop)."""

    @property
    def owns_setpoints(self) -> bool: ...


class PvLimiter(Protocol):
    async def set_limit_w(self, limit_w: float | None) -> None: ...


class UnitWrites:
    """What was written to one PCS, so a write is skipped when it would change nothing."""

    def __init__(self, io: UnitReadings) -> None:
        self.io = io
        self.written_w: float | None = None  # last setpoint we know the PCS accepted
        self.heartbeat = 0


class Actuators:
    def __init__(self, units: list[UnitReadings], genset: GensetDriver | None, caps: RackCapWriter,
                 publish_caps: Callable[[str, bytes], Awaitable[None]],
                 health: LinkHealth, deadband_w: float, gensets: dict[str, GensetDriver] | None = None) -> None:
        self.units = [UnitWrites(u) for u in units]
        self.genset = genset
        self.gensets = {} if gensets is None else gensets  # off-grid: every genset device by its dispatch id
        self.caps = caps
        self._publish_caps = publish_caps
        self.health = health
        self.deadband_w = deadband_w
        self.write_failures = 0
        self.fast: SetpointOwner | None = None  # while it owns them, only heartbeats and modes go from here
        self.profiles: SmoothingProfileWriter | None = None  # GPU smoothing profiles, where that lever is on

    async def _write_unit(self, w: UnitWrites, snap: UnitSnapshot, setpoint_w: float, islanded: bool,
                          forming: bool) -> int:
        pcs_driver = w.io.pcs
        writes = 0
        try:  # a BMS that supervises its controller (SunSpec 802 CtrlHb) sees the same counter
            await w.io.bms.beat((w.heartbeat + 1) % 65536)
        except DriverError as exc:
            self.write_failures += 1
            self.health.failed(f"{w.io.unit_id}.bms", exc)
        try:
            w.heartbeat = (w.heartbeat + 1) % 65536
            await pcs_driver.beat(w.heartbeat)
            writes += 1
            pcs = snap.pcs
            gf, gfm = PcsMode.GRID_FOLLOWING, PcsMode.GRID_FORMING
            # off-grid: every unit that can forms the island. Islanded by a loss: the fast path
            # sent the command once; a unit that refused it, timed out or rebooted is told again,
            # or without a hardware transfer the island would never form
            if forming or islanded:
                if (snap.available and pcs is not None and not pcs.fault
                        and (pcs.mode is not gfm or pcs.mode_command is not gfm)):
                    await pcs_driver.set_mode(gfm)
                    writes += 1
            elif (snap.available and pcs is not None and pcs.grid_ok and not islanded
                    and (pcs.mode is not gf or pcs.mode_command is not gf)):
                await pcs_driver.set_mode(gf)
                writes += 1
            if self.fast is not None and self.fast.owns_setpoints:
                w.written_w = None  # whoever writes next must write
                return writes
            reported = None if pcs is None else pcs.setpoint_w
            stale_write = w.written_w is None or abs(w.written_w - setpoint_w) >= self.deadband_w
            drifted = reported is not None and abs(reported - setpoint_w) >= self.deadband_w
            exact_zero = setpoint_w == 0 and w.written_w not in (None, 0.0)
            if stale_write or drifted or exact_zero:
                await pcs_driver.set_active_power_w(setpoint_w)
                w.written_w = setpoint_w
                writes += 1
        except DriverError as exc:
            self.write_failures += 1
            w.written_w = None
            self.health.failed(f"{w.io.unit_id}.pcs", exc)
        return writes

    async def write_pv_limit(self, pv: PvLimiter | None, snap: SiteSnapshot, limit_w: float | None) -> int:
        """The PV inverter's curtailment limit, when it changed by more than the deadband (or
        is lifted); what the inverter reports holding counts as written."""
        if pv is None or snap.pv is None:
            return 0
        held = snap.pv.limit_w
        if limit_w is None and held is None:
            return 0
        if limit_w is not None and held is not None and abs(limit_w - held) < self.deadband_w:
            return 0
        try:
            await pv.set_limit_w(limit_w)
        except DriverError as exc:
            self.write_failures += 1
            self.health.failed("pv", exc)
            return 0
        return 1

    async def write_units(self, snap: SiteSnapshot, setpoints_w: dict[str, float], islanded: bool,
                          forming: bool = False) -> int:
        by_id = {u.unit_id: u for u in snap.units}
        counts = await asyncio.gather(*(self._write_unit(w, by_id[w.io.unit_id], setpoints_w[w.io.unit_id], islanded,
                                                         forming) for w in self.units))
        return sum(counts)

    async def sync_caps(self, caps_w: dict[str, float | None]) -> int:
        return await self._sync(self.caps, caps_w)

    async def sync_profiles(self, profiles: dict[str, SmoothingProfile | None]) -> int:
        return 0 if self.profiles is None else await self._sync(self.profiles, profiles)

    async def _sync(self, writer: RowWriter[T], values: dict[str, T | None]) -> int:
        by_row = writer.changes(values)
        if not by_row:
            return 0
        try:
            return await writer.send(self._publish_caps, by_row)
        except EmsError:  # the broker is unreachable: everything goes again after the reconnect
            self.write_failures += 1
            return 0

    async def apply_island(self, actions: IslandActions, snap: SiteSnapshot) -> tuple[int, list[str]]:
        """Carry out what island supervision asked: caps, genset, reconnection. Returns the
        writes and the genset commands sent (for the event log)."""
        writes = await self.sync_caps(actions.caps_w)
        n, sent = await self.command_genset(GensetCommand("genset", actions.genset, actions.genset_charge_w))
        writes += n
        if actions.reconnect:
            # the planned transition back: every unit that can follows the grid again
            ready = [w for w, u in zip(self.units, snap.units, strict=True) if u.pcs is not None and not u.pcs.fault]
            results = await asyncio.gather(*(w.io.pcs.set_mode(PcsMode.GRID_FOLLOWING) for w in ready),
                                           return_exceptions=True)
            refused = []
            for w, r in zip(ready, results, strict=True):
                if isinstance(r, DriverError):  # counted and marked: the next period tells it again
                    self.write_failures += 1
                    self.health.failed(f"{w.io.unit_id}.pcs", r)
                    refused.append(w.io.unit_id)
                elif isinstance(r, BaseException):
                    raise r
            writes += len(ready) - len(refused)
            (log.warning if refused else log.info)("reconnected to the grid", units=len(ready) - len(refused),
                                                   refused=refused)
        return writes, sent

    async def command_genset(self, cmd: GensetCommand) -> tuple[int, list[str]]:
        """Start or stop the site's genset and set its charge request, as `cmd` says. Returns the
        writes and the run commands sent (for the event log)."""
        writes, sent = 0, list[str]()
        driver = self.gensets.get(cmd.genset_id, self.genset if cmd.genset_id == "genset" else None)
        if driver is None:
            return writes, sent
        try:
            if cmd.run is not None:
                await (driver.start() if cmd.run == "start" else driver.stop())
                sent.append(cmd.run)
                writes += 1
            if cmd.charge_request_w is not None:
                await driver.set_charge_request_w(cmd.charge_request_w)
                writes += 1
        except DriverError as exc:
            self.write_failures += 1
            self.health.failed("genset" if driver is self.genset else f"gensets.{cmd.genset_id}", exc)
        return writes, sent

    async def zero_all(self) -> list[str]:
        """Every unit to 0 W (shutdown); best effort, bounded in time. Returns the units that
        could not be told (their PCS falls back to 0 W on its own heartbeat timeout)."""
        async def zero(w: UnitWrites) -> str | None:
            try:
                await w.io.pcs.set_active_power_w(0.0)
            except DriverError as exc:
                log.warning("could not set unit to 0 W at shutdown", unit=w.io.unit_id, error=str(exc))
                return w.io.unit_id
            w.written_w = 0.0
            return None

        try:
            failed = await asyncio.wait_for(asyncio.gather(*(zero(w) for w in self.units)), 5.0)
        except TimeoutError:
            return [w.io.unit_id for w in self.units if w.written_w != 0.0]
        return [uid for uid in failed if uid is not None]

    async def release_caps(self) -> None:
        """Every rack cap and smoothing profile released (shutdown)."""
        try:
            await self._release(self.caps)
            if self.profiles is not None:
                await self._release(self.profiles)
        except EmsError:
            log.warning("could not release rack commands at shutdown: broker unreachable")

    async def _release(self, writer: RowWriter[T]) -> None:
        releases = writer.release_all()
        if releases:
            await writer.send(self._publish_caps, releases)
