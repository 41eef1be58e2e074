"""The control loop: gather, freeze, decide, arbitrate, dispatch, write, publish.

Every period: read the meter and every BMS and PCS concurrently into one frozen
`SiteSnapshot`, run the policies in priority order, arbitrate, split the site setpoint
across units, write only what changed plus the PCS heartbeat, and publish the site
status. A device that fails is logged once when lost and once when back; its unit
gets 0 W until it is fresh again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from drivers import rack_protocol as rp
from drivers.bess import BmsDriver, GensetDriver, MeterDriver, PcsDriver
from drivers.errors import DriverError
from drivers.modbus_device import ModbusDevice
from drivers.profile import load_profile
from drivers.racks import RackCapWriter, RackTelemetryStore
from ems import decide as policy_stack
from ems.arbiter import Arbitration
from ems.clock import Clock
from ems.config import ModbusEndpoint, SiteConfig, load_config
from ems.config_reload import needs_restart
from ems.demand import DemandMeter
from ems.envelope import EnvelopeParams, clamp
from ems.events import EventLog
from ems.failover.manager import FailoverManager, with_reserve
from ems.model.decision import Decision
from ems.model.errors import ConfigError
from ems.model.readings import BmsReading, GensetReading, MeterReading, PcsMode, PcsReading
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot, UnitSnapshot, fresh_meter, unit_snapshot
from ems.mqtt_link import MqttLink, NotConnected
from ems.operator.controls import OperatorControls
from ems.planning.runner import live_planner
from ems.state_store import StateStore
from ems.tariff.calendar import local_seconds
from ems.validity import ValidityParams, ValidityTracker
from policies.arbitrage import ArbitrageState
from policies.island import IslandActions

log = structlog.get_logger("ems.loop")


def _device(name: str, ep: ModbusEndpoint) -> ModbusDevice:
    return ModbusDevice(name, load_profile(ep.profile), ep.host, ep.port, ep.unit_id, ep.timeout_s)


class LinkHealth:
    """Logs (and records as events) a device going down once, and coming back once."""

    def __init__(self, events: EventLog, clock: Clock) -> None:
        self.down: dict[str, str] = {}
        self.errors: dict[str, int] = {}  # every failed read or write, by device (metrics)
        self.events = events
        self.clock = clock

    def ok(self, name: str) -> None:
        if self.down.pop(name, None) is not None:
            log.info("device recovered", device=name)
            self.events.record("device_recovered", self.clock.wall(), None, device=name)

    def failed(self, name: str, exc: Exception) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1
        if name not in self.down:
            self.down[name] = type(exc).__name__
            log.warning("device lost", device=name, error=str(exc), kind=type(exc).__name__)
            self.events.record("device_lost", self.clock.wall(), type(exc).__name__, device=name, error=str(exc))


@dataclass
class UnitIO:
    unit_id: str
    bms: BmsDriver
    pcs: PcsDriver
    last_bms: BmsReading | None = None
    last_pcs: PcsReading | None = None
    written_w: float | None = None  # last setpoint we know the PCS accepted
    heartbeat: int = 0


@dataclass
class PeriodResult:
    snapshot: SiteSnapshot
    decisions: tuple[Decision, ...]
    arbitration: Arbitration
    unit_setpoints_w: dict[str, float]
    writes: int
    duration_s: float
    lateness_s: float


@dataclass
class LoopStats:
    periods: int = 0
    overruns: int = 0
    write_failures: int = 0
    durations_s: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    lateness_s: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))

    def percentiles_ms(self) -> dict[str, float]:
        if not self.durations_s:
            return {}
        d = np.array(self.durations_s) * 1e3
        late = np.array(self.lateness_s) * 1e3
        return {"duration_p50_ms": float(np.percentile(d, 50)), "duration_p99_ms": float(np.percentile(d, 99)),
                "lateness_p50_ms": float(np.percentile(late, 50)), "lateness_p99_ms": float(np.percentile(late, 99))}


class Controller:
    def __init__(self, cfg: SiteConfig, clock: Clock) -> None:
        self.cfg = cfg
        self.clock = clock
        self.meter = MeterDriver(_device("meter", cfg.meter))
        self.units = [UnitIO(u.id, BmsDriver(_device(f"{u.id}.bms", u.bms)), PcsDriver(_device(f"{u.id}.pcs", u.pcs)))
                      for u in cfg.bess_units]
        rack_ids = cfg.racks.rack_ids()
        self.store = RackTelemetryStore(rack_ids, cfg.racks.nameplate_w, cfg.racks.telemetry_stale_after_s)
        self.cap_writer = RackCapWriter(cfg.mqtt.topic_prefix, rack_ids)
        self.mqtt = MqttLink(cfg.mqtt, self.store, clock, on_connect=self.cap_writer.forget)
        self.policy = policy_stack.policy_params(cfg.policies, cfg.control)
        self.policy_states = policy_stack.PolicyStates()
        self.cap_in_force_w = None if self.policy.peak is None else self.policy.peak.grid_import_cap_w
        self.planner = live_planner(cfg)  # None unless policies.arbitrage is configured
        self.last_meter: MeterReading | None = None
        self.last_setpoint_w = 0.0
        state_dir = cfg.state.dir
        self.events = EventLog(None if state_dir is None else state_dir / "events.db")
        self.health = LinkHealth(self.events, clock)
        overrides = cfg.http.overrides_file or (None if state_dir is None else state_dir / "overrides.json")
        self.controls = OperatorControls(cfg, self.events, clock, overrides, cfg.http.max_force_s)
        self.policy = self.controls.policy  # the site file's, with operator overrides (ems/operator)
        self.observers: list[Callable[[PeriodResult], None]] = []  # called after each period (metrics, dashboard)
        self.stats = LoopStats()
        self.last: PeriodResult | None = None
        self.status_failures = 0
        self.genset = None if cfg.genset is None else GensetDriver(_device("genset", cfg.genset))
        self.last_genset: GensetReading | None = None
        fc = cfg.failover
        self.failover = None if fc is None or not fc.enabled else FailoverManager(cfg, fc, clock, self.events)
        self.base_policy = self.policy
        c = cfg.control
        site_max_w = c.meter_max_abs_w or 3.0 * cfg.racks.count * cfg.racks.nameplate_w + 1e7
        self.validity = ValidityTracker(ValidityParams(site_max_w, c.meter_frozen_s, c.bms_soc_max_c_rate / 3600.0))
        self.envelope_clamps = 0
        self.narrowed: list[str] = []
        self.demand = DemandMeter()
        self._demand_at_s: float | None = None
        self.state_store = StateStore(None if state_dir is None else state_dir / "state.db")
        self._persisted_at_s = -math.inf
        self._persisted_peak_w = 0.0
        self.restored = self._restore()
        self.background_failure: BaseException | None = None

    # --- gather ----------------------------------------------------------------------
    async def _read(self, name: str, coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            value = await coro
        except DriverError as exc:
            self.health.failed(name, exc)
            return None
        self.health.ok(name)
        return value

    async def gather(self) -> SiteSnapshot:
        now = self.clock.monotonic()
        reads = [self._read("meter", self.meter.read(now))]
        for u in self.units:
            reads.append(self._read(f"{u.unit_id}.bms", u.bms.read(now)))
            reads.append(self._read(f"{u.unit_id}.pcs", u.pcs.read(now)))
        if self.genset is not None:
            reads.append(self._read("genset", self.genset.read(now)))
        results = await asyncio.gather(*reads)
        self.last_meter = results[0] or self.last_meter
        if self.genset is not None:
            self.last_genset = results[-1] or self.last_genset
        c = self.cfg.control
        unit_snaps = []
        for i, u in enumerate(self.units):
            u.last_bms = results[1 + 2 * i] or u.last_bms
            u.last_pcs = results[2 + 2 * i] or u.last_pcs
            unit_snaps.append(self.validity.check_unit(
                unit_snapshot(u.unit_id, u.last_bms, u.last_pcs, now, c.bess_stale_after_s)))
        meter = self.validity.check_meter(fresh_meter(self.last_meter, now, c.meter_stale_after_s), now)
        return SiteSnapshot(
            now_s=now, wall_s=self.clock.wall(), period_s=c.period_s,
            meter=meter, meter_invalid=self.validity.meter_invalid,
            meter_invalid_since_s=self.validity.meter_invalid_since_s,
            units=tuple(unit_snaps), racks=self.store.reading(now), last_setpoint_w=self.last_setpoint_w,
            genset=None if self.last_genset is None or now - self.last_genset.read_at_s > c.bess_stale_after_s
            else self.last_genset,
            grid_ok=None if self.failover is None else self.failover.grid_ok,
        )

    # --- decide ----------------------------------------------------------------------
    def decide(self, snap: SiteSnapshot) -> tuple[tuple[Decision, ...], Arbitration, dict[str, float]]:
        """Pure given the policies' state: snapshot -> decisions -> setpoint -> unit shares
        (ems/decide.py, the same stack the backtester runs)."""
        out, self.policy_states = policy_stack.decide(snap, self.policy, self.policy_states)
        self.cap_in_force_w = out.grid_import_cap_w
        return out.decisions, out.arbitration, out.unit_setpoints_w

    # --- write -----------------------------------------------------------------------
    async def _write_unit(self, io: UnitIO, snap: UnitSnapshot, setpoint_w: float) -> int:
        name = f"{io.unit_id}.pcs"
        writes = 0
        deadband = self.cfg.control.setpoint_deadband_w
        try:
            # the heartbeat goes first: a PCS that just left standby starts its timeout
            io.heartbeat = (io.heartbeat + 1) % 65536
            await io.pcs.beat(io.heartbeat)
            writes += 1
            pcs = snap.pcs
            gf = PcsMode.GRID_FOLLOWING
            # never grid-following without the grid, nor while islanded: that would drop the island
            islanded = self.failover is not None and self.failover.islanded
            if (snap.available and pcs is not None and pcs.grid_ok and not islanded
                    and (pcs.mode is not gf or pcs.mode_command is not gf)):
                await io.pcs.set_mode(PcsMode.GRID_FOLLOWING)
                writes += 1
            reported = None if pcs is None else pcs.setpoint_w
            stale_write = io.written_w is None or abs(io.written_w - setpoint_w) >= deadband
            drifted = reported is not None and abs(reported - setpoint_w) >= deadband
            exact_zero = setpoint_w == 0 and io.written_w not in (None, 0.0)
            if stale_write or drifted or exact_zero:
                await io.pcs.set_active_power_w(setpoint_w)
                io.written_w = setpoint_w
                writes += 1
        except DriverError as exc:
            self.stats.write_failures += 1
            io.written_w = None
            self.health.failed(name, exc)
        return writes

    async def write(self, snap: SiteSnapshot, shares: dict[str, float]) -> int:
        by_id = {u.unit_id: u for u in snap.units}
        counts = await asyncio.gather(*(self._write_unit(io, by_id[io.unit_id], shares[io.unit_id])
                                        for io in self.units))
        return sum(counts)

    # --- publish ---------------------------------------------------------------------
    def status(self, r: PeriodResult) -> dict[str, Any]:
        s = r.snapshot
        plan = None if self.planner is None else self.planner.summary(
            s.now_s, local_seconds(s.wall_s, self.planner.zone))
        return {
            "site": self.cfg.site, "ts": round(s.wall_s, 3), "period": self.stats.periods,
            "grid_power_w": None if s.meter is None else round(s.meter.grid_power_w, 1),
            "grid_import_cap_w": self.cap_in_force_w,
            "site_load_w": None if s.site_load_w is None else round(s.site_load_w, 1),
            "battery_setpoint_w": round(r.arbitration.setpoint_w, 1),
            "battery_power_w": round(s.battery_power_w, 1),
            "reason": r.arbitration.reason.code, "decided_by": r.arbitration.decided_by,
            "policies": {d.policy: d.reason.code for d in r.decisions},
            "overruled": list(r.arbitration.overruled),
            "units": {
                u.unit_id: {
                    "available": u.available,
                    "reason": None if u.unavailable is None else u.unavailable.code,
                    "soc": None if u.bms is None else round(u.bms.soc, 4),
                    "power_w": None if u.pcs is None else round(u.pcs.power_w, 1),
                    "setpoint_w": round(r.unit_setpoints_w[u.unit_id], 1),
                    "mode": None if u.pcs is None else u.pcs.mode.value,
                } for u in s.units
            },
            "racks": {"count": len(s.racks.rack_ids), "stale": s.racks.stale_count,
                      "reported_power_w": round(s.racks.reported_power_w, 1),
                      "load_estimate_w": round(s.racks.load_estimate_w, 1)},
            "loop": {"duration_ms": round(r.duration_s * 1e3, 3), "lateness_ms": round(r.lateness_s * 1e3, 3),
                     "overruns": self.stats.overruns, "devices_down": sorted(self.health.down),
                     "status_publish_failures": self.status_failures},
            "plan": plan,
            "failover": None if self.failover is None else self.failover.status(),
            "genset": None if s.genset is None else {
                "state": s.genset.state.value, "power_w": round(s.genset.power_w, 1),
                "fuel_used_l": round(s.genset.fuel_used_l, 2), "run_s": round(s.genset.run_s)},
            "demand": {"month": self.demand.month, "month_peak_w": round(self.demand.month_peak_w, 1),
                       "interval_average_w": round(self.demand.current_average_w, 1)},
            "validity": {"meter": None if s.meter_invalid is None else s.meter_invalid.code,
                         "units": {k: v.code for k, v in self.validity.unit_invalid.items()},
                         "rejected": dict(self.validity.rejected)},
            "envelope": {"narrowed": list(self.narrowed), "periods_narrowed": self.envelope_clamps},
        }

    async def _publish_status(self, r: PeriodResult) -> None:
        try:
            await self.mqtt.publish(rp.status_topic(self.cfg.mqtt.topic_prefix),
                                    json.dumps(self.status(r)).encode())
        except NotConnected:
            self.status_failures += 1

    # --- one period ------------------------------------------------------------------
    async def period(self, lateness_s: float = 0.0) -> PeriodResult:
        t0 = time.perf_counter()
        snap = self.controls.apply(await self.gather())  # operator: units in maintenance, timed reverts
        self.policy = self.base_policy = self.controls.policy
        fo = self.failover
        if fo is not None and fo.islanded:
            # island: grid-trading policies stand down; grid-forming units balance the load
            actions = fo.island_step(snap)
            reason = actions.reason or Reason.ISLANDED
            decisions: tuple[Decision, ...] = (Decision("island", reason, 0.0, 0.0),)
            arb = Arbitration(0.0, 0.0, 0.0, reason, "island", ())
            shares = {u.unit_id: 0.0 for u in snap.units}
            writes = await self.write(snap, shares) + await self._apply_island(actions, snap)
        else:
            if fo is not None:
                fo.arm(snap)
                self.policy = with_reserve(self.base_policy, fo.reserve_soc)
            if self.planner is not None and (view := self.planner.step(snap)) is not None:
                self.policy_states = replace(self.policy_states, arbitrage=ArbitrageState(view))
            decisions, arb, shares = self.decide(snap)
            shares = self._envelope(snap, shares)
            writes = await self.write(snap, shares)
            if fo is not None:  # after a reconnection: caps ramp back, the genset stops
                writes += await self._apply_island(fo.island_step(snap), snap)
            else:
                writes += await self._sync_caps({})  # after a (re)connect: re-assert or clear retained caps
        self.last_setpoint_w = sum(shares.values())
        self._account(snap)
        duration = time.perf_counter() - t0
        result = PeriodResult(snap, decisions, arb, shares, writes, duration, lateness_s)
        self.stats.periods += 1
        self.stats.durations_s.append(duration)
        self.stats.lateness_s.append(lateness_s)
        if self.stats.periods % self.cfg.control.status_every_periods == 0:
            await self._publish_status(result)
        self.last = result
        for observe in self.observers:
            observe(result)
        return result

    def reload_config(self, path: Path, adjust: Callable[[SiteConfig], SiteConfig] | None = None) -> tuple[bool, str]:
        """Apply a changed site file at the next period, or keep the running one and say why.
        `adjust` re-applies what the command line overrode (e.g. --mqtt-url)."""
        wall = self.clock.wall()
        try:
            new = load_config(path)
            if adjust is not None:
                new = adjust(new)
        except ConfigError as exc:
            self.events.record("config_rejected", wall, None, path=str(path), why=str(exc))
            log.warning("config reload refused: the running configuration stays", why=str(exc))
            return False, str(exc)
        restart = needs_restart(self.cfg, new)
        if restart:
            why = "needs a restart to change: " + ", ".join(restart)
            self.events.record("config_rejected", wall, None, path=str(path), why=why)
            log.warning("config reload refused: the running configuration stays", why=why)
            return False, why
        self.cfg = new
        self.controls.rebase(new)
        self.policy = self.base_policy = self.controls.policy
        if self.failover is not None:
            self.failover.reconfigure(new)
        c = new.control
        self.validity.p = replace(self.validity.p, meter_frozen_s=c.meter_frozen_s,
                                  soc_max_rate_per_s=c.bms_soc_max_c_rate / 3600.0,
                                  meter_max_abs_w=c.meter_max_abs_w or self.validity.p.meter_max_abs_w)
        self.events.record("config_applied", wall, None, path=str(path))
        log.info("config reloaded", path=str(path))
        return True, "applied"

    def _envelope(self, snap: SiteSnapshot, shares: dict[str, float]) -> dict[str, float]:
        """Whatever the policies asked: every unit inside its safety envelope (ems/envelope.py)."""
        b = self.cfg.policies.battery
        reserve = 0.0 if self.failover is None else self.failover.reserve_soc
        if self.policy.reserve is not None:
            reserve = max(reserve, self.policy.reserve.reserve_soc)
        params = EnvelopeParams(b.soc_min, b.soc_max, reserve, b.unit_ramp_w_per_s, b.temp_derate_start_c, b.temp_max_c)
        # the ramp runs from what each PCS reports it holds now (this period's reading)
        holding = {u.unit_id: None if u.pcs is None else u.pcs.setpoint_w for u in snap.units}
        out, self.narrowed = clamp(shares, snap.units, params, holding, snap.period_s)
        self.envelope_clamps += bool(self.narrowed)
        return out

    def _account(self, snap: SiteSnapshot) -> None:
        """Billing demand (15-min intervals, month peak) and persisted state."""
        if snap.meter is not None and self._demand_at_s is not None:
            dt = min(snap.now_s - self._demand_at_s, 10 * snap.period_s)  # a long gap is not evidence
            self.demand.add(snap.meter.grid_power_w, dt, snap.wall_s)
        self._demand_at_s = snap.now_s
        due = snap.now_s - self._persisted_at_s >= self.cfg.state.persist_every_s
        if due or self.demand.month_peak_w != self._persisted_peak_w:
            self.persist()

    def persist(self) -> None:
        now = self.clock.monotonic()
        self.state_store.save({
            "demand": self.demand.to_dict(),
            "setpoints": {"site_w": self.last_setpoint_w, "units_w": {io.unit_id: io.written_w for io in self.units}},
            "heartbeats": {io.unit_id: io.heartbeat for io in self.units},
            "periods": self.stats.periods,
        }, self.clock.wall())
        self._persisted_at_s, self._persisted_peak_w = now, self.demand.month_peak_w

    def _restore(self) -> dict[str, Any]:
        """Resume from what a previous run persisted: demand so far, setpoints, counters."""
        saved = self.state_store.load()
        if "demand" in saved:
            self.demand = DemandMeter.from_dict(saved["demand"])
            self._persisted_peak_w = self.demand.month_peak_w
        sp = saved.get("setpoints") or {}
        self.last_setpoint_w = float(sp.get("site_w", 0.0))
        for io in self.units:
            w = (sp.get("units_w") or {}).get(io.unit_id)
            io.written_w = None if w is None else float(w)
            # carry on counting so the PCS sees the heartbeat move at once
            io.heartbeat = (int((saved.get("heartbeats") or {}).get(io.unit_id, 0)) + 1) % 65536
        if saved:
            log.info("resumed from persisted state", month_peak_w=round(self.demand.month_peak_w),
                     site_setpoint_w=round(self.last_setpoint_w))
        return saved

    async def _sync_caps(self, caps_w: dict[str, float | None]) -> int:
        by_row = self.cap_writer.changes(caps_w, deadband_w=500.0)
        if not by_row:
            return 0
        try:
            return await self.cap_writer.send(self._publish_caps, by_row)
        except NotConnected:
            self.stats.write_failures += 1
            return 0

    async def _publish_caps(self, topic: str, payload: bytes) -> None:
        # retained and QoS 1: a row agent that subscribes late still gets the caps in force
        await self.mqtt.publish(topic, payload, qos=1, retain=True)

    async def _apply_island(self, actions: IslandActions, snap: SiteSnapshot) -> int:
        """Carry out what island supervision asked: caps, genset, reconnection."""
        writes = await self._sync_caps(actions.caps_w)
        wall = self.clock.wall()
        try:
            if self.genset is not None and actions.genset is not None:
                await (self.genset.start() if actions.genset == "start" else self.genset.stop())
                self.events.record(f"genset_{actions.genset}", wall, None if actions.reason is None
                                   else actions.reason.code)
                writes += 1
            if self.genset is not None and actions.genset_charge_w is not None:
                await self.genset.set_charge_request_w(actions.genset_charge_w)
                writes += 1
        except DriverError as exc:
            self.stats.write_failures += 1
            self.health.failed("genset", exc)
        if actions.reconnect:
            # the planned transition back: every unit that can follows the grid again
            ready = [io for io, u in zip(self.units, snap.units, strict=True) if u.pcs is not None and not u.pcs.fault]
            results = await asyncio.gather(*(io.pcs.set_mode(PcsMode.GRID_FOLLOWING) for io in ready),
                                           return_exceptions=True)
            writes += sum(1 for r in results if r is None)
            log.info("reconnected to the grid", units=len(ready))
        return writes

    async def run(self, stop: asyncio.Event) -> None:
        """Run periods until `stop` is set, then bring every unit to a safe 0 W."""
        period_real = self.cfg.control.period_s / self.clock.speed
        self.events.record("controller_started", self.clock.wall(), None, site=self.cfg.site)
        background = [asyncio.create_task(self.mqtt.run(), name="mqtt")]
        if self.failover is not None:
            background.append(asyncio.create_task(self.failover.run(), name="failover"))

        def crashed(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.error("background task failed: stopping", task=task.get_name(), error=repr(task.exception()))
                self.background_failure = task.exception()
                stop.set()

        for task in background:
            task.add_done_callback(crashed)
        try:
            next_t = time.perf_counter()
            while not stop.is_set():
                late = time.perf_counter() - next_t
                await self.period(max(late, 0.0))
                next_t += period_real
                now = time.perf_counter()
                if now > next_t:  # overrun: skip the periods we missed, do not bunch up
                    self.stats.overruns += 1
                    next_t += math.ceil((now - next_t) / period_real) * period_real
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), next_t - time.perf_counter())
        finally:
            await self.shutdown()
            for task in background:
                task.cancel()
            # bounded: a connection that will not close must not keep the daemon from exiting
            _, pending = await asyncio.wait(background, timeout=5.0)
            if pending:
                log.warning("background tasks did not stop in time", tasks=[t.get_name() for t in pending])

    async def shutdown(self) -> None:
        """Leave every unit at 0 W and release rack caps; best effort, bounded in time."""
        async def zero(io: UnitIO) -> None:
            try:
                await io.pcs.set_active_power_w(0.0)
                io.written_w = 0.0
            except DriverError as exc:
                log.warning("could not zero unit at shutdown", unit=io.unit_id, error=str(exc))

        await asyncio.wait_for(asyncio.gather(*(zero(io) for io in self.units)), 5.0)
        self.last_setpoint_w = 0.0
        self.persist()
        releases = self.cap_writer.release_all()
        if releases:
            try:
                await self.cap_writer.send(self._publish_caps, releases)
            except NotConnected:
                log.warning("could not release rack caps at shutdown: broker unreachable")
        log.info("controller stopped: units at 0 W", reason=Reason.SHUTDOWN.code)
        self.events.record("controller_stopped", self.clock.wall(), Reason.SHUTDOWN.code)
        for io in self.units:
            io.bms.device.close()
            io.pcs.device.close()
        self.meter.device.close()
        if self.genset is not None:
            self.genset.device.close()
        if self.failover is not None:
            self.failover.close()
