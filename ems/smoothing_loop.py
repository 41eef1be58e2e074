"""The fast smoothing loop: 10-50 ticks a second beside the period loop.

Each period arms it with the step's result: the battery's base power (what the slow
policies decided) and each unit's bounds for the period (its safety envelope). Each
tick it reads the grid meter's power and every PCS's power on connections of its own,
runs the pure core (policies/smoothing.py) on the site load they add up to, answering the
load its predictor (policies/load_predictor.py) expects when the command lands, splits the
battery command across the units within their bounds (the change from base in
proportion to each unit's room that way) and writes each PCS setpoint. While it ticks,
it owns the setpoints: the period loop writes only heartbeats and modes
(ems/actuators.py asks `owns_setpoints`). If it falls behind (no tick within three of
its own periods) or is not armed by a recent period, the period loop writes setpoints
again: the fast part is lost, never the control.

It also keeps the site load's recent swing (peak to peak over `swing_window_s`), which
the GPU lever (policies/gpu_smoothing.py) weighs against the battery's headroom.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import structlog

from drivers.bess import filler_reading
from drivers.errors import DriverError
from ems.band_rms import BandRms
from ems.clock import Clock
from ems.config import SiteConfig, SmoothingConfig
from ems.fast_power import fast_power
from ems.gather import modbus_device
from ems.model.cancel_guard import checkpoint
from ems.model.reasons import Reason
from ems.topology import BessUnitConfig
from policies import smoothing
from policies.load_predictor import LoadPredictor

log = structlog.get_logger("ems.smoothing")

MIN_REAL_TICK_S = 0.005  # a site clock so fast that a tick is shorter than this (720x): no fast loop
FILLER_REFRESH_S = 1.0  # a burning filler's setpoint is written at least this often (its watchdog)


@dataclass(frozen=True, slots=True)
class Armed:
    at_s: float  # site time of the period that armed it
    base_w: dict[str, float]  # each unit's setpoint from the step
    bounds_w: dict[str, tuple[float, float]]  # each unit's (lo, hi) this period
    import_limit_w: float | None
    export_limit_w: float | None
    start_load_w: float | None = None  # the period's averaged site load: where a fresh core starts


def site_bounds(armed: Armed, load_w: float) -> tuple[float, float]:
    """The battery's bounds this tick: the units' for the period, within the grid's limits."""
    lo = sum(b[0] for b in armed.bounds_w.values())
    hi = sum(b[1] for b in armed.bounds_w.values())
    if armed.import_limit_w is not None:
        lo = max(lo, min(load_w - armed.import_limit_w, 0.0))
    if armed.export_limit_w is not None:
        hi = min(hi, max(load_w + armed.export_limit_w, 0.0))
    return lo, hi


def split(battery_w: float, armed: Armed) -> dict[str, float]:
    """The site command across units: the change from base in proportion to each unit's
    room that way, each within its bounds."""
    base = sum(armed.base_w.values())
    delta = battery_w - base
    room = {u: (hi - armed.base_w[u]) if delta > 0 else (armed.base_w[u] - lo)
            for u, (lo, hi) in armed.bounds_w.items()}
    total = sum(max(r, 0.0) for r in room.values())
    out = {}
    for u, (lo, hi) in armed.bounds_w.items():
        share = 0.0 if total <= 0 else delta * max(room[u], 0.0) / total
        out[u] = min(hi, max(lo, armed.base_w[u] + share))
    return out


def core_tick(load_w: float, armed: Armed, dt_s: float, params: smoothing.SmoothingParams,
              state: smoothing.SmoothingState,
              predictor: LoadPredictor) -> tuple[smoothing.Tick, smoothing.SmoothingState]:
    """One tick of the fast core on the measured site load, answering the load the predictor
    expects when the command lands: what the live loop and the fast-time simulation both run."""
    predictor.add(load_w)
    lo, hi = site_bounds(armed, load_w)
    return smoothing.tick(load_w, sum(armed.base_w.values()), lo, hi, dt_s, params, state, armed.start_load_w,
                          armed.import_limit_w, predictor.ahead_w(params.lead_ticks))


