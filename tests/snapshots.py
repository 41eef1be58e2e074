"""Builders of SiteSnapshots for pure policy tests (fakes of our own data, not mocks)."""

from __future__ import annotations

import numpy as np

from ems.model.racks import RacksReading
from ems.model.readings import BmsReading, MeterReading, PcsMode, PcsReading
from ems.model.snapshot import SiteSnapshot, UnitSnapshot, unit_snapshot


def bms(soc: float = 0.5, max_charge_w: float = 500e3, max_discharge_w: float = 500e3,
        alarms: tuple[str, ...] = (), at: float = 0.0) -> BmsReading:
    return BmsReading(soc=soc, soh=0.98, voltage_v=1000.0, current_a=0.0, temperature_c=25.0,
                      cell_voltage_min_v=3.2, cell_voltage_max_v=3.21, max_charge_w=max_charge_w,
                      max_discharge_w=max_discharge_w, capacity_wh=1e6, alarms=alarms, read_at_s=at)


def pcs(power_w: float = 0.0, rated_w: float = 500e3, faults: tuple[str, ...] = (), at: float = 0.0,
        mode: PcsMode = PcsMode.GRID_FOLLOWING) -> PcsReading:
    return PcsReading(power_w=power_w, setpoint_w=power_w, rated_power_w=rated_w, mode_command=mode,
                      mode=mode, grid_ok=True, faults=faults, heartbeat=0, heartbeat_timeout_s=10.0,
                      ramp_w_per_s=1e6, read_at_s=at)


def unit(uid: str = "u1", soc: float = 0.5, power_w: float = 0.0, **kw) -> UnitSnapshot:
    b = kw.pop("bms_reading", bms(soc=soc, **{k: kw.pop(k) for k in list(kw) if k in
                                           ("max_charge_w", "max_discharge_w", "alarms")}))
    p = kw.pop("pcs_reading", pcs(power_w=power_w, **kw))
    return unit_snapshot(uid, b, p, now_s=0.0, stale_after_s=5.0)


def racks(n: int = 4) -> RacksReading:
    ids = tuple(f"row01-rack{i + 1:02d}" for i in range(n))
    return RacksReading(ids, tuple("row01" for _ in ids), np.full(n, 20e3), np.full(n, np.nan),
                        np.full(n, 40e3), np.zeros(n), 5.0)


def snapshot(grid_w: float | None = 0.0, units: tuple[UnitSnapshot, ...] | None = None,
             now_s: float = 0.0, last_setpoint_w: float = 0.0, period_s: float = 1.0) -> SiteSnapshot:
    meter = None if grid_w is None else MeterReading(grid_w, 230.0, 50.0, 0.0, 0.0, now_s)
    return SiteSnapshot(now_s=now_s, wall_s=1e9 + now_s, period_s=period_s, meter=meter,
                        units=units if units is not None else (unit("u1"), unit("u2")),
                        racks=racks(), last_setpoint_w=last_setpoint_w)
