"""Physics of one BESS unit: a battery with its BMS and the PCS inverter in front of it.

Sign convention: power > 0 is discharge (AC side). The PCS tracks its setpoint with a
ramp, within its rating and what the BMS allows; without a controller heartbeat it
reverts to 0 W standby, as real firmwares do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ems.model.readings import PcsMode
from plant.config import SimBessConfig

# Alarms and faults are names; the simulator puts them on the wire as the bits a device
# profile gives those names (sim_devices/registers.py), and a profile served must name each.
BMS_ALARMS = ("over_temperature", "soc_low", "soc_high")
PCS_FAULTS = ("internal", "overload_trip")

# Hardware derating bands, outside any controller limit: discharge fades to 0 between
# SoC 8 % and 2 %, charge between 92 % and 99 %, both between 45 and 55 degC.
_DIS_FULL_SOC, _DIS_ZERO_SOC = 0.08, 0.02
_CHA_FULL_SOC, _CHA_ZERO_SOC = 0.92, 0.99
_TEMP_FULL_C, _TEMP_ZERO_C = 45.0, 55.0
_THERMAL_TAU_S = 1800.0
_HEAT_RISE_C = 15.0


def _ramp_factor(x: float, full: float, zero: float) -> float:
    """1 at `full`, 0 at `zero`, linear between (works for either ordering)."""
    t = (x - zero) / (full - zero)
    # min(1, max(0, t)) without the two builtin calls (several a step per unit); NaN -> 0 as there
    return 0.0 if not t > 0.0 else (1.0 if t > 1.0 else t)


@dataclass
class BessUnitModel:
    unit_id: str
    cfg: SimBessConfig
    soc: float = field(init=False)
    temperature_c: float = field(init=False)
    # PCS state
    mode_command: PcsMode = PcsMode.STANDBY
    mode: PcsMode = PcsMode.STANDBY
    setpoint_w: float = 0.0
    power_w: float = 0.0
    faults: tuple[str, ...] = ()  # of PCS_FAULTS; any is a trip
    heartbeat: int = 0
    last_heartbeat_s: float = 0.0
    grid_ok: bool = True
    island_share_w: float = 0.0  # what the island asks of this unit while grid-forming
    heartbeat_timeouts: int = 0
    energy_discharged_wh: float = 0.0
    energy_charged_wh: float = 0.0

    def __post_init__(self) -> None:
        self.soc = self.cfg.initial_soc
        self.temperature_c = self.cfg.ambient_c

    # --- what the BMS reports ------------------------------------------------------
    @property
    def capacity_wh(self) -> float:
        return self.cfg.capacity_wh * self.cfg.soh

    def _thermal_factor(self) -> float:
        return _ramp_factor(self.temperature_c, _TEMP_FULL_C, _TEMP_ZERO_C)

    def allowed_discharge_w(self) -> float:
        soc_f = _ramp_factor(self.soc, _DIS_FULL_SOC, _DIS_ZERO_SOC)
        return self.cfg.rated_power_w * soc_f * self._thermal_factor()

    def allowed_charge_w(self) -> float:
        soc_f = _ramp_factor(self.soc, _CHA_FULL_SOC, _CHA_ZERO_SOC)
        return self.cfg.rated_power_w * soc_f * self._thermal_factor()

    def allowed_w(self) -> tuple[float, float]:
        """(allowed_charge_w, allowed_discharge_w) at once: the thermal factor once (a
        backtest asks for both every step)."""
        rated, thermal, soc = self.cfg.rated_power_w, self._thermal_factor(), self.soc
        return (rated * _ramp_factor(soc, _CHA_FULL_SOC, _CHA_ZERO_SOC) * thermal,
                rated * _ramp_factor(soc, _DIS_FULL_SOC, _DIS_ZERO_SOC) * thermal)

    def _pcs_limits_w(self) -> tuple[float, float]:
        """(lo, hi) the PCS output can take now: its rating and what the BMS allows."""
        rated = self.cfg.rated_power_w
        charge_w, discharge_w = self.allowed_w()
        return -min(rated, charge_w), min(rated, discharge_w)

    def voltage_v(self) -> float:
        # open-circuit voltage roughly linear in SoC for LFP over the usable window,
        # minus/plus an IR drop proportional to power
        ocv = self.cfg.nominal_voltage_v * (0.92 + 0.12 * self.soc)
        return ocv - 0.02 * self.cfg.nominal_voltage_v * self.power_w / self.cfg.rated_power_w

    def current_a(self) -> float:
        return self.power_w / self.voltage_v()

    def cell_voltages_v(self) -> tuple[float, float]:
        mid = 3.0 + 0.4 * self.soc
        spread = 0.005 + 0.01 * abs(self.power_w) / self.cfg.rated_power_w
        return mid - spread, mid + spread

    def alarms(self) -> tuple[str, ...]:
        """The BMS alarms raised now (of BMS_ALARMS): warnings, never a BMS fault."""
        soc, hot = self.soc, self.temperature_c >= _TEMP_FULL_C
        if not hot and _DIS_FULL_SOC < soc < _CHA_FULL_SOC:
            return ()  # the usual case, cheaply (a backtest asks every step)
        raised = (hot, soc <= _DIS_FULL_SOC, soc >= _CHA_FULL_SOC)
        return tuple(name for name, on in zip(BMS_ALARMS, raised, strict=True) if on)

    # --- what the controller writes to the PCS -------------------------------------
    def command_setpoint(self, power_w: float) -> None:
        self.setpoint_w = power_w

    def command_mode(self, mode: PcsMode, now_s: float) -> None:
        """A mode command is controller activity: it (re)starts the heartbeat timer."""
        self.mode_command = mode
        self.last_heartbeat_s = now_s
        if not self.faults:
            self.mode = mode

    def command_heartbeat(self, value: int, now_s: float) -> None:
        if value != self.heartbeat:
            self.heartbeat = value
            self.last_heartbeat_s = now_s

    def form_island(self) -> bool:
        """Switch to grid-forming (hardware transfer or command); False if it cannot."""
        if self.faults:
            return False
        self.mode = PcsMode.GRID_FORMING
        return True

    def inject_fault(self, fault: str = "internal") -> None:
        """A PCS trip (`fault` of PCS_FAULTS): output to 0 at once, standby until cleared and
        re-commanded."""
        if fault not in PCS_FAULTS:
            raise ValueError(f"unknown PCS fault {fault!r}: one of {PCS_FAULTS}")
        if fault not in self.faults:
            self.faults += (fault,)
        self.mode = PcsMode.STANDBY
        self.power_w = 0.0

    def clear_fault(self) -> None:
        self.faults = ()

    # --- physics ---------------------------------------------------------------------
    def target_w(self, limits_w: tuple[float, float] | None = None) -> float:
        """`limits_w`: `_pcs_limits_w()` when the caller has it already."""
        if self.faults or self.mode is PcsMode.STANDBY:
            return 0.0
        if self.mode is PcsMode.GRID_FORMING:
            return self.island_share_w
        lo, hi = self._pcs_limits_w() if limits_w is None else limits_w
        return min(hi, max(lo, self.setpoint_w))

    def step(self, now_s: float, dt_s: float) -> None:
        timeout = self.cfg.heartbeat_timeout_s
        # a grid-forming unit keeps the island up without a controller: it does not revert
        if timeout > 0 and self.mode is PcsMode.GRID_FOLLOWING and now_s - self.last_heartbeat_s > timeout:
            self.mode = PcsMode.STANDBY
            self.setpoint_w = 0.0
            self.heartbeat_timeouts += 1
        # SoC and temperature do not move until the integration below: one evaluation
        # serves the target and the clamp of the ramped output
        limits_w = self._pcs_limits_w()
        target = self.target_w(limits_w)
        if self.mode is PcsMode.GRID_FORMING and not self.faults:
            # grid-forming follows the island's load at once; the island trips it when overloaded
            self.power_w = target
        else:
            max_step = self.cfg.ramp_w_per_s * dt_s
            self.power_w += min(max_step, max(-max_step, target - self.power_w))
            # the limits may have moved under a ramping output: never exceed them
            lo, hi = limits_w
            self.power_w = min(hi, max(lo, self.power_w))
        energy_ac_wh = self.power_w * dt_s / 3600.0
        if energy_ac_wh >= 0:
            self.energy_discharged_wh += energy_ac_wh
            stored_delta_wh = -energy_ac_wh / self.cfg.discharge_efficiency
        else:
            self.energy_charged_wh -= energy_ac_wh
            stored_delta_wh = -energy_ac_wh * self.cfg.charge_efficiency
        self.soc = min(1.0, max(0.0, self.soc + stored_delta_wh / self.capacity_wh))
        heat_target = self.cfg.ambient_c + _HEAT_RISE_C * (self.power_w / self.cfg.rated_power_w) ** 2
        self.temperature_c += (heat_target - self.temperature_c) * min(1.0, dt_s / _THERMAL_TAU_S)
