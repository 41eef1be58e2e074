"""The plant seen through SunSpec models: state -> point values, writes -> plant.

A simulated SunSpec PCS serves 1, 701, 702 and 704; a BMS 1, 802, 803 and 713; a meter
1 and 203; a PV inverter 1, 701, 702 and 704. Values are in each point's unit (W, Pct,
V, ...) with the scale factors the device uses beside them; the server encodes them.
The PCS implements 704's active-power setpoint with its reversion timer: writing
WSetRvrtTms (re)starts the countdown (the controller's heartbeat); when it runs out,
WSet, WSetPct and WSetEna take their reversion values (WSetRvrt, 0 W by default).
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.sunspec_models import PointValue
from ems.model.readings import PcsMode
from plant.battery import BessUnitModel
from plant.plant import MeterState, Plant

NowFn = Callable[[], float]
Values = dict[int, dict[str, PointValue]]

ENABLED, DISABLED = 1, 0
WSET_MOD_PCT, WSET_MOD_WATTS = 0, 1
INV_ST = {"off": 0, "running": 3, "throttled": 4, "fault": 6, "standby": 7}
# the plant's alarm and fault names -> the bit SunSpec gives them (802 Evt1, 701 Alrm)
BMS_EVT1_BITS = {"over_temperature": 2, "soc_low": 14, "soc_high": 16}
PCS_ALRM_BITS = {"internal": 16, "overload_trip": 7}  # MANUFACTURER_ALRM, OVER_TEMP (the nearest names)
METER_ODOMETER_WH = 10_000_000.0  # the simulated meter's register at commissioning: an acc32 of 0 is "not implemented"


def common(model: str, serial: str) -> dict[str, PointValue]:
    return {"Mn": "ems-sim", "Md": model, "Vr": "1.0", "SN": serial, "DA": 1}


class SunSpecPcs:
    """A battery inverter: 701 measurement, 702 capacity, 704 controls with reversion."""

    def __init__(self, plant: Plant, unit: BessUnitModel, now: NowFn, frequency_hz: Callable[[], float]) -> None:
        self.plant, self.unit, self.now, self.frequency_hz = plant, unit, now, frequency_hz
        self.ctl: dict[str, float] = {
            "WSetEna": DISABLED, "WSetMod": WSET_MOD_WATTS, "WSet": 0.0, "WSetRvrt": 0.0, "WSetPct": 0.0,
            "WSetPctRvrt": 0.0, "WSetEnaRvrt": ENABLED, "WSetRvrtTms": 0.0,
        }
        self.deadline_s: float | None = None
        self.reversions = 0
        self._beats = 0

    def tick(self) -> None:
        """The reversion timer: WSet and WSetEna take their reversion values when it runs out."""
        now = self.now()
        if self.deadline_s is None or now < self.deadline_s:
            return
        self.deadline_s = None
        self.reversions += 1
        c = self.ctl
        c["WSet"], c["WSetPct"] = c["WSetRvrt"], c["WSetPctRvrt"]
        if c["WSetEna"] != c["WSetEnaRvrt"]:
            c["WSetEna"] = c["WSetEnaRvrt"]
            mode = PcsMode.GRID_FOLLOWING if c["WSetEna"] == ENABLED else PcsMode.STANDBY
            self.plant.command_pcs_mode(self.unit.unit_id, mode, now)
        self._apply_setpoint()

    def _apply_setpoint(self) -> None:
        c = self.ctl
        if c["WSetEna"] != ENABLED:
            self.unit.command_setpoint(0.0)
        elif c["WSetMod"] == WSET_MOD_WATTS:
            self.unit.command_setpoint(c["WSet"])
        else:
            self.unit.command_setpoint(c["WSetPct"] / 100.0 * self.unit.cfg.rated_power_w)

    def write(self, model: int, point: str, value: float) -> None:
        if model != 704 or point not in self.ctl:
            raise ValueError(f"the simulated PCS does not act on {model}.{point}")
        self.tick()
        now = self.now()
        self.ctl[point] = value
        if point == "WSetEna":
            mode = PcsMode.GRID_FOLLOWING if value == ENABLED else PcsMode.STANDBY
            self.plant.command_pcs_mode(self.unit.unit_id, mode, now)
        if point == "WSetRvrtTms":
            self.deadline_s = now + value if value > 0 else None
        self._apply_setpoint()
        self._beats = (self._beats + 1) % 65536
        self.unit.command_heartbeat(self._beats, now)  # any control write is controller activity

    def values(self) -> Values:
        self.tick()
        u = self.unit
        rated = u.cfg.rated_power_w
        if u.faults:
            inv_st = INV_ST["fault"]
        elif u.mode is PcsMode.STANDBY:
            inv_st = INV_ST["standby"]
        else:
            inv_st = INV_ST["running"]
        alrm = sum(1 << PCS_ALRM_BITS[f] for f in u.faults if f in PCS_ALRM_BITS)
        remaining = 0.0 if self.deadline_s is None else max(0.0, self.deadline_s - self.now())
        c = self.ctl
        return {
            1: common("sunspec-pcs", u.unit_id),
            701: {
                "ACType": 2, "St": 1 if inv_st == INV_ST["running"] else 0, "InvSt": inv_st,
                "ConnSt": 1 if u.grid_ok else 0, "Alrm": alrm,
                "W": u.power_w, "VA": abs(u.power_w), "A": u.current_a(), "LLV": 400.0,
                "Hz": self.frequency_hz(), "TmpCab": u.temperature_c,
                "W_SF": 2, "VA_SF": 2, "A_SF": 0, "V_SF": 0, "Hz_SF": -2, "Tmp_SF": -1,
                "PF_SF": None, "Var_SF": None, "TotWh_SF": None, "TotVarh_SF": None,
            },
            702: {
                "WMaxRtg": rated, "WChaRteMaxRtg": rated, "WDisChaRteMaxRtg": rated, "VNomRtg": 400.0,
                "WMax": rated, "W_SF": 2, "V_SF": 0,
                "PF_SF": None, "VA_SF": None, "Var_SF": None, "A_SF": None, "S_SF": None,
            },
            704: {
                **{k: v for k, v in c.items()},
                "WSetRvrtRem": float(int(remaining + 0.999)),
                "WRmp": min(65534.0, round(u.cfg.ramp_w_per_s / rated * 100.0)), "WRmpRef": 1,
                "WSet_SF": 0, "WSetPct_SF": -1, "WMaxLimPct_SF": None, "PF_SF": None, "VarSet_SF": None,
                "VarSetPct_SF": None,
            },
        }


class SunSpecBms:
    """A battery: 802 base, 803 lithium-ion bank (temperatures), 713 storage capacity."""

    def __init__(self, unit: BessUnitModel) -> None:
        self.unit = unit
        self.ctrl_hb = 0.0
        self._hb = 0

    def write(self, model: int, point: str, value: float) -> None:
        if model == 802 and point == "CtrlHb":
            self.ctrl_hb = value
        elif not (model == 802 and point in ("AlmRst", "SetOp", "SetInvState", "SocRsvMax", "SoCRsvMin")):
            raise ValueError(f"the simulated BMS does not act on {model}.{point}")

    def values(self) -> Values:
        u = self.unit
        self._hb = (self._hb + 1) % 65536
        cell_min, cell_max = u.cell_voltages_v()
        evt1 = sum(1 << BMS_EVT1_BITS[a] for a in u.alarms() if a in BMS_EVT1_BITS)
        if u.power_w > 1.0:
            cha_st = 3  # DISCHARGING
        elif u.power_w < -1.0:
            cha_st = 4  # CHARGING
        else:
            cha_st = 6  # HOLDING
        return {
            1: common("sunspec-bms", u.unit_id),
            802: {
                "AHRtg": u.cfg.capacity_wh / u.cfg.nominal_voltage_v, "WHRtg": u.cfg.capacity_wh,
                "WChaRteMax": u.allowed_charge_w(), "WDisChaRteMax": u.allowed_discharge_w(),
                "SoC": u.soc * 100.0, "SoH": u.cfg.soh * 100.0, "ChaSt": cha_st, "LocRemCtl": 0,
                "Hb": float(self._hb), "CtrlHb": self.ctrl_hb, "AlmRst": 0, "Typ": 4, "State": 3,
                "Evt1": evt1, "Evt2": 0, "EvtVnd1": 0, "EvtVnd2": 0,
                "V": u.voltage_v(), "CellVMax": cell_max, "CellVMin": cell_min, "A": u.current_a(), "W": u.power_w,
                "AHRtg_SF": 0, "WHRtg_SF": 3, "WChaDisChaMax_SF": 2, "SoC_SF": -1, "SoH_SF": -1, "V_SF": -1,
                "CellV_SF": -3, "A_SF": 0, "AMax_SF": 0, "W_SF": 2, "DisChaRte_SF": None, "DoD_SF": None,
            },
            803: {"NStr": 0, "NStrCon": 0, "ModTmpMax": u.temperature_c, "ModTmpMin": u.temperature_c,
                  "ModTmpAvg": u.temperature_c, "ModTmp_SF": -1, "CellV_SF": None, "A_SF": None,
                  "SoH_SF": None, "SoC_SF": None, "V_SF": None},
            713: {"WHRtg": u.cfg.capacity_wh, "WHAvail": u.soc * u.capacity_wh, "SoC": u.soc * 100.0,
                  "SoH": u.cfg.soh * 100.0, "Sta": 0, "WH_SF": 3, "Pct_SF": -1},
        }


def meter_values(meter: MeterState, ahead_s: float = 0.0) -> Values:
    """A three-phase wye meter (203): W positive on import. Its energy registers count on
    between plant steps as a real meter's do (`ahead_s`: site seconds since the last step),
    so the energy between two reads is the energy of the time between them."""
    phase_w = meter.grid_power_w / 3.0
    ahead_wh = meter.grid_power_w * max(ahead_s, 0.0) / 3600.0
    return {
        1: common("sunspec-meter", "meter"),
        203: {
            "A": abs(meter.grid_power_w) / max(meter.voltage_v, 1.0) / 3.0,
            "AphA": abs(phase_w) / max(meter.voltage_v, 1.0), "AphB": None, "AphC": None,
            "PhV": meter.voltage_v, "PhVphA": meter.voltage_v, "PhVphB": meter.voltage_v,
            "PhVphC": meter.voltage_v, "PPV": None, "PhVphAB": None, "PhVphBC": None, "PhVphCA": None,
            "Hz": meter.frequency_hz, "W": meter.grid_power_w, "WphA": phase_w, "WphB": phase_w, "WphC": phase_w,
            "TotWhExp": METER_ODOMETER_WH + meter.export_wh + max(-ahead_wh, 0.0),
            "TotWhImp": METER_ODOMETER_WH + meter.import_wh + max(ahead_wh, 0.0),
            "Evt": 0, "A_SF": 0, "V_SF": -1, "Hz_SF": -2, "W_SF": 2, "TotWh_SF": 0,
            "VA_SF": None, "VAR_SF": None, "PF_SF": None, "TotVAh_SF": None, "TotVArh_SF": None,
        },
    }


class SunSpecPv:
    """A PV inverter: 701 what the plant's PV gives now, 702 its rating, 704 its curtailment
    limit (WMaxLimPct, % of WMaxRtg, with WMaxLimPctEna) applied to the plant."""

    def __init__(self, plant: Plant, rated_w: float) -> None:
        self.plant, self.rated_w = plant, rated_w
        self.ctl: dict[str, float] = {"WMaxLimPctEna": DISABLED, "WMaxLimPct": 100.0}

    def write(self, model: int, point: str, value: float) -> None:
        if model != 704 or point not in self.ctl:
            raise ValueError(f"the simulated PV inverter does not act on {model}.{point}")
        if point == "WMaxLimPct" and not 0.0 <= value <= 100.0:
            raise ValueError("WMaxLimPct outside 0..100")
        self.ctl[point] = value
        enabled = self.ctl["WMaxLimPctEna"] == ENABLED
        self.plant.pv_limit_w = self.ctl["WMaxLimPct"] / 100.0 * self.rated_w if enabled else None

    def values(self) -> Values:
        p = self.plant
        return {
            1: common("sunspec-pv", "pv"),
            701: {"ACType": 2, "St": 1, "InvSt": INV_ST["throttled"] if p.pv_limit_w is not None else (
                      INV_ST["running"] if p.pv_w > 0 else INV_ST["standby"]),
                  "ConnSt": 1, "Alrm": 0, "W": p.pv_w, "Hz": p.meter.frequency_hz, "LLV": 400.0,
                  "W_SF": 2, "Hz_SF": -2, "V_SF": 0},
            702: {"WMaxRtg": self.rated_w, "WMax": self.rated_w, "W_SF": 2},
            704: {**self.ctl, "WMaxLimPct_SF": -1, "WSet_SF": 0, "WSetPct_SF": -1},
        }
