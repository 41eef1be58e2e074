"""Readings straight from the plant model, with no sockets: what gather is for the
backtest and the fast-time simulation (ems/fast_sim.py)."""

from __future__ import annotations

from ems.model.readings import BmsReading, PcsReading
from plant.battery import BessUnitModel


class UnitReader:
    """One unit's BMS and PCS readings straight from the model. What cannot change during
    a run (rating, nominal voltage, capacity, ramp) is read once: a year at 1 min asks a
    million times."""

    def __init__(self, u: BessUnitModel) -> None:
        cfg = u.cfg
        self.unit = u
        self.soh = cfg.soh
        self.nominal_voltage_v = cfg.nominal_voltage_v
        self.rated_power_w = cfg.rated_power_w
        self.ramp_w_per_s = cfg.ramp_w_per_s
        self.capacity_wh = u.capacity_wh

    def read(self, t: float) -> tuple[BmsReading, PcsReading]:
        u = self.unit
        charge_w, discharge_w = u.allowed_w()
        # positional: a year at 1 min builds a million of each
        bms = BmsReading(u.soc, self.soh, self.nominal_voltage_v, 0.0, u.temperature_c, 0.0, 0.0,
                         charge_w, discharge_w, self.capacity_wh, u.alarms(), t)
        pcs = PcsReading(u.power_w, u.setpoint_w, self.rated_power_w, u.mode_command, u.mode, True,
                         u.faults, u.heartbeat, 0.0, self.ramp_w_per_s, t)
        return bms, pcs
