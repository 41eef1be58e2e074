"""Grid-loss detection, apart from the control loop.

Polls, every `detect_poll_s` on its own Modbus connections, the grid-status register of
the sensing PCS (decoded by its profile's enum: any code but the one named `ok` is down)
and the meter's voltage and frequency. The grid is lost when a PCS says so (at once) or
when voltage or frequency stay outside their bands (IEEE 1547-style) for
`debounce_samples` samples; it is back when every signal is in band again. A sensor that
cannot be read (or sends a code its profile does not name) is not evidence either way: it
keeps the last verdict.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from drivers.bess import grid_ok
from drivers.errors import DriverError
from drivers.modbus_device import ModbusDevice
from ems.config import FailoverConfig

log = structlog.get_logger("ems.failover.watcher")


@dataclass(frozen=True, slots=True)
class GridVerdict:
    ok: bool
    cause: str  # "pcs_grid_status", "voltage", "frequency", or "in_band"
    at_ns: int


OnChange = Callable[[GridVerdict], Awaitable[None]]


def judge(cfg: FailoverConfig, pcs_down: bool | None, voltage_v: float | None,
          frequency_hz: float | None) -> tuple[bool, str]:
    """One sample -> (grid looks ok, cause). Unread signals (None) are ignored."""
    if pcs_down:
        return False, "pcs_grid_status"
    if voltage_v is not None:
        lo, hi = cfg.voltage_band_pu
        pu = voltage_v / cfg.nominal_voltage_v
        if not lo <= pu <= hi:
            return False, "voltage"
    if frequency_hz is not None:
        flo, fhi = cfg.frequency_band_hz
        if not flo <= frequency_hz <= fhi:
            return False, "frequency"
    return True, "in_band"


class GridWatcher:
    def __init__(self, cfg: FailoverConfig, pcs: ModbusDevice | None, meter: ModbusDevice | None,
                 on_change: OnChange) -> None:
        self.cfg = cfg
        self.pcs = pcs
        self.meter = meter
        self.on_change = on_change
        self.ok = True
        self.samples = 0
        self.read_failures = 0
        self._bad_in_a_row = 0

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
            return v["voltage"], v["frequency"]

        results = await asyncio.gather(pcs_down(), meter_vf(), return_exceptions=True)
        down = results[0] if not isinstance(results[0], BaseException) else None
        vf = results[1] if not isinstance(results[1], BaseException) else None
        for r in results:
            if isinstance(r, DriverError):
                self.read_failures += 1
            elif isinstance(r, BaseException):
                raise r
        return down, (None if vf is None else vf[0]), (None if vf is None else vf[1])

    async def run(self) -> None:
        period_s = self.cfg.detect_poll_s
        next_t = time.monotonic()
        while True:
            pcs_down, voltage, frequency = await self._sample()
            self.samples += 1
            ok, cause = judge(self.cfg, pcs_down, voltage, frequency)
            if pcs_down is None and voltage is None and frequency is None:
                ok, cause = self.ok, "unread"
            if not ok and cause != "pcs_grid_status":
                self._bad_in_a_row += 1
                if self._bad_in_a_row < self.cfg.debounce_samples:
                    ok = self.ok  # not yet convincing
            elif ok:
                self._bad_in_a_row = 0
            if ok != self.ok:
                self.ok = ok
                verdict = GridVerdict(ok, cause, time.monotonic_ns())
                log.warning("grid lost", cause=cause) if not ok else log.info("grid back")
                await self.on_change(verdict)
            next_t += period_s
            delay = next_t - time.monotonic()
            if delay < 0:
                next_t = time.monotonic()
            await asyncio.sleep(max(delay, 0.0))