class SmoothingLoop:
    def __init__(self, cfg: SiteConfig, clock: Clock, params: smoothing.SmoothingParams, rate_hz: float,
                 swing_window_s: float = 10.0, band_low_hz: float = 0.1,
                 predictor: LoadPredictor | None = None) -> None:
        self.clock = clock
        self.params = params
        self.period_s = 1.0 / rate_hz
        self.meter = fast_power("meter/fast", cfg.meter, "meter")
        self.pcs = {u.id: fast_power(f"{u.id}.pcs/fast", u.pcs, "pcs") for u in cfg.bess_units}
        sm = cfg.policies.smoothing
        # the filler load, where the site file has one and allows it: its rating is read from it
        self.filler = None if cfg.filler is None or sm is None or not sm.filler else \
            modbus_device("filler/fast", cfg.filler)
        self.filler_written_w: float | None = None  # None: unknown (never written, or a write failed)
        self._filler_written_at = -float("inf")
        self.filler_read_failures = 0
        self.stale_after_s = 3.0 * cfg.control.period_s  # armed by a period this recent, or idle
        self.armed: Armed | None = None
        self.state = smoothing.SmoothingState()
        self.predictor = predictor or LoadPredictor(0, 0, 1)  # the load a lead ahead (none: linear)
        self.last: smoothing.Tick | None = None
        self.last_tick_real_s = -1.0
        self.written_w: dict[str, float] = {}
        self._loads: deque[tuple[float, float]] = deque()  # (site s, load W) over the swing window
        self.swing_window_s = swing_window_s
        self.grid_band = BandRms(band_low_hz, swing_window_s)  # the grid's oscillation, for the GPU lever
        self.load_band = BandRms(band_low_hz, swing_window_s)  # the same without the battery, for operators
        self.ticks = self.write_failures = self.read_failures = 0
        # asked every tick: the failover fast path has islanded the site (its own thread sets it), so
        # the fast loop stands down at once rather than at the next period (and the filler stops)
        self.stand_down: Callable[[], bool] = lambda: False

    # --- what the period loop sees ---------------------------------------------------------
    def arm(self, armed: Armed | None) -> None:
        """What this period allows (None: stand down, the period loop writes setpoints)."""
        self.armed = armed

    def add_unit(self, unit: BessUnitConfig) -> None:
        """A unit added: read from the next tick, written once a period has armed it."""
        self.pcs[unit.id] = fast_power(f"{unit.id}.pcs/fast", unit.pcs, "pcs")

    def remove_unit(self, unit_id: str) -> None:
        """A unit about to be retired: no tick writes it again. The fast loop stands down until
        the next period arms it without the unit (this period's split still counts on it)."""
        self.armed = None
        device = self.pcs.pop(unit_id, None)
        self.written_w.pop(unit_id, None)
        if device is not None:
            device.close()

    @property
    def owns_setpoints(self) -> bool:
        """Ticking and armed recently: the period loop leaves setpoints to it."""
        armed = self.armed
        return (armed is not None and self.clock.monotonic() - armed.at_s <= self.stale_after_s
                and time.monotonic() - self.last_tick_real_s <= 3.0 * self.period_s / self.clock.speed)

    @property
    def swing_w(self) -> float:
        """Peak to peak of the site load over the swing window (0 before two ticks)."""
        loads = [w for _, w in self._loads]
        return max(loads) - min(loads) if len(loads) > 1 else 0.0

    @property
    def reason(self) -> Reason | None:
        return None if self.last is None or not self.owns_setpoints else self.last.reason

    def observe(self, now_s: float, load_w: float, grid_w: float, dt_s: float) -> None:
        """A sample of the site load and the grid: each tick's, or each period's where the
        site clock runs too fast for ticks (the GPU lever still sees the swing, coarsely)."""
        self.grid_band.add(now_s, grid_w, dt_s)
        self.load_band.add(now_s, load_w, dt_s)
        self._loads.append((now_s, load_w))
        while self._loads and now_s - self._loads[0][0] > self.swing_window_s:
            self._loads.popleft()

    @property
    def runs(self) -> bool:
        """Whether the site clock leaves time for ticks at all."""
        return self.period_s / self.clock.speed >= MIN_REAL_TICK_S

    # --- the loop --------------------------------------------------------------------------
    async def _tick(self, armed: Armed, dt_s: float) -> bool:
        """One tick; False where the meter or a PCS could not be read (nothing written: after three
        such ticks the period loop writes the setpoints again)."""
        reads = [self.meter.read_w()]
        reads += [d.read_w() for d in self.pcs.values()]
        results = await asyncio.gather(*reads, self._read_filler(), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, DriverError):
                raise r
        *needed, filler = results
        if any(isinstance(r, BaseException) for r in needed):
            self.read_failures += 1
            return False
        values = [float(r) for r in needed if isinstance(r, int | float)]
        # the filler's draw is the lever's, not the site's load; unread, it is taken to draw what it
        # was last told, and gets no more this tick
        filler_w, rating_w = (self.filler_written_w or 0.0, 0.0) if not isinstance(filler, tuple) else filler
        load_w = values[0] + sum(values[1:]) - filler_w
        self.observe(self.clock.monotonic(), load_w, values[0], dt_s)
        t, self.state = core_tick(load_w, armed, dt_s, replace(self.params, filler_max_w=rating_w), self.state,
                                  self.predictor)
        self.last = t
        await asyncio.gather(self._write(split(t.battery_w, armed)), self._write_filler(t.filler_w))
        return True

    async def _read_filler(self) -> tuple[float, float] | None:
        """The filler's draw and rating, or None (none, unreadable, or a value no load bank has)."""
        if self.filler is None:
            return None
        try:
            r = filler_reading(await self.filler.read_registers_si(("active_power", "rated_power")), 0.0)
        except DriverError:  # unreachable, or a value no load bank has (MalformedData)
            self.filler_read_failures += 1
            return None
        return r.power_w, r.rated_power_w

    async def _write(self, setpoints_w: dict[str, float]) -> None:
        async def one(unit: str, w: float) -> None:
            device = self.pcs.get(unit)
            if device is None:  # removed since this period armed it
                return
            if abs(self.written_w.get(unit, float("nan")) - w) < self.params.deadband_w:
                return
            try:
                await device.write_w(w)
                self.written_w[unit] = w
            except DriverError:
                self.write_failures += 1
                self.written_w.pop(unit, None)

        await asyncio.gather(*(one(u, w) for u, w in setpoints_w.items()))

    async def _write_filler(self, w: float) -> None:
        """On a change beyond the deadband, on 0 W exactly, and at least every FILLER_REFRESH_S
        while it burns: the load bank's watchdog takes a setpoint not refreshed as lost."""
        if self.filler is None:
            return
        last, now = self.filler_written_w, time.monotonic()
        stale = now - self._filler_written_at >= FILLER_REFRESH_S / self.clock.speed and w > 0.0
        if last is not None and not stale and (last == w or (w > 0.0 and abs(last - w) < self.params.deadband_w)):
            return
        try:
            await self.filler.write_si("power_setpoint", w)
            self.filler_written_w, self._filler_written_at = w, now
        except DriverError:
            self.write_failures += 1
            self.filler_written_w = None  # unknown: shown as such, and written again next tick

    async def run(self) -> None:
        """Tick until cancelled; idle (no reads, no writes) while not armed by a recent period."""
        period_real = self.period_s / self.clock.speed
        if not self.runs:
            log.warning("smoothing: no fast loop, the site clock runs too fast for its ticks; the period loop "
                        "keeps the setpoints and the GPU lever sees the swing at period resolution",
                        speed=self.clock.speed, tick_real_ms=round(period_real * 1e3, 3))
            await asyncio.Event().wait()
        next_t = time.monotonic()
        last_site = self.clock.monotonic()
        try:
            while True:
                checkpoint()  # a stop a library swallowed (ems/model/cancel_guard)
                armed = self.armed
                now_site = self.clock.monotonic()
                if armed is not None and now_site - armed.at_s <= self.stale_after_s and not self.stand_down():
                    if await self._tick(armed, now_site - last_site):
                        self.ticks += 1
                        self.last_tick_real_s = time.monotonic()
                else:
                    self.state = smoothing.SmoothingState()  # start afresh when armed again
                    self.predictor.reset()
                    self.written_w.clear()
                    if self.filler_written_w != 0.0:  # stood down: the filler stops burning
                        await self._write_filler(0.0)
                last_site = now_site
                next_t += period_real
                delay = next_t - time.monotonic()
                if delay < 0:  # behind: do not bunch up ticks
                    next_t = time.monotonic()
                await asyncio.sleep(max(delay, 0.0))
        finally:
            if self.filler is not None:  # stopped: the filler stops burning (bounded: never holds up a stop)
                with contextlib.suppress(TimeoutError, DriverError):
                    await asyncio.wait_for(self.filler.write_si("power_setpoint", 0.0), 1.0)
                self.filler.close()
            self.meter.close()
            for d in self.pcs.values():
                d.close()


