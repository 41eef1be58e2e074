"""The frozen picture of the site for one control period.

Built once per period from the latest readings; nothing re-reads a device during a
decision. Readings older than their limit are dropped (None), never turned into 0, and a
unit that cannot take a setpoint says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ems.model.racks import RacksReading
from ems.model.readings import BmsReading, GensetReading, MeterReading, PcsReading, PvReading
from ems.model.reasons import Reason


@dataclass(frozen=True)
class UnitSnapshot:
    unit_id: str
    bms: BmsReading | None
    pcs: PcsReading | None
    unavailable: Reason | None = None  # None: the unit can take a setpoint

    @property
    def available(self) -> bool:
        return self.unavailable is None


@dataclass(frozen=True)
class SiteSnapshot:
    now_s: float  # site monotonic time
    wall_s: float  # site wall-clock time (epoch seconds)
    period_s: float
    meter: MeterReading | None
    units: tuple[UnitSnapshot, ...]
    racks: RacksReading
    last_setpoint_w: float  # site battery setpoint commanded in the previous period
    genset: GensetReading | None = None
    grid_ok: bool | None = None  # the grid watcher's view; None without a watcher
    riding_through: str | None = None  # "voltage" or "frequency": a disturbance inside the ride-through curve
    meter_invalid: Reason | None = None  # why `meter` is None (stale, frozen, implausible)
    meter_invalid_since_s: float | None = None
    battery_avg_w: float | None = None  # battery power over the meter's averaging window, where configured
    pv: PvReading | None = None  # the metered PV inverter, where the site file names one (fresh, else None)
    # off-grid: every genset device's fresh reading, by its microgrid.gensets id (`genset` among them)
    gensets: dict[str, GensetReading] = field(default_factory=dict)

    @property
    def battery_power_w(self) -> float:
        """Measured AC power of every unit with a fresh PCS reading (> 0 discharge)."""
        return sum(u.pcs.power_w for u in self.units if u.pcs is not None)

    @property
    def site_load_w(self) -> float | None:
        """Grid import the site would have without the battery (grid + battery), now."""
        if self.meter is None:
            return None
        return self.meter.grid_power_w + self.battery_power_w

    @property
    def gross_load_w(self) -> float | None:
        """What the site consumes, PV apart: grid + battery + PV (None without a meter, or
        with PV that is not metered now)."""
        load_w = self.site_load_w
        if load_w is None or self.pv is None:
            return None
        return load_w + self.pv.power_w

    @property
    def site_load_avg_w(self) -> float | None:
        """The same over the meter's averaging window where the site has one, else now. A
        period's policies act on it: a swing faster than the period, sampled once a period,
        would come back as noise the battery chases (aliasing); averaged, it is gone. The
        battery's part is averaged over the same window, or the sum would mix two times."""
        if self.meter is None:
            return None
        if self.meter.average_w is None or self.battery_avg_w is None:
            return self.site_load_w
        return self.meter.average_w + self.battery_avg_w


def unit_snapshot(unit_id: str, bms: BmsReading | None, pcs: PcsReading | None,
                  now_s: float, stale_after_s: float) -> UnitSnapshot:
    if bms is not None and now_s - bms.read_at_s > stale_after_s:
        bms = None
    if pcs is not None and now_s - pcs.read_at_s > stale_after_s:
        pcs = None
    why: Reason | None = None
    if pcs is None:
        why = Reason.STALE_PCS
    elif bms is None:
        why = Reason.STALE_BMS
    elif pcs.fault:
        why = Reason.PCS_FAULT
    elif bms.fault:
        why = Reason.BMS_FAULT
    return UnitSnapshot(unit_id, bms, pcs, why)


def fresh_meter(meter: MeterReading | None, now_s: float, stale_after_s: float) -> MeterReading | None:
    if meter is None or now_s - meter.read_at_s > stale_after_s:
        return None
    return meter


def site_soc(snap: SiteSnapshot) -> tuple[float, float] | None:
    """(energy-weighted SoC, capacity Wh) over the available units, or None if none."""
    cap = 0.0
    stored = 0.0
    for u in snap.units:
        if u.available and u.bms is not None:
            cap += u.bms.capacity_wh
            stored += u.bms.soc * u.bms.capacity_wh
    if cap <= 0:
        return None
    return stored / cap, cap
