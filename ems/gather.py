"""Gather: every device read concurrently into one frozen `SiteSnapshot` per period.

Meter, every BMS and PCS (and the genset) are read at once, one block read each. A
reading that fails keeps the last good one, which ages out of the snapshot after its
stale limit (never read as 0); stale, frozen or implausible data is set aside by the
validity tracker with a reason. Which devices failed their last read or write is kept
here (`down`) for the period result; the transition observer (ems/transitions.py) logs
and records the changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from drivers.bess import GensetDriver
from drivers.errors import DriverError
from drivers.racks import RackTelemetryStore
from ems.clock import Clock
from ems.config import SiteConfig, meter_frozen_s
from ems.device_drivers import BmsReader, PcsControl, bms_driver, meter_driver, modbus_device, pcs_driver, pv_driver
from ems.model.readings import BmsReading, GensetReading, MeterReading, PcsReading, PvReading
from ems.model.snapshot import SiteSnapshot, fresh_meter, unit_snapshot
from ems.time_average import TimeAverage
from ems.validity import ValidityParams, ValidityTracker

__all__ = ["LinkHealth", "SiteReader", "UnitReadings", "modbus_device"]


class LinkHealth:
    """Which devices failed their last request, and why; errors counted per device."""

    def __init__(self) -> None:
        self.down: dict[str, str] = {}  # device -> kind of its last error
        self.errors: dict[str, int] = {}  # every failed read or write, by device (metrics)

    def ok(self, name: str) -> None:
        self.down.pop(name, None)

    def failed(self, name: str, exc: Exception) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1
        self.down[name] = f"{type(exc).__name__}: {exc}"


class UnitReadings:
    def __init__(self, unit_id: str, bms: BmsReader, pcs: PcsControl) -> None:
        self.unit_id, self.bms, self.pcs = unit_id, bms, pcs
        self.last_bms: BmsReading | None = None
        self.last_pcs: PcsReading | None = None


class SiteReader:
    def __init__(self, cfg: SiteConfig, clock: Clock, store: RackTelemetryStore) -> None:
        self.cfg, self.clock, self.store = cfg, clock, store
        self.meter = meter_driver("meter", cfg.meter)  # a reference map or SunSpec, as the profile says
        self.units = [UnitReadings(u.id, bms_driver(f"{u.id}.bms", u.bms), pcs_driver(f"{u.id}.pcs", u.pcs))
                      for u in cfg.bess_units]
        self.genset = None if cfg.genset is None else GensetDriver(modbus_device("genset", cfg.genset))
        # every genset device by its dispatch id: the site's `genset` is the first of microgrid.gensets
        first = "genset" if cfg.microgrid is None or not cfg.microgrid.gensets else cfg.microgrid.gensets[0].id
        self.gensets: dict[str, GensetDriver] = {} if self.genset is None else {first: self.genset}
        for g in cfg.gensets:
            self.gensets[g.id] = GensetDriver(modbus_device(f"gensets.{g.id}", g))
        self.last_gensets: dict[str, GensetReading] = {}
        self.pv = None if cfg.pv is None else pv_driver("pv", cfg.pv)
        self.last_pv: PvReading | None = None
        self.last_meter: MeterReading | None = None
        self.last_genset: GensetReading | None = None
        self.health = LinkHealth()
        c = cfg.control
        site_max_w = c.meter_max_abs_w or 3.0 * cfg.racks.count * cfg.racks.nameplate_w + 1e7
        self.validity = ValidityTracker(ValidityParams(site_max_w, meter_frozen_s(cfg), c.bms_soc_max_c_rate / 3600.0))
        # the battery's power over the meter's averaging window, to add to the meter's average
        window_s = cfg.meter.average_s
        self._battery_avg = None if window_s is None else TimeAverage(window_s)

    def reconfigure(self, cfg: SiteConfig) -> None:
        """A reloaded site file: new validity limits and stale times (devices stay)."""
        self.cfg = cfg
        c = cfg.control
        p = self.validity.p
        self.validity.p = type(p)(c.meter_max_abs_w or p.meter_max_abs_w, meter_frozen_s(cfg),
                                  c.bms_soc_max_c_rate / 3600.0, p.soc_jump_slack, p.pcs_power_margin,
                                  p.temperature_range_c)

    async def _read(self, name: str, coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            value = await coro
        except DriverError as exc:
            self.health.failed(name, exc)
            return None
        self.health.ok(name)
        return value

    async def read(self, last_setpoint_w: float, grid_ok: bool | None,
                   riding_through: str | None = None) -> SiteSnapshot:
        now = self.clock.monotonic()
        reads = [self._read("meter", self.meter.read(now))]
        for u in self.units:
            reads.append(self._read(f"{u.unit_id}.bms", u.bms.read(now)))
            reads.append(self._read(f"{u.unit_id}.pcs", u.pcs.read(now)))
        for gid, driver in self.gensets.items():
            reads.append(self._read("genset" if driver is self.genset else f"gensets.{gid}", driver.read(now)))
        if self.pv is not None:  # last of all: the indices above stay as they are
            reads.append(self._read("pv", self.pv.read(now)))
        results = await asyncio.gather(*reads)
        if self.pv is not None:
            self.last_pv = results.pop() or self.last_pv
        self.last_meter = results[0] or self.last_meter
        for gid, reading in zip(self.gensets, results[len(results) - len(self.gensets):], strict=True):
            if reading is not None:
                self.last_gensets[gid] = reading
                if self.gensets[gid] is self.genset:
                    self.last_genset = reading
        c = self.cfg.control
        unit_snaps = []
        for i, u in enumerate(self.units):
            u.last_bms = results[1 + 2 * i] or u.last_bms
            u.last_pcs = results[2 + 2 * i] or u.last_pcs
            unit_snaps.append(self.validity.check_unit(
                unit_snapshot(u.unit_id, u.last_bms, u.last_pcs, now, c.bess_stale_after_s)))
        meter = self.validity.check_meter(fresh_meter(self.last_meter, now, c.meter_stale_after_s), now)
        battery_avg_w = None
        if self._battery_avg is not None and meter is not None and meter.average_w is not None:
            battery_avg_w = self._battery_avg.add(now, sum(u.pcs.power_w for u in unit_snaps if u.pcs is not None))
        genset = self.last_genset
        if genset is not None and now - genset.read_at_s > c.bess_stale_after_s:
            genset = None
        gensets = {gid: r for gid, r in self.last_gensets.items() if now - r.read_at_s <= c.bess_stale_after_s}
        pv = self.last_pv
        if pv is not None and now - pv.read_at_s > c.bess_stale_after_s:
            pv = None
        return SiteSnapshot(
            now_s=now, wall_s=self.clock.wall(), period_s=c.period_s,
            meter=meter, meter_invalid=self.validity.meter_invalid,
            meter_invalid_since_s=self.validity.meter_invalid_since_s,
            units=tuple(unit_snaps), racks=self.store.reading(now), last_setpoint_w=last_setpoint_w,
            genset=genset, grid_ok=grid_ok, riding_through=riding_through, battery_avg_w=battery_avg_w, pv=pv,
            gensets=gensets,
        )

    def read_at_s(self) -> dict[str, float]:
        """When each device was last read (the meter, each unit's BMS and PCS), for the status."""
        read_at = {} if self.last_meter is None else {"meter": self.last_meter.read_at_s}
        for io in self.units:
            if io.last_bms is not None:
                read_at[f"{io.unit_id}.bms"] = io.last_bms.read_at_s
            if io.last_pcs is not None:
                read_at[f"{io.unit_id}.pcs"] = io.last_pcs.read_at_s
        return read_at

    def close(self) -> None:
        for u in self.units:
            u.bms.device.close()
            u.pcs.device.close()
        self.meter.device.close()
        for driver in self.gensets.values():
            driver.device.close()
        if self.pv is not None:
            self.pv.device.close()
