"""The control loop: gather -> operator actions -> step -> write -> publish, every period.

Gather (ems/gather.py) freezes one `SiteSnapshot`; operator actions queued since the last
period (ems/action_queue.py) are applied, then the operator state (maintenance, timed
reverts) applies to the snapshot; the period step (ems/period.py, the same the backtest
runs) decides; the actuators (ems/actuators.py) write only what changed plus the PCS
heartbeat; the result is published (status topic, observers, and `published` for readers
in other threads: the operator server reads nothing else). While islanded by a grid loss,
island supervision (ems/failover) takes the step's place; off-grid (no grid at all, the
island is the steady state) the step runs every period with every PCS grid-forming, and
the step's genset dispatch is carried out on the site's genset (ems/genset_commands.py).
Background work (MQTT, failover fast path, planner worker) runs in one task group: if one
fails the loop stops, every unit goes to 0 W and the daemon exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from drivers import rack_protocol as rp
from drivers.racks import RackCapWriter, RackTelemetryStore, SmoothingProfileWriter
from ems.action_queue import ActionQueue
from ems.actuators import Actuators, lower_caps
from ems.clock import Clock
from ems.config import SiteConfig, is_off_grid, load_config
from ems.config_reload import needs_restart
from ems.demand import DemandMeter
from ems.dr_book import DrBook, dr_status
from ems.events import EventLog
from ems.failover.manager import FailoverManager
from ems.gather import SiteReader
from ems.genset_commands import commands as genset_commands
from ems.gpu_lever import gpu_lever
from ems.job_ramps import job_ramps
from ems.load_target import LoadTargetDecoder
from ems.load_target_mqtt import LoadTargetChannel
from ems.loop_stats import LoopStats
from ems.model.cancel_guard import checkpoint
from ems.model.errors import ConfigError
from ems.model.racks import SmoothingProfile
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot
from ems.mqtt_link import MqttLink, NotConnected
from ems.offgrid_rows import OffGridRows
from ems.openadr3_ven import OpenAdr3Ven
from ems.openadr_ven import OpenAdrVen, site_flexibility_w, site_import_w
from ems.operator.controls import OperatorControls
from ems.period import StepResult, StepState, standing_down, step
from ems.persistence import ControllerState
from ems.planning.genset_live import genset_planner
from ems.planning.live import live_planner
from ems.planning.settings import site_tariff
from ems.published import PeriodResult, Published
from ems.ramp_watch import RampWatch
from ems.smoothing_loop import Armed, SmoothingLoop, smoothing_loop
from ems.smoothing_status import smoothing_status
from ems.status import site_status
from ems.tariff.calendar import local_seconds
from ems.transitions import TransitionObserver
from ems.unit_changes import apply_unit_changes, unit_changes
from ems.write_gate import WriteGate
from policies import job_ramp
from policies.genset_dispatch import DispatchState
from policies.island import IslandActions

log = structlog.get_logger("ems.loop")


# a plan solved within this share of a period is used in the same period, as the backtest does
PLAN_WAIT_SHARE = 0.2


class Controller:
    def __init__(self, cfg: SiteConfig, clock: Clock) -> None:
        self.cfg, self.clock = cfg, clock
        state_dir = cfg.state.dir
        self.events = EventLog(None if state_dir is None else state_dir / "events.db")
        rack_ids = cfg.racks.rack_ids()
        self.store = RackTelemetryStore(rack_ids, cfg.racks.nameplate_w, cfg.racks.telemetry_stale_after_s)
        self.reader = SiteReader(cfg, clock, self.store)
        caps = RackCapWriter(cfg.mqtt.topic_prefix, rack_ids)
        self.jobs = job_ramps(cfg)  # announced job starts and stops ramped, where the site allows GPU levers
        self.ramp_watch = RampWatch()  # the metered grid against the ramp limit, where one is set
        self.mqtt = MqttLink(cfg.mqtt, self.store, clock, on_connect=caps.forget,
                             jobs=None if self.jobs is None else self.jobs.book)
        self.actuators = Actuators(self.reader.units, self.reader.genset, caps, self._publish_retained,
                                   self.reader.health, cfg.control.setpoint_deadband_w, self.reader.gensets)
        overrides = cfg.http.overrides_file or (None if state_dir is None else state_dir / "overrides.json")
        self.controls = OperatorControls(cfg, self.events, clock, overrides, cfg.http.max_force_s)
        self.actions: ActionQueue[OperatorControls] = ActionQueue(cfg.http.limits.action_queue,
                                                                   cfg.http.limits.actions_per_period)
        tariff, zone = site_tariff(cfg)
        self.demand = DemandMeter(tariff, zone)  # the one billing-demand meter: status, planner, persistence
        self._demand_at_s: float | None = None
        self.planner = live_planner(cfg, tariff, self.demand)  # None unless policies.arbitrage is configured
        fc = cfg.failover
        self.off_grid = is_off_grid(cfg)  # no grid to lose: no failover, the step runs every period
        self.shed = OffGridRows(cfg, self.events)  # off-grid / weak grid: rows capped in shed order
        self.failover = (None if fc is None or not fc.enabled or self.off_grid
                         else FailoverManager(cfg, fc, clock, self.events))
        self.step_state = StepState()
        self.genset_planner = genset_planner(cfg)  # off-grid / weak grid with microgrid.genset_plan
        self._latest: tuple[SiteSnapshot, DispatchState] | None = None  # what the genset planner plans from
        self.persisted = ControllerState(None if state_dir is None else state_dir / "state.db",
                                         cfg.state.persist_every_s)
        self.stats = LoopStats()
        self.status_failures = 0
        self.published = Published(cfg.site, clock, zone, self.events, self.actions, self.controls.view)
        self.controls.on_change = self.published.set_operator
        self.last_setpoint_w = 0.0
        self.transitions = TransitionObserver(self.events)
        self.observers: list[Callable[[PeriodResult], None]] = [self.transitions]  # after each period
        self.background_failure: BaseException | None = None
        self.smoother = smoothing_loop(cfg, clock)  # the fast loop, where the site file asks for smoothing
        self.actuators.fast = self.smoother
        if self.smoother is not None and self.failover is not None:
            failover = self.failover
            self.smoother.stand_down = lambda: failover.islanded
        self.gpu = gpu_lever(cfg)
        self.dr = DrBook()  # demand-response events from OpenADR, MQTT and operators (used where configured)
        if self.gpu is not None or self.jobs is not None:
            self.actuators.profiles = SmoothingProfileWriter(cfg.mqtt.topic_prefix, rack_ids)
        self.restored = self.persisted.restore(self)
        self._units_due = False  # a reload added or removed units: applied at the next period's start
        self._firings_seen = 0  # the failover fast path's firings whose caps this loop has accounted for
        self._units_running = list(self.cfg.bess_units)  # the units the reader and actuators hold (applied)
        self.write_gate: WriteGate | None = None  # active/standby (ems/ha): no writes while it says no
        self.side_tasks: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []  # more background tasks
        self.run_now = asyncio.Event()  # a period at once, not at the next tick (a standby just promoted)
        dr = cfg.policies.demand_response
        self.ven: OpenAdrVen | None = None
        if dr is not None and dr.enabled and dr.openadr is not None:
            self.ven = OpenAdrVen(dr.openadr, self.dr, self.published, self.controls.step_params.dr)
            self.side_tasks.append(("openadr", self.ven.run))
        self.ven3: OpenAdr3Ven | None = None
        if dr is not None and dr.enabled and dr.openadr3 is not None:
            published, controls = self.published, self.controls  # the tiers as a reload leaves them
            self.ven3 = OpenAdr3Ven(dr.openadr3, dr.openadr3.client_secret(), self.dr, clock.wall,
                                    lambda: site_import_w(published),
                                    lambda: site_flexibility_w(published, controls.step_params.dr))
            self.side_tasks.append(("openadr3", self.ven3.run))
        lt = None if dr is None or not dr.enabled else dr.load_target
        # one decoder for MQTT and the operator API: a request replayed on the other is refused too
        self.load_targets = None if lt is None else LoadTargetDecoder(lt.secret(), lt.max_age_s)
        self.controls.dr_book, self.controls.load_targets = self.dr, self.load_targets
        self.load_target_channel: LoadTargetChannel | None = None
        if lt is not None and lt.mqtt and self.load_targets is not None:
            self.load_target_channel = LoadTargetChannel(self.load_targets, self.dr, clock, self.mqtt, self.published,
                                                         cfg.site, cfg.mqtt.topic_prefix, lt.status_every_s)
            self.side_tasks.append(("load_target", self.load_target_channel.run))

    @property
    def last(self) -> PeriodResult | None:
        """The latest published result."""
        return self.published.result

    # --- one period ------------------------------------------------------------------
    async def period(self, lateness_s: float = 0.0) -> PeriodResult:
        t0 = time.perf_counter()
        if self._units_due:
            await self._apply_unit_changes()
        fo = self.failover
        if fo is not None and len(fo.firings) != self._firings_seen:
            # the fast path published row caps (retained) on its own connection: what our writer
            # last sent is no longer what the racks hold, so every row goes again, whole, or a
            # row the island no longer caps would keep the fast path's caps for good
            self._firings_seen = len(fo.firings)
            self.actuators.caps.forget()
        snap = await self.reader.read(self.last_setpoint_w, None if fo is None else fo.grid_ok,
                                      None if fo is None else fo.riding_through)
        self.controls.observe_capability(snap)  # a forced setpoint beyond what the units can do is refused
        self.actions.apply_pending(self.controls)  # what operators asked since the last period (bounded)
        snap = self.controls.apply(snap)  # operator: units in maintenance, timed reverts
        islanded = fo is not None and fo.islanded
        gate = self.write_gate
        if gate is not None and not gate.may_write():
            # standby (or an active whose lease could run out): decide, keep state warm, write nothing
            result = await self._step(snap)
            if self.smoother is not None:
                self.smoother.arm(None)
            writes = 0
        elif fo is not None and islanded:
            # island: grid-trading policies stand down; grid-forming units balance the load
            if self.smoother is not None:
                self.smoother.arm(None)
            actions = fo.island_step(snap)
            result = standing_down(snap, actions.reason or Reason.ISLANDED, "island", self.step_state)
            writes = await self.actuators.write_units(snap, result.unit_setpoints_w, islanded=True)
            writes += await self._apply_island(actions, snap)
        else:
            result = await self._step(snap)
            writes = await self.actuators.write_units(snap, result.unit_setpoints_w, islanded=False,
                                                      forming=self.off_grid)
            writes += await self.actuators.write_pv_limit(self.reader.pv, snap, result.pv_limit_w)
            if result.microgrid is not None:  # off-grid: the step's genset dispatch, on the genset device
                writes += await self._command_genset(snap, result)
            if self.smoother is not None and self.actuators.profiles is not None:
                writes += await self.actuators.sync_profiles(self._rack_profiles(snap, result, self.smoother))
            dr_caps = {} if result.dr is None else result.dr.caps_w
            if fo is not None:  # after a reconnection: caps ramp back, the genset stops
                actions = fo.island_step(snap)
                writes += await self._apply_island(replace(actions, caps_w=lower_caps(actions.caps_w, dr_caps)), snap)
            elif result.microgrid is not None:
                mp = self.controls.step_params.microgrid
                assert mp is not None
                caps = self.shed.caps(snap, result, mp, self.clock.wall())
                writes += await self.actuators.sync_caps(lower_caps(caps, dr_caps))
            else:
                # after a (re)connect: re-assert or clear retained caps; DR's caps where an event asks
                writes += await self.actuators.sync_caps(dr_caps)
        if gate is not None:
            gate.note_writes(writes)
        self.step_state = result.state
        self.last_setpoint_w = result.setpoint_w
        self._account(snap)
        return await self._publish(snap, result, writes, time.perf_counter() - t0, lateness_s, islanded)

    def _rack_profiles(self, snap: SiteSnapshot, result: StepResult, fast: SmoothingLoop
                       ) -> dict[str, SmoothingProfile | None]:
        """The GPU lever's profiles and the job ramps', one per rack (the higher floor, the slower ramp)."""
        profiles: dict[str, SmoothingProfile | None] = dict.fromkeys(snap.racks.rack_ids)
        if self.gpu is not None:
            profiles = self.gpu.decide(snap, result, fast.swing_w, fast.grid_band.rms)
        if self.jobs is not None:
            ramps, began = self.jobs.decide(snap, result, fast.swing_w)
            for rid, p in ramps.items():
                profiles[rid] = job_ramp.combine(profiles.get(rid), p)
            for r in began:
                self.events.record("job_ramp", self.clock.wall(), Reason.JOB_RAMP.code if r.lever == "gpu" else None,
                                   job=r.job, job_event=r.event, lever=r.lever, racks=len(r.rack_ids),
                                   step_w=round(r.step_w, 1), rack_ramp_w_per_s=r.rack_rate_w_per_s)
        return profiles

    async def _step(self, snap: SiteSnapshot) -> StepResult:
        if self.failover is not None:
            self.failover.arm(snap)
        plan = None
        params = self.controls.step_params
        if self.planner is not None:
            ahead = [] if params.dr is None else self.dr.ahead(snap.wall_s, self.planner.horizon_s)
            plan = await self.planner.step(snap, wait_s=PLAN_WAIT_SHARE * snap.period_s / self.clock.speed,
                                           dr_events=ahead)
        gp = self.genset_planner
        event = None if params.dr is None else self.dr.current(snap.wall_s, params.dr.precharge_s)
        if self.planner is not None:  # the program's baseline where the event asks a reduction from it
            event = self.planner.with_program_baseline(event, snap)
        result = step(snap, params, self.step_state, plan, self.controls.force_params,
                      genset_plan=None if gp is None else gp.schedule, dr=event)
        if gp is not None and result.microgrid is not None and result.microgrid.demand_w is not None:
            gp.history.observe(snap.now_s, result.microgrid.demand_w, snap.period_s)
            self._latest = (snap, result.state.microgrid.gensets)
        if result.dr is not None and result.dr.finished is not None:
            summary = result.dr.finished.summary()
            self.dr.finished(summary)
            self.events.record("dr_event_result", self.clock.wall(), None, **summary)
        if (self.smoother is not None and not self.smoother.runs and snap.meter is not None
                and snap.site_load_w is not None):
            self.smoother.observe(snap.now_s, snap.site_load_w, snap.meter.grid_power_w, snap.period_s)
        if self.smoother is not None:
            g = self.cfg.grid_connection
            # smoothing moves the battery around what the policies decided; not around an operator's
            # forced power, nor without a trusted meter (the safe action holds instead)
            self.smoother.arm(None if self.controls.force is not None or snap.meter is None else Armed(
                snap.now_s, dict(result.unit_setpoints_w), dict(result.unit_bounds_w), g.import_limit_w,
                g.export_limit_w, snap.site_load_avg_w))
        return result

    async def _command_genset(self, snap: SiteSnapshot, result: StepResult) -> int:
        assert result.microgrid is not None
        writes = 0
        for cmd in genset_commands(result.microgrid, snap.gensets):  # every device, by its dispatch id
            n, sent = await self.actuators.command_genset(cmd)
            writes += n
            for c in sent:
                self.events.record("genset_command", self.clock.wall(), None, genset=cmd.genset_id, command=c)
        return writes

    async def _apply_island(self, actions: IslandActions, snap: SiteSnapshot) -> int:
        writes, genset = await self.actuators.apply_island(actions, snap)
        for command in genset:
            self.events.record(f"genset_{command}", self.clock.wall(), None)
        return writes

    async def _publish(self, snap: SiteSnapshot, result: StepResult, writes: int, duration_s: float,
                       lateness_s: float, islanded: bool) -> PeriodResult:
        s = self.stats
        s.count(bool(result.clamped), duration_s, lateness_s)
        down = dict(self.reader.health.down)
        status = site_status(
            self.cfg.site, s.periods, snap, result, duration_s=duration_s, lateness_s=lateness_s,
            overruns=s.overruns, devices_down=sorted(down), status_failures=self.status_failures,
            plan=None if self.planner is None else self.planner.summary(
                snap.now_s, local_seconds(snap.wall_s, self.planner.zone)),
            failover=None if self.failover is None else self.failover.status(), demand=self.demand,
            validity=self.reader.validity, periods_clamped=s.periods_clamped,
            forced_w=None if self.controls.force is None else self.controls.force.setpoint_w,
            smoothing=smoothing_status(self.cfg, snap.now_s, self.controls.step_params.grid_ramp, self.step_state.ramp,
                                       self.smoother, self.gpu, self.jobs, self.ramp_watch))
        if self.write_gate is not None:
            status["ha"] = self.write_gate.describe()
        if isinstance(mg := status.get("microgrid"), dict):  # the rows shed (in order) and the genset plan
            mg["shed_rows"] = self.shed.rows
            mg["genset_plan"] = None if self.genset_planner is None else self.genset_planner.describe()
        status["dr"] = dr_status(self.dr, result.dr, result.state.dr.tally, self.controls.step_params.dr,
                                 snap.racks.rack_ids)
        ven = self.ven or self.ven3
        if isinstance(status["dr"], dict) and ven is not None:  # the VEN's health beside the events it booked
            status["dr"]["ven"] = ven.status()
        reader, act = self.reader, self.actuators
        r = PeriodResult(s.periods, snap, result, writes, duration_s, lateness_s, islanded, down,
                         self.mqtt.connected.is_set(),
                         None if self.planner is None else self.planner.runner.last_error, status,
                         unit_written_w={w.io.unit_id: w.written_w for w in act.units},
                         rack_caps_sent_w=dict(act.caps.sent), read_at_s=reader.read_at_s(),
                         driver_errors=dict(reader.health.errors), overruns=s.overruns,
                         write_failures=act.write_failures)
        if s.periods % self.cfg.control.status_every_periods == 0:
            try:
                await self.mqtt.publish(rp.status_topic(self.cfg.mqtt.topic_prefix), json.dumps(status).encode())
            except NotConnected:
                self.status_failures += 1
        if s.periods == 1:  # one line that says the loop is up and what it sees
            units = [u for u in snap.units if u.available]
            log.info("first period", reason=result.reason.code, units_available=f"{len(units)}/{len(snap.units)}",
                     meter=snap.meter is not None, devices_down=sorted(down), broker=r.broker_connected)
        self.published.result = r
        for observe in self.observers:
            observe(r)
        return r

    async def _publish_retained(self, topic: str, payload: bytes) -> None:
        # retained and QoS 1: a row agent that subscribes late still gets the caps in force
        await self.mqtt.publish(topic, payload, qos=1, retain=True)

    def _account(self, snap: SiteSnapshot) -> None:
        """Billing demand (15-min intervals, month peak) and persisted state."""
        if snap.meter is not None and self._demand_at_s is not None:
            # a long gap (the loop was stopped) is not evidence: at most ten periods count
            self.demand.add(snap.meter.grid_power_w, min(snap.now_s - self._demand_at_s, 10 * snap.period_s),
                            snap.wall_s)
        self._demand_at_s = snap.now_s
        ramp = self.controls.step_params.grid_ramp
        if ramp is not None and snap.meter is not None:
            self.ramp_watch.observe(snap.now_s, snap.meter.mean_w, ramp.limit_w, ramp.window_s, 10 * snap.period_s)
        self.persisted.maybe_save(self, snap.now_s)
        self.events.flush()  # events the disk refused (full), written once it takes them

    # --- configuration ---------------------------------------------------------------
    def reload_config(self, path: Path, adjust: Callable[[SiteConfig], SiteConfig] | None = None,
                      applied: Callable[[SiteConfig], None] | None = None) -> tuple[bool, str]:
        """Apply a changed site file at the next period, or keep the running one and say why.
        `adjust` re-applies what the command line overrode (e.g. --mqtt-url); `applied` sets
        up what lives outside the controller (logging) for the new file."""
        wall = self.clock.wall()
        try:
            new = load_config(path)
            if adjust is not None:
                new = adjust(new)
            # against the units running, not a reload's still pending: a unit removed and put back
            # changed before the next period must not slip past the changed-unit check
            restart = needs_restart(self.cfg.model_copy(update={"bess_units": self._units_running}), new)
            if restart:
                raise ConfigError("needs a restart to change: " + ", ".join(restart))
        except ConfigError as exc:
            self.events.record("config_rejected", wall, None, path=str(path), why=str(exc))
            log.warning("config reload refused: the running configuration stays", why=str(exc))
            return False, str(exc)
        self.cfg = new
        self.controls.rebase(new)
        if self.failover is not None:
            self.failover.reconfigure(new)
        self.reader.reconfigure(new)
        self.shed.reconfigure(new)
        self._units_due = [u.unit_id for u in self.reader.units] != [u.id for u in new.bess_units]
        self.actuators.deadband_w = new.control.setpoint_deadband_w
        if applied is not None:
            applied(new)
        self.events.record("config_applied", wall, None, path=str(path))
        log.info("config reloaded", path=str(path))
        return True, "applied"

    async def _apply_unit_changes(self) -> None:
        """Units added (probed, 0 W) and removed (0 W, standby) as the reloaded file says; a unit
        whose probe failed leaves the running configuration, so a later reload tries again."""
        self._units_due = False
        changes = unit_changes([u.unit_id for u in self.reader.units], self.cfg)
        for uid in changes.removed:  # the fast loops let go of a unit before it is retired
            if self.failover is not None:
                self.failover.remove_unit(uid)
            if self.smoother is not None:
                self.smoother.remove_unit(uid)
        added = await apply_unit_changes(changes, self.reader, self.actuators, self.events,
                                         self.clock.monotonic, self.clock.wall)
        for unit in changes.added:
            if unit.id in added:
                if self.failover is not None:
                    self.failover.add_unit(unit)
                if self.smoother is not None:
                    self.smoother.add_unit(unit)
        failed = {u.id for u in changes.added} - set(added)
        if failed:
            kept = [u for u in self.cfg.bess_units if u.id not in failed]
            self.cfg = self.cfg.model_copy(update={"bess_units": kept})
            self.reader.cfg = self.cfg
        self._units_running = list(self.cfg.bess_units)

    # --- running ---------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run periods until `stop` is set, then bring every unit to a safe 0 W. Background
        tasks run in one task group: one that fails stops the loop (`background_failure`)."""
        self.events.record("controller_started", self.clock.wall(), None, site=self.cfg.site)
        for what, moved in (("events.db", self.events.set_aside), ("state.db", self.persisted.store.set_aside)):
            if moved is not None:  # corrupt at start: moved aside, a new one begun (the month's peak from zero)
                self.events.record("state_file_set_aside", self.clock.wall(), None, file=what, moved_to=str(moved))
        c = self.cfg
        log.info("controller started", site=c.site, units=len(c.bess_units), racks=c.racks.count,
                 period_s=c.control.period_s, broker=c.mqtt.url, planner=self.planner is not None,
                 failover=self.failover is not None)
        try:
            async with asyncio.TaskGroup() as tg:
                background = [tg.create_task(self.mqtt.run(), name="mqtt")]
                if self.failover is not None:
                    background.append(tg.create_task(self.failover.run(), name="failover"))
                if self.planner is not None:
                    background.append(tg.create_task(self.planner.run(), name="planner"))
                if self.genset_planner is not None:
                    background.append(tg.create_task(self.genset_planner.run(
                        lambda: self._latest, c.control.period_s / self.clock.speed), name="genset_planner"))
                background += [tg.create_task(job(), name=name) for name, job in self.side_tasks]
                fast = None if self.smoother is None else tg.create_task(self.smoother.run(), name="smoothing")
                try:
                    await self._periods(stop)  # cancelled by the group if a background task fails
                finally:
                    if fast is not None:  # the fast loop stops writing before the units are set to 0 W
                        fast.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await fast
                    # while MQTT is still up, so the rack caps can be released
                    await self.shutdown()
                    for task in background:
                        task.cancel()
        except* Exception as group:
            self.background_failure = group.exceptions[0]
            log.error("background task failed: stopped", error=repr(self.background_failure))

    async def _periods(self, stop: asyncio.Event) -> None:
        period_real = self.cfg.control.period_s / self.clock.speed
        next_t = time.perf_counter()
        while not stop.is_set():
            checkpoint()  # a cancel (the task group's, on a background failure) a library swallowed
            late = time.perf_counter() - next_t
            await self.period(max(late, 0.0))
            next_t += period_real
            now = time.perf_counter()
            if now > next_t:  # overrun: skip the periods we missed, do not bunch up
                self.stats.overruns += 1
                next_t += math.ceil((now - next_t) / period_real) * period_real
            await self._sleep(stop, next_t - time.perf_counter())

    async def _sleep(self, stop: asyncio.Event, timeout_s: float) -> None:
        """Until the next period, `stop`, or (under a lease, ems/ha) `run_now`."""
        if self.write_gate is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout_s)
            return
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.run_now.wait())]
        try:
            await asyncio.wait(waits, timeout=max(timeout_s, 0.0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        self.run_now.clear()

    async def shutdown(self) -> None:
        """Leave every unit at 0 W and release rack caps; best effort, bounded in time. A
        standby (or an active that can no longer be sure of its lease) writes nothing."""
        if self.write_gate is not None and not self.write_gate.may_write():
            self.persisted.save(self)
            self.events.record("controller_stopped", self.clock.wall(), None, writes=False)
            self.reader.close()
            if self.failover is not None:
                self.failover.close()
            return
        not_told = await self.actuators.zero_all()
        self.last_setpoint_w = 0.0
        self.persisted.save(self)
        await self.actuators.release_caps()
        told = len(self.actuators.units) - len(not_told)
        if not_told:
            log.warning("controller stopped: units unreachable keep their setpoint until their PCS heartbeat timeout",
                        reason=Reason.SHUTDOWN.code, at_0_w=told, unreachable=not_told)
        else:
            log.info("controller stopped: every unit set to 0 W", reason=Reason.SHUTDOWN.code, units=told)
        self.events.record("controller_stopped", self.clock.wall(), Reason.SHUTDOWN.code, units_at_0_w=told,
                           unreachable=not_told)
        self.reader.close()
        if self.failover is not None:
            self.failover.close()
