"""Capabilities of SunSpec devices: the same small capabilities as the reference maps.

A SunSpec PCS (701, 702, 704), BMS (802, 803; 713 where present) or meter (one of
201-204) reads into the same `PcsReading`, `BmsReading` and `MeterReading` as a
reference-map device, so the rest of ems does not know which it talks to. A point the
reading needs that the device does not implement makes the read fail (MalformedData):
a missing value is never read as a number.

The PCS's active power goes to 704 `WSet` (watts mode, `WSetEna` enabled); the
heartbeat is 704's reversion timer: `WSetRvrtTms` written every period restarts it,
and a controller that stops leaves the inverter to revert to `WSetRvrt` (0 W) when it
runs out. SunSpec has no grid-forming command: asking for it is NotSupported.
"""

from __future__ import annotations

from drivers.errors import MalformedData, NotSupported
from drivers.sunspec_device import SunSpecDevice
from drivers.sunspec_models import PointValue, model_def
from drivers.sunspec_profile import KIND_MODELS, SunSpecProfile
from ems.model.readings import BmsReading, MeterReading, PcsMode, PcsReading, PvReading

METER_MODELS = (201, 202, 203, 204)
ENABLED, DISABLED = 1, 0
WSET_MOD_WATTS = 1
INV_ST_RUNNING, INV_ST_THROTTLED, INV_ST_FAULT = 3, 4, 6
CONN_ST_CONNECTED = 1
BMS_STATE_FAULT = 99


def sunspec_device(name: str, profile: SunSpecProfile, host: str, port: int, unit_id: int = 1,
                   timeout_s: float = 0.5) -> SunSpecDevice:
    return SunSpecDevice(name, host, port, unit_id, timeout_s, profile.write_function_code, profile.base_address)


def need(values: dict[str, PointValue], point: str, device: str, model: int) -> float:
    """A number the reading cannot do without; MalformedData if not implemented."""
    v = values.get(point)
    if v is None or isinstance(v, str):
        raise MalformedData(f"{device}: SunSpec {model}.{point} is not implemented")
    return float(v)


def bit_names(model: int, point: str, value: PointValue) -> tuple[str, ...]:
    """The names of the bits set, as the model's symbols give them (lower case)."""
    if not isinstance(value, int | float):
        return ()
    raw = int(value)
    symbols = model_def(model).points[point].symbols
    return tuple(symbols.get(b, f"bit{b}").lower() for b in range(32) if raw >> b & 1)


async def check_models(device: SunSpecDevice, kind: str) -> None:
    """Discover and check the device lists the models its kind needs; NotSupported otherwise."""
    await device.discover()
    for need_ in KIND_MODELS[kind]:
        options = need_ if isinstance(need_, tuple) else (need_,)
        if not any(device.has(m) for m in options):
            raise NotSupported(f"{device.name}: a SunSpec {kind} needs model "
                               f"{' or '.join(str(m) for m in options)}; the device lists "
                               f"{[loc.model_id for loc in device.model_list]}")


class SunSpecPcsDriver:
    def __init__(self, device: SunSpecDevice, profile: SunSpecProfile) -> None:
        self.device, self.profile = device, profile
        self._configured = False  # WSetMod (watts) and the reversion value written once a connection

    async def _ensure(self) -> None:
        if not self.device.discovered:
            await check_models(self.device, "pcs")
            self._configured = False

    async def read(self, now_s: float) -> PcsReading:
        await self._ensure()
        d, name = self.device, self.device.name
        models = await d.read_models((701, 702, 704))
        m701, m702, m704 = models[701], models[702], models[704]
        rated_w = need(m702, "WMaxRtg", name, 702)
        inv_st = int(need(m701, "InvSt", name, 701))
        enabled = m704.get("WSetEna") == ENABLED
        if not enabled:
            setpoint_w = 0.0
        elif m704.get("WSetMod") == WSET_MOD_WATTS:
            setpoint_w = need(m704, "WSet", name, 704)
        else:
            setpoint_w = need(m704, "WSetPct", name, 704) / 100.0 * rated_w
        faults = bit_names(701, "Alrm", m701.get("Alrm"))
        if inv_st == INV_ST_FAULT and not faults:
            faults = ("fault",)
        running = inv_st in (INV_ST_RUNNING, INV_ST_THROTTLED)
        ramp_pct = m704.get("WRmp")
        ramp_w_per_s = rated_w if not isinstance(ramp_pct, int | float) else float(ramp_pct) / 100.0 * rated_w
        timeout = m704.get("WSetRvrtTms")
        remaining = m704.get("WSetRvrtRem")
        return PcsReading(
            power_w=need(m701, "W", name, 701), setpoint_w=setpoint_w, rated_power_w=rated_w,
            mode_command=PcsMode.GRID_FOLLOWING if enabled else PcsMode.STANDBY,
            mode=PcsMode.GRID_FOLLOWING if running and enabled else PcsMode.STANDBY,
            grid_ok=m701.get("ConnSt") == CONN_ST_CONNECTED, faults=faults,
            heartbeat=int(remaining) if isinstance(remaining, int | float) else 0,
            heartbeat_timeout_s=float(timeout) if isinstance(timeout, int | float) else 0.0,
            ramp_w_per_s=ramp_w_per_s, read_at_s=now_s,
        )

    async def _configure(self) -> None:
        if self._configured and self.device.connected:
            return
        await self._ensure()
        await self.device.write_point(704, "WSetMod", WSET_MOD_WATTS)
        await self.device.write_point(704, "WSetRvrt", 0.0)
        self._configured = True

    async def set_active_power_w(self, power_w: float) -> None:
        await self._configure()
        await self.device.write_point(704, "WSet", power_w)

    async def set_mode(self, mode: PcsMode) -> None:
        if mode is PcsMode.GRID_FORMING:
            raise NotSupported(f"{self.device.name}: SunSpec 704 has no grid-forming command")
        await self._configure()
        await self.device.write_point(704, "WSetEna", ENABLED if mode is PcsMode.GRID_FOLLOWING else DISABLED)

    async def beat(self, counter: int) -> None:
        """The heartbeat: the reversion timer restarted (`counter` is not sent: SunSpec has none)."""
        await self._configure()
        await self.device.write_point(704, "WSetRvrtTms", float(self.profile.reversion_s))


