"""Grid-loss detection, apart from the control loop.

Polls, every `detect_poll_s` on its own Modbus connections, the grid-status register of
the sensing PCS (decoded by its profile's enum: any code but the one named `ok` is down)
and the meter's voltage and frequency. The grid is lost when a PCS says so (at once) or
when voltage or frequency go beyond the ride-through curve (policies/ride_through.py) for
`debounce_samples` samples; a disturbance inside the curve is ridden through (the site
stays connected, `on_disturbance` is told when it starts and ends). The grid is back when
every signal is in its continuous band again, each sensor read. A sensor that cannot be read
(or sends a code its profile does not name) is not evidence either way: it keeps the last verdict.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from drivers.bess import grid_ok
from drivers.errors import DriverError, MalformedData
from drivers.modbus_device import ModbusDevice
from ems.config import FailoverConfig
from ems.model.cancel_guard import checkpoint
from policies import ride_through
from policies.ride_through import Excursion, Verdict

log = structlog.get_logger("ems.failover.watcher")


@dataclass(frozen=True, slots=True)
class GridVerdict:
    ok: bool
    cause: str  # "pcs_grid_status", "voltage", "frequency", or "in_band"
    at_ns: int


OnChange = Callable[[GridVerdict], Awaitable[None]]

MAX_GRID_EVENTS_PER_MIN = 30  # a flapping grid status or voltage: the rest counted, not each logged


class EventBudget:
    """At most `per_min` records a minute of something that can flap every sample; the rest
    are counted and handed to the next one that is recorded."""

    def __init__(self, per_min: int = MAX_GRID_EVENTS_PER_MIN) -> None:
        self.per_min = per_min
        self._times: list[float] = []
        self.skipped = 0  # since the last one recorded
        self.skipped_total = 0

    def take(self, now_s: float) -> int | None:
        """None: do not record this one (counted). Else: how many were skipped before it."""
        self._times = [t for t in self._times if now_s - t < 60.0]
        if len(self._times) >= self.per_min:
            self.skipped += 1
            self.skipped_total += 1
            return None
        self._times.append(now_s)
        skipped, self.skipped = self.skipped, 0
        return skipped


@dataclass(frozen=True, slots=True)
class Disturbance:
    """A voltage or frequency excursion inside the ride-through curve, as it starts and ends."""

    cause: str  # "voltage" or "frequency"
    outcome: str  # "riding" (it started), "back_in_band" (ridden through), "beyond_curve" (islanded)
    duration_s: float
    worst_voltage_pu: float | None
    worst_frequency_pu: float | None


OnDisturbance = Callable[[Disturbance], Awaitable[None]]


def judge(cfg: FailoverConfig, pcs_down: bool | None, voltage_v: float | None, frequency_hz: float | None,
          now_s: float = 0.0, excursion: Excursion | None = None) -> tuple[Verdict, str, Excursion | None]:
    """One sample -> (verdict, cause, the excursion now). Unread signals (None) are ignored."""
    if pcs_down:
        return Verdict.BEYOND, "pcs_grid_status", excursion
    v_curve, f_curve = cfg.ride_through.curves()
    v_pu = None if voltage_v is None else voltage_v / cfg.nominal_voltage_v
    f_pu = None if frequency_hz is None else frequency_hz / cfg.nominal_frequency_hz
    return ride_through.judge(v_curve, f_curve, v_pu, f_pu, now_s, excursion)


class GridWatcher:
    def __init__(self, cfg: FailoverConfig, pcs: ModbusDevice | None, meter: ModbusDevice | None,
                 on_change: OnChange, on_disturbance: OnDisturbance | None = None) -> None:
        self.cfg = cfg
        self.pcs = pcs
        self.meter = meter
        self.on_change = on_change
        self.on_disturbance = on_disturbance
        self.ok = True
        self.excursion: Excursion | None = None  # the disturbance being ridden through, if any
        self.ridden_through = 0
        self.samples = 0
        self.read_failures = 0
        self.sensors_down: dict[str, str] = {}  # sensor -> its last error, while unreadable
        self._bad_in_a_row = 0
        self._log_budget = EventBudget()  # the callbacks hear every change; the log only so many

    async def _sample(self) -> tuple[bool | None, float | None, float | None]:
        async def pcs_down() -> bool | None:
            if self.pcs is None:
                return None
            v = await self.pcs.read_registers_si(("grid_status",))
            return not grid_ok(self.pcs.profile, v["grid_status"], self.pcs.name)

        async def meter_vf() -> tuple[float, float] | None:
            if self.meter is None:
                return None
            v = await self.meter.read_registers_si(("voltage", "frequency"))
            if not (math.isfinite(v["voltage"]) and math.isfinite(v["frequency"])):
                # a float meter's "not available" (NaN): no evidence, not a voltage beyond the curve
                raise MalformedData(f"{self.meter.name}: voltage or frequency is not finite")
            return v["voltage"], v["frequency"]

        results = await asyncio.gather(pcs_down(), meter_vf(), return_exceptions=True)
        down = results[0] if not isinstance(results[0], BaseException) else None
        vf = results[1] if not isinstance(results[1], BaseException) else None
        for device, r in zip((self.pcs, self.meter), results, strict=True):
            if isinstance(r, DriverError):
                self.read_failures += 1
            elif isinstance(r, BaseException):
                raise r
            if device is not None:
                self._sensor(device.name, r if isinstance(r, DriverError) else None)
        return down, (None if vf is None else vf[0]), (None if vf is None else vf[1])

    def _sensor(self, name: str, error: DriverError | None) -> None:
        """Log once when a sensor becomes unreadable and once when it is back: detection is
        blind to it meanwhile (its own connection: the period's reads may be fine)."""
        # a new dict each time (one reference assignment): the control loop's thread reads it
        if error is not None and name not in self.sensors_down:
            self.sensors_down = {**self.sensors_down, name: f"{type(error).__name__}: {error}"}
            log.warning("grid sensor unreadable", device=name, error=self.sensors_down[name])
        elif error is None and name in self.sensors_down:
            self.sensors_down = {k: v for k, v in self.sensors_down.items() if k != name}
            log.info("grid sensor readable again", device=name)

    async def _disturbance(self, outcome: str, excursion: Excursion, now_s: float) -> None:
        if outcome == "back_in_band":
            self.ridden_through += 1
        if (skipped := self._log_budget.take(time.monotonic())) is not None:
            log.warning("grid disturbance", cause=excursion.cause, outcome=outcome, not_logged_since_last=skipped)
        if self.on_disturbance is not None:
            await self.on_disturbance(Disturbance(excursion.cause, outcome, now_s - excursion.since_s,
                                                  excursion.worst_voltage_pu, excursion.worst_frequency_pu))

    async def judge_sample(self, pcs_down: bool | None, voltage: float | None, frequency: float | None,
                           now_s: float) -> None:
        """Fold one sample into the verdict; tell the callbacks what changed."""
        self.samples += 1
        was = self.excursion
        if pcs_down is None and voltage is None and frequency is None:
            return  # nothing read: no evidence either way
        verdict, cause, excursion = judge(self.cfg, pcs_down, voltage, frequency, now_s, was)
        ok = verdict is not Verdict.BEYOND
        if not ok and cause != "pcs_grid_status":
            self._bad_in_a_row += 1
            if self._bad_in_a_row < self.cfg.debounce_samples:
                ok = self.ok  # not yet convincing
        elif ok:
            self._bad_in_a_row = 0
        if self.ok:  # connected: a disturbance is ridden through or ends in a loss
            if verdict is Verdict.RIDING and was is None and excursion is not None:
                await self._disturbance("riding", excursion, now_s)
            elif verdict is Verdict.IN_BAND and was is not None:
                await self._disturbance("back_in_band", was, now_s)
            elif not ok and was is not None:
                await self._disturbance("beyond_curve", excursion or was, now_s)
            # beyond the curve but not yet convincing (debounce): the excursion goes on
            self.excursion = excursion if ok and (verdict is Verdict.RIDING or was is not None) else None
        if self.ok and not ok:
            self.ok = False
            if (skipped := self._log_budget.take(time.monotonic())) is not None:
                log.warning("grid lost", cause=cause, not_logged_since_last=skipped)
            await self.on_change(GridVerdict(False, cause, time.monotonic_ns()))
        elif not self.ok and verdict is Verdict.IN_BAND and self._all_read(pcs_down, voltage, frequency):
            self.ok = True
            if (skipped := self._log_budget.take(time.monotonic())) is not None:
                log.info("grid back", not_logged_since_last=skipped)
            await self.on_change(GridVerdict(True, cause, time.monotonic_ns()))

    def _all_read(self, pcs_down: bool | None, voltage: float | None, frequency: float | None) -> bool:
        """Every sensor this watcher has was read: the grid is back only on full evidence (a
        PCS that sees a grid says nothing of its voltage; an unread meter keeps it lost)."""
        return ((self.pcs is None or pcs_down is not None)
                and (self.meter is None or (voltage is not None and frequency is not None)))

    async def run(self) -> None:
        period_s = self.cfg.detect_poll_s
        next_t = time.monotonic()
        while True:
            checkpoint()  # a stop a library swallowed (ems/model/cancel_guard)
            pcs_down, voltage, frequency = await self._sample()
            await self.judge_sample(pcs_down, voltage, frequency, time.monotonic())
            next_t += period_s
            delay = next_t - time.monotonic()
            if delay < 0:
                next_t = time.monotonic()
            await asyncio.sleep(max(delay, 0.0))
