"""Failover as the control loop sees it: arm each period, fire on loss, supervise the island.

Owns the grid watcher, the fast path with its dedicated connections (one Modbus
connection per PCS for control, one for the genset, one MQTT connection for caps), the
island state machine's state, and the reserve floor computed from the config.

The watcher and the fast path run on their own thread with their own event loop, so a
burst of rack telemetry or a long control period never delays detection or firing
(REFERENCES.md: draining 1000 messages takes ~40 ms). The loop hands over each armed plan
by a single reference assignment; events are recorded back on the control loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiomqtt
import structlog

from drivers.bess import GensetDriver, PcsDriver
from drivers.modbus_device import ModbusDevice
from drivers.profile import load_profile
from ems.clock import Clock
from ems.config import FailoverConfig, ModbusEndpoint, SiteConfig
from ems.events import EventLog
from ems.failover.fast_path import FastPath, Firing
from ems.failover.watcher import Disturbance, EventBudget, GridVerdict, GridWatcher
from ems.model.cancel_guard import checkpoint
from ems.model.snapshot import SiteSnapshot
from ems.mqtt_auth import client_kwargs, refreshed
from ems.mqtt_link import NotConnected
from ems.topology import BessUnitConfig
from policies import island
from policies.failover_plan import FailoverParams, FailoverPlan, arm

log = structlog.get_logger("ems.failover")


def _device(name: str, ep: ModbusEndpoint) -> ModbusDevice:
    return ModbusDevice(name, load_profile(ep.profile), ep.host, ep.port, ep.unit_id, ep.timeout_s)


def failover_params(cfg: SiteConfig, fc: FailoverConfig) -> FailoverParams:
    r = fc.reserve
    return FailoverParams(
        shed_order=tuple(fc.shed_order), critical_rows=frozenset(cfg.racks.critical_rows),
        min_cap_fraction=fc.min_cap_fraction, island_loading=fc.island_loading,
        overhead_fraction=fc.overhead_fraction, soc_floor=0.05 if r is None else r.soc_floor,
        bridge_s=600.0 if r is None else r.bridge_s,
        start_genset=cfg.genset is not None and fc.genset.start_after_s == 0,
    )


class FailoverManager:
    def __init__(self, cfg: SiteConfig, fc: FailoverConfig, clock: Clock, events: EventLog) -> None:
        self.cfg, self.fc, self.clock, self.events = cfg, fc, clock, events
        self.params = failover_params(cfg, fc)
        self.island_params = island.IslandParams(
            plan=self.params, reconnect_stable_s=fc.reconnect_stable_s, cap_release_s=fc.cap_release_s,
            has_genset=cfg.genset is not None, genset_start_after_s=fc.genset.start_after_s,
            genset_min_run_s=fc.genset.min_run_s, genset_charge_w=fc.genset.charge_battery_w)
        control = {u.id: PcsDriver(_device(f"{u.id}.pcs/control", u.pcs)) for u in cfg.bess_units}
        genset = None if cfg.genset is None else GensetDriver(_device("genset/control", cfg.genset))
        self._mqtt: aiomqtt.Client | None = None
        rows: dict[str, list[str]] = {}
        for rid in cfg.racks.rack_ids():
            rows.setdefault(rid.split("-")[0], []).append(rid)
        self.fast = FastPath(control, genset, self._publish, cfg.mqtt.topic_prefix, fc.budget_s, rows)
        sensor = cfg.bess_units[0].pcs
        self.watcher = GridWatcher(fc, _device(f"{cfg.bess_units[0].id}.pcs/watch", sensor),
                                   _device("meter/watch", cfg.meter), self._on_change, self._on_disturbance)
        self.state = island.IslandState()
        self.grid_ok = True
        self.riding_through: str | None = None  # the disturbance's cause while the site rides it through
        self.plan: FailoverPlan | None = None
        self.firings: list[Firing] = []
        self.may_fire: Callable[[], bool] = lambda: True  # active/standby: only the lease holder fires
        self.fired = asyncio.Event()  # set on the control loop's thread after each firing
        self._main_loop: asyncio.AbstractEventLoop | None = None
        self._fast_loop: asyncio.AbstractEventLoop | None = None
        self.client_id = cfg.mqtt.client_id  # its MQTT connection is `{client_id}-failover`
        self._fast_stop: asyncio.Event | None = None
        # the island state is written by the control loop each period and by the fast path on
        # a loss: a generation counter lets a period's update lose to a loss that came meanwhile
        self._state_lock = threading.Lock()
        self._loss_generation = 0
        self._losses_while_islanded = 0  # each one restarts the reconnect wait, even mid-period
        # grid returns, losses while islanded and disturbances can flap every sample: each would
        # be a durable (fsync'd) event on the control loop's thread. The failover itself always is
        self._event_budget = EventBudget()

    def reconfigure(self, cfg: SiteConfig) -> None:
        """A reloaded site file: new tuning from the next period (connections stay)."""
        fc = cfg.failover
        assert fc is not None
        self.cfg, self.fc = cfg, fc
        self.params = failover_params(cfg, fc)
        self.island_params = replace(
            self.island_params, plan=self.params, reconnect_stable_s=fc.reconnect_stable_s,
            cap_release_s=fc.cap_release_s, genset_start_after_s=fc.genset.start_after_s,
            genset_min_run_s=fc.genset.min_run_s, genset_charge_w=fc.genset.charge_battery_w)
        self.fast.deadline_s = fc.budget_s
        self.watcher.cfg = fc

    @property
    def islanded(self) -> bool:
        return self.state.islanded

    # --- connections -----------------------------------------------------------------
    async def _publish(self, topic: str, payload: bytes) -> None:
        client = self._mqtt
        if client is None:
            raise NotConnected("failover MQTT connection is down")
        try:
            await client.publish(topic, payload, qos=1, retain=True, timeout=1.0)  # retained: see RackCapWriter
        except aiomqtt.MqttError as exc:
            raise NotConnected(f"failover MQTT publish of {topic}: {exc}") from exc

    async def _mqtt_session(self) -> None:
        m = self.cfg.mqtt
        connect = client_kwargs(m, identifier=f"{self.client_id}-failover")  # same user and TLS as the controller
        while True:
            checkpoint()  # a stop a library swallowed (ems/model/cancel_guard)
            connect = refreshed(m, connect)  # rotated credentials and certificates
            try:
                async with aiomqtt.Client(**connect, timeout=5.0) as client:
                    client.pending_calls_threshold = 1000  # one publish per row, all at once, is the design
                    self._mqtt = client
                    await asyncio.Event().wait()
            except aiomqtt.MqttError:
                self._mqtt = None
                await asyncio.sleep(0.5)
            finally:
                self._mqtt = None

    async def _fast_main(self, ready: threading.Event) -> None:
        self._fast_loop = asyncio.get_running_loop()
        self._fast_stop = asyncio.Event()
        ready.set()
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._mqtt_session(), name="failover-mqtt"),
                     tg.create_task(self.watcher.run(), name="grid-watcher")]
            await self._fast_stop.wait()
            for t in tasks:
                t.cancel()

    async def run(self) -> None:
        """Run the watcher and fast path on their own thread until cancelled."""
        self._main_loop = asyncio.get_running_loop()
        ready = threading.Event()
        thread = threading.Thread(target=lambda: asyncio.run(self._fast_main(ready)), name="failover-fast-path",
                                  daemon=True)
        # hand the GIL over often, so the fast path's thread runs within ~0.5 ms of a wake-up
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        thread.start()
        await asyncio.to_thread(ready.wait, 10.0)
        gc.freeze()  # long-lived start-up objects out of the collector's way: shorter GC pauses
        try:
            await asyncio.Event().wait()
        finally:
            if self._fast_loop is not None and self._fast_stop is not None and not self._fast_loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    self._fast_loop.call_soon_threadsafe(self._fast_stop.set)
            await asyncio.to_thread(thread.join, 5.0)

    def _on_main(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Run `fn` on the control loop's thread (event listeners live there)."""
        loop = self._main_loop
        if loop is None or loop.is_closed():
            fn(*args, **kwargs)
        else:
            loop.call_soon_threadsafe(lambda: fn(*args, **kwargs))

    def close(self) -> None:
        for d in self.fast.pcs.values():
            d.device.close()
        if self.fast.genset is not None:
            self.fast.genset.device.close()
        for dev in (self.watcher.pcs, self.watcher.meter):
            if dev is not None:
                dev.close()

    # --- units added and removed while running (ems/unit_changes) -----------------------
    def add_unit(self, unit: BessUnitConfig) -> None:
        """A control connection for a unit added: it is in the plan from the next re-arm."""
        # a new dict by one reference assignment, as the plan is handed over: the fast path's
        # thread reads whichever it sees, never a dict being changed
        self.fast.pcs = {**self.fast.pcs, unit.id: PcsDriver(_device(f"{unit.id}.pcs/control", unit.pcs))}

    def remove_unit(self, unit_id: str) -> None:
        """Drop a unit's control connection before it is retired (a firing meanwhile skips it)."""
        driver = self.fast.pcs.get(unit_id)
        if driver is None:
            return
        self.fast.pcs = {uid: d for uid, d in self.fast.pcs.items() if uid != unit_id}
        loop = self._fast_loop  # its connection lives on the fast path's loop: closed there
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(driver.device.close)
                return
        driver.device.close()

    # --- each period -----------------------------------------------------------------
    def arm(self, snap: SiteSnapshot) -> FailoverPlan:
        """Re-arm the plan from this period's snapshot (connected operation only)."""
        self.plan = arm(snap, self.params)
        self.fast.arm(self.plan)
        return self.plan

    def island_step(self, snap: SiteSnapshot) -> island.IslandActions:
        generation, blips = self._loss_generation, self._losses_while_islanded
        actions, after = island.step(snap, self.island_params, self.state)
        with self._state_lock:
            if generation != self._loss_generation:  # the grid was lost while we computed: discard
                return island.IslandActions({}, None, None, False, None)
            if blips != self._losses_while_islanded:
                # lost again while we computed: the wait starts over, no reconnection on it (the
                # rest of the period's actions stand: a grid flapping every few ms must not
                # starve caps and genset of their periods)
                after = replace(after, islanded=True, grid_ok_since_s=None, reconnected_at_s=None,
                                release_from_w={}) if actions.reconnect else replace(after, grid_ok_since_s=None)
                actions = replace(actions, reconnect=False)
            self.state = after
        return actions

    # --- the events --------------------------------------------------------------------
    async def _on_disturbance(self, d: Disturbance) -> None:
        self.riding_through = d.cause if d.outcome == "riding" else None
        worst = {"worst_voltage_pu": None if d.worst_voltage_pu is None else round(d.worst_voltage_pu, 3),
                 "worst_frequency_pu": None if d.worst_frequency_pu is None else round(d.worst_frequency_pu, 4)}
        kind = "ride_through" if d.outcome == "riding" else "ride_through_end"
        self._record_flapping(kind, "RIDE_THROUGH", cause=d.cause, outcome=d.outcome,
                              duration_s=round(d.duration_s, 3), **worst)

    def _record_flapping(self, kind: str, reason: str | None, **data: Any) -> None:
        """Record an event of a kind that can flap, within the budget (the skipped counted)."""
        skipped = self._event_budget.take(self.clock.monotonic())
        if skipped is None:
            return
        if skipped:
            data["not_recorded_since_last"] = skipped
        self._on_main(self.events.record, kind, self.clock.wall(), reason, **data)

    async def _on_change(self, verdict: GridVerdict) -> None:
        wall = self.clock.wall()
        if verdict.ok:
            self.grid_ok = True
            self._record_flapping("grid_return", None, islanded=self.state.islanded)
            return
        self.grid_ok = False
        if self.state.islanded:
            # the reconnect wait starts again: a loss that came and went between two periods is
            # seen here only (a period samples `grid_ok` once), and a period computing meanwhile
            # may have counted the grid stable: island_step sees the count move
            with self._state_lock:
                self._losses_while_islanded += 1
                self.state = replace(self.state, grid_ok_since_s=None)
            self._record_flapping("grid_loss_while_islanded", verdict.cause)
            return
        plan = self.plan
        # islanded first, so a control period running meanwhile never commands grid-following
        with self._state_lock:
            self._loss_generation += 1
            self.state = island.on_grid_loss(self.state, self.clock.monotonic(),
                                             {} if plan is None else plan.rack_caps_w,
                                             plan is not None and plan.genset_start)
        if not self.may_fire():  # a standby (ems/ha) arms its plan but never writes
            self._on_main(self.events.record, "failover_standby", wall, verdict.cause)
            return
        firing = await self.fast.fire(verdict.at_ns, verdict.cause)
        if firing is None:
            self._on_main(self.events.record, "failover", wall, "NO_PLAN", cause=verdict.cause)
            return
        self.firings.append(firing)
        self._on_main(self.fired.set)
        # a device that never acknowledged was not commanded within the budget either
        over = (firing.last_ack_ms is None or firing.last_ack_ms > self.fc.budget_s * 1e3
                or any(e.ack_ns is None for e in firing.entries))
        errors = [e for e in firing.entries if e.error]
        self._on_main(
            self.events.record,
            "failover", wall, firing.plan.reason.code, cause=verdict.cause, last_ack_ms=firing.last_ack_ms,
            over_budget=over, budget_ms=self.fc.budget_s * 1e3, timeline=firing.timeline(),
            units=list(firing.plan.units), racks_capped=len(firing.plan.rack_caps_w),
            genset_start=firing.plan.genset_start, errors=len(errors))
        if over or errors:
            log.warning("failover over budget or incomplete", last_ack_ms=firing.last_ack_ms, errors=len(errors))

    def status(self) -> dict[str, Any]:
        plan, last = self.plan, (self.firings[-1] if self.firings else None)
        return {
            "grid_ok": self.grid_ok, "islanded": self.state.islanded, "riding_through": self.riding_through,
            "ridden_through": self.watcher.ridden_through,
            "armed": None if plan is None else {
                "reason": plan.reason.code, "units": list(plan.units), "deliverable_w": round(plan.deliverable_w),
                "island_load_w": round(plan.island_load_w), "racks_capped": len(plan.rack_caps_w),
                "shortfall_w": round(plan.shortfall_w), "genset_start": plan.genset_start},
            "last_failover_ms": None if last is None else last.last_ack_ms,
            "failovers": len(self.firings), "watcher_samples": self.watcher.samples,
            "grid_events_not_recorded": self._event_budget.skipped_total,
            "watcher_read_failures": self.watcher.read_failures, "watcher_sensors_down": self.watcher.sensors_down,
        }