def smoothing_params(cfg: SiteConfig) -> smoothing.SmoothingParams:
    """The fast core's parameters from a site file (defaults where `policies.smoothing` is absent)."""
    sm = cfg.policies.smoothing or SmoothingConfig()
    g = cfg.grid_connection
    ramp = None if g.ramp_limit_w is None else g.ramp_limit_w / g.ramp_window_s
    return smoothing.SmoothingParams(sm.tau_s, ramp, cfg.control.setpoint_deadband_w, sm.lead_ticks)


def load_predictor(cfg: SiteConfig) -> LoadPredictor:
    """The fast core's predictor of the load from a site file: `predict_s` of history weighed,
    fitted on `predict_fit_s`, once a second."""
    sm = cfg.policies.smoothing or SmoothingConfig()
    taps = round(sm.predict_s * sm.rate_hz)
    return LoadPredictor(taps, max(round(sm.predict_fit_s * sm.rate_hz), 4 * taps), max(round(sm.rate_hz), 1))


def smoothing_loop(cfg: SiteConfig, clock: Clock) -> SmoothingLoop | None:
    """The fast loop a site file asks for (`policies.smoothing`), or None."""
    sm = cfg.policies.smoothing
    if sm is None or not sm.enabled:
        return None
    return SmoothingLoop(cfg, clock, smoothing_params(cfg), sm.rate_hz,
                         band_low_hz=cfg.grid_connection.oscillation_band_hz[0], predictor=load_predictor(cfg))