class SunSpecBmsDriver:
    def __init__(self, device: SunSpecDevice, profile: SunSpecProfile) -> None:
        self.device, self.profile = device, profile

    async def read(self, now_s: float) -> BmsReading:
        d, name = self.device, self.device.name
        if not d.discovered:
            await check_models(d, "bms")
        models = await d.read_models((802, 803))
        b, bank = models[802], models[803]
        soc = need(b, "SoC", name, 802) / 100.0
        if not 0.0 <= soc <= 1.0:
            raise MalformedData(f"{name}: SunSpec 802.SoC {soc * 100:g} % outside 0..100")
        soh_pct = b.get("SoH")
        soh = float(soh_pct) / 100.0 if isinstance(soh_pct, int | float) else 1.0
        alarms = bit_names(802, "Evt1", b.get("Evt1"))
        if b.get("State") == BMS_STATE_FAULT:
            alarms = ("fault", *alarms)
        return BmsReading(
            soc=soc, soh=soh, voltage_v=need(b, "V", name, 802), current_a=need(b, "A", name, 802),
            temperature_c=need(bank, "ModTmpMax", name, 803),
            cell_voltage_min_v=need(b, "CellVMin", name, 802), cell_voltage_max_v=need(b, "CellVMax", name, 802),
            max_charge_w=need(b, "WChaRteMax", name, 802), max_discharge_w=need(b, "WDisChaRteMax", name, 802),
            capacity_wh=need(b, "WHRtg", name, 802) * soh, alarms=alarms, read_at_s=now_s,
        )

    async def beat(self, counter: int) -> None:
        """802's controller heartbeat (CtrlHb)."""
        await self.device.write_point(802, "CtrlHb", float(counter % 65536))


class SunSpecMeterDriver:
    """A SunSpec meter has no averaged power point; its energy registers give one: the net
    energy between two reads over the time between them is the average import since the
    last read (`average_w`: a period's policies act on the period's load, not on one instant
    of a swing far faster than the period). Counters that went backwards give none."""

    def __init__(self, device: SunSpecDevice, profile: SunSpecProfile) -> None:
        self.device, self.profile = device, profile
        self._last: tuple[float, float, float] | None = None  # (read at, import Wh, export Wh)

    def _model(self) -> int:
        return next(m for m in METER_MODELS if self.device.has(m))

    async def read(self, now_s: float) -> MeterReading:
        d, name = self.device, self.device.name
        if not d.discovered:
            await check_models(d, "meter")
        mid = self._model()
        v = await d.read_model(mid)
        volts = v.get("PhV") if v.get("PhV") is not None else v.get("PhVphA")
        if volts is None:
            volts = v.get("PPV")
        imp, exp = need(v, "TotWhImp", name, mid), need(v, "TotWhExp", name, mid)
        if self.profile.power_sign < 0:
            imp, exp = exp, imp
        average_w = None
        if self._last is not None:
            t0, imp0, exp0 = self._last
            if now_s > t0 and imp >= imp0 and exp >= exp0:
                average_w = ((imp - imp0) - (exp - exp0)) * 3600.0 / (now_s - t0)
        self._last = (now_s, imp, exp)
        return MeterReading(
            grid_power_w=self.profile.power_sign * need(v, "W", name, mid),
            voltage_v=need({"V": volts}, "V", name, mid), frequency_hz=need(v, "Hz", name, mid),
            import_wh=imp, export_wh=exp, read_at_s=now_s, average_w=average_w,
        )


class SunSpecPvDriver:
    """A PV inverter: 701 W, 702 WMaxRtg; curtailment through 704 WMaxLimPct (% of WMaxRtg)."""

    def __init__(self, device: SunSpecDevice, profile: SunSpecProfile) -> None:
        self.device, self.profile = device, profile
        self._rated_w: float | None = None

    async def read(self, now_s: float) -> PvReading:
        d, name = self.device, self.device.name
        if not d.discovered:
            await check_models(d, "pv")
        models = await d.read_models((701, 702, 704))
        rated = need(models[702], "WMaxRtg", name, 702)
        self._rated_w = rated
        ctl = models[704]
        pct = ctl.get("WMaxLimPct")
        limited = ctl.get("WMaxLimPctEna") == ENABLED and isinstance(pct, int | float)
        return PvReading(power_w=max(0.0, need(models[701], "W", name, 701)), rated_power_w=rated,
                         limit_w=float(pct) / 100.0 * rated if limited and isinstance(pct, int | float) else None,
                         read_at_s=now_s)

    async def set_limit_w(self, limit_w: float | None) -> None:
        """Limit the output to `limit_w` (None: no limit)."""
        if limit_w is None:
            await self.device.write_point(704, "WMaxLimPctEna", DISABLED)
            return
        if self._rated_w is None:
            await self.read(0.0)
        assert self._rated_w is not None
        pct = min(100.0, max(0.0, limit_w / self._rated_w * 100.0))
        await self.device.write_point(704, "WMaxLimPct", pct)
        await self.device.write_point(704, "WMaxLimPctEna", ENABLED)
