"""The simulated site: plant model + real Modbus servers + MQTT row agents, on one loop.

`SimulatedSite` serves every BMS, PCS and meter named in the site file on its own
loopback port (the endpoints the controller will poll) and publishes the racks through
the broker. The plant is stepped every `simulation.step_s` real seconds on the site
clock (which may run faster than real time). Once a second it publishes the plant's
ground truth, counterfactual included, on `{prefix}/sim/plant` (retained).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
from typing import Any

import aiomqtt
import structlog

from drivers import scheduler_protocol as sp
from drivers.errors import ProfileError
from drivers.profile import DeviceProfile
from drivers.sunspec_profile import SunSpecProfile
from ems.clock import Clock, ScaledClock
from ems.devices import check_site_profiles
from ems.model.cancel_guard import checkpoint
from ems.model.errors import ConfigError
from ems.mqtt_auth import client_kwargs_as
from plant.config import SimFillerConfig
from plant.plant import Plant
from sim_devices import registers as regs
from sim_devices.config import SimSiteConfig, SimulationConfig, simulator_passwords
from sim_devices.modbus_server import SimulatedModbusDevice
from sim_devices.rack_agents import RowAgent
from sim_devices.sunspec_plant import SunSpecBms, SunSpecPcs, SunSpecPv, meter_values
from sim_devices.sunspec_server import SimulatedSunSpecDevice

log = structlog.get_logger("sim")

# disturbances a HIL engineer can inject on the control topic: (voltage pu, frequency pu, seconds)
DIPS = {"grid_dip": (0.70, 1.0, 2.0),  # inside IEEE 1547 category II: ridden through
        "grid_dip_deep": (0.20, 1.0, 1.0),  # beyond it: the site islands
        "grid_frequency_dip": (0.97, 0.97, 10.0)}  # 48.5 Hz at 50 Hz for 10 s: ridden through
PLANT_USER = "sim-plant"  # MQTT user of the ground-truth publisher (config/mosquitto/acl)


def _servable_profiles(cfg: SimSiteConfig, source: str) -> dict[str, DeviceProfile | SunSpecProfile]:
    """Each slot's profile (as the controller checks them), and able to encode what the plant
    raises; ConfigError naming the slot otherwise. A SunSpec device serves its models."""
    profiles = check_site_profiles(cfg, source)
    for slot, profile in profiles.items():
        if isinstance(profile, SunSpecProfile):
            continue
        try:
            regs.check_servable(profile)
        except ProfileError as exc:
            raise ConfigError(f"{source}: {slot}: {exc}") from None
    return profiles


def _base(address: int | None) -> int:
    """Where a simulated SunSpec map starts: the profile's address (0 too), else 40000."""
    return 40000 if address is None else address


def _sunspec_read_only(model: int, point: str, _value: float) -> None:
    """Write handler of a SunSpec device without writable points the plant acts on."""
    raise ValueError(f"{model}.{point} is not writable on this simulated device")


def plant_topic(prefix: str) -> str:
    return f"{prefix}/sim/plant"


def control_topic(prefix: str) -> str:
    return f"{prefix}/sim/control"


class SimulatedSite:
    def __init__(self, cfg: SimSiteConfig, clock: Clock | None = None, source: str = "simulated site") -> None:
        self.cfg = cfg
        self.sim: SimulationConfig = cfg.simulation
        self.clock = clock or ScaledClock(self.sim.speed)
        racks = cfg.racks
        rack_ids = racks.rack_ids()
        rows = [rid.split("-")[0] for rid in rack_ids]
        plant_cfg = self.sim.plant()
        if cfg.meter.average_s is not None:  # the simulated meter averages as the site file says its meter does
            plant_cfg = plant_cfg.model_copy(update={"meter_average_s": cfg.meter.average_s})
        if cfg.filler is not None and plant_cfg.filler is None:  # a filler device: simulated with defaults
            plant_cfg = plant_cfg.model_copy(update={"filler": SimFillerConfig()})
        self.plant = Plant(plant_cfg, [u.id for u in cfg.bess_units], rack_ids, rows, racks.nameplate_w,
                           [g.id for g in cfg.gensets])
        self.devices: list[SimulatedModbusDevice | SimulatedSunSpecDevice] = []
        self.sunspec_pcs: dict[str, SunSpecPcs] = {}  # unit id -> its SunSpec PCS (reversion timer)
        self.sunspec_bms: dict[str, SunSpecBms] = {}
        now = self.clock.monotonic
        profiles = _servable_profiles(cfg, source)
        m = cfg.meter
        mp = profiles["meter"]
        if isinstance(mp, SunSpecProfile):
            self.devices.append(SimulatedSunSpecDevice(
                "meter", [1, 203], lambda: meter_values(self.plant.meter, self.clock.monotonic() - self.plant.now_s),
                _sunspec_read_only,
                m.host, m.port, m.unit_id, base_address=_base(mp.base_address)))
        else:
            self.devices.append(SimulatedModbusDevice(
                "meter", mp, lambda: regs.meter_values(self.plant.meter), regs.read_only, m.host, m.port, m.unit_id))
        for i, u in enumerate(cfg.bess_units):
            unit = self.plant.units[u.id]
            bms, pcs = profiles[f"bess_units.{i}.bms"], profiles[f"bess_units.{i}.pcs"]
            if isinstance(bms, SunSpecProfile):
                sbms = SunSpecBms(unit)
                self.sunspec_bms[u.id] = sbms
                self.devices.append(SimulatedSunSpecDevice(
                    f"{u.id}.bms", [1, 802, 803, 713], sbms.values, sbms.write, u.bms.host, u.bms.port,
                    u.bms.unit_id, base_address=_base(bms.base_address)))
            else:
                self.devices.append(SimulatedModbusDevice(
                    f"{u.id}.bms", bms, functools.partial(regs.bms_values, unit, bms),
                    regs.read_only, u.bms.host, u.bms.port, u.bms.unit_id))
            if isinstance(pcs, SunSpecProfile):
                spcs = SunSpecPcs(self.plant, unit, now, lambda: self.plant.meter.frequency_hz)
                self.sunspec_pcs[u.id] = spcs
                self.devices.append(SimulatedSunSpecDevice(
                    f"{u.id}.pcs", [1, 701, 702, 704], spcs.values, spcs.write, u.pcs.host, u.pcs.port,
                    u.pcs.unit_id, base_address=_base(pcs.base_address),
                    accept_codes=frozenset({pcs.write_function_code})))
            else:
                self.devices.append(SimulatedModbusDevice(
                    f"{u.id}.pcs", pcs, functools.partial(regs.pcs_values, unit, pcs),
                    regs.pcs_write(self.plant, unit, pcs, now), u.pcs.host, u.pcs.port, u.pcs.unit_id))
        if cfg.pv is not None:
            pv_ep, pv_profile = cfg.pv, profiles["pv"]
            pv_cfg = self.sim.pv
            if pv_cfg is None:
                raise ConfigError(f"{source}: pv: a simulated PV inverter needs simulation.pv")
            if isinstance(pv_profile, SunSpecProfile):
                spv = SunSpecPv(self.plant, pv_cfg.peak_w)
                self.devices.append(SimulatedSunSpecDevice(
                    "pv", [1, 701, 702, 704], spv.values, spv.write, pv_ep.host, pv_ep.port, pv_ep.unit_id,
                    base_address=_base(pv_profile.base_address)))
            else:
                self.devices.append(SimulatedModbusDevice(
                    "pv", pv_profile, functools.partial(regs.pv_values, self.plant, pv_cfg.peak_w),
                    regs.pv_write(self.plant, pv_cfg.peak_w), pv_ep.host, pv_ep.port, pv_ep.unit_id))
        served = ([("genset", "genset", cfg.genset)] if cfg.genset is not None else []) + [
            (g.id, f"gensets.{i}", g) for i, g in enumerate(cfg.gensets)]
        for gid, slot, g in served:
            genset, gp = self.plant.gensets[gid], profiles[slot]
            if not isinstance(gp, DeviceProfile):
                raise ConfigError(f"{source}: {slot}: a simulated genset has a register-map profile")
            self.devices.append(SimulatedModbusDevice(
                gid, gp, functools.partial(regs.genset_values, genset, gp),
                regs.genset_write(self.plant, gid, gp, now), g.host, g.port, g.unit_id))
        if self.plant.filler is not None and cfg.filler is not None:
            f, fp = cfg.filler, profiles["filler"]
            if not isinstance(fp, DeviceProfile):
                raise ConfigError(f"{source}: filler: a simulated filler load has a register-map profile")
            self.devices.append(SimulatedModbusDevice(
                "filler", fp, functools.partial(regs.filler_values, self.plant.filler),
                regs.filler_write(self.plant.filler, now), f.host, f.port, f.unit_id))
        self._passwords = simulator_passwords(self.sim, [*racks.row_ids(), PLANT_USER])
        interval = max(self.sim.racks.telemetry_period_s / self.sim.speed, 0.05)
        self.row_agents = [
            RowAgent(row, self.plant.racks, self._connect(row, f"sim-{cfg.mqtt.topic_prefix}-{row}"),
                     cfg.mqtt.topic_prefix, interval, self.clock.monotonic,
                     self.clock.wall() - self.clock.monotonic(), on_command=self._row_command_received)
            for row in racks.row_ids()
        ]
        for unit in self.plant.units.values():
            unit.last_heartbeat_s = self.clock.monotonic()
        self.step_overruns = 0
        self._announced: set[tuple[str, str]] = set()  # job steps the scheduler stand-in has announced
        self._started = asyncio.Event()

    def _connect(self, user: str, identifier: str) -> dict[str, Any]:
        """aiomqtt kwargs for one simulator client: logs in as `user` when the simulation names
        passwords (a row agent as its row id, so a broker ACL can confine it to its row)."""
        pw = None if self._passwords is None else self._passwords[user]
        return client_kwargs_as(self.cfg.mqtt, identifier=identifier, username=None if pw is None else user,
                                password_value=pw)

    def _row_command_received(self, row_id: str) -> None:
        self.plant.grid.receipt(f"row:{row_id}", time.monotonic_ns())

    def device(self, name: str) -> SimulatedModbusDevice | SimulatedSunSpecDevice:
        return next(d for d in self.devices if d.name == name)

    async def _step_loop(self) -> None:
        period = self.sim.step_s
        next_t = time.monotonic()
        while True:
            self.plant.advance_to(self.clock.monotonic())
            for pcs in self.sunspec_pcs.values():
                pcs.tick()  # a SunSpec PCS's reversion timer runs whether or not it is read
            next_t += period
            delay = next_t - time.monotonic()
            if delay < 0:
                self.step_overruns += 1
                next_t = time.monotonic()
            await asyncio.sleep(max(delay, 0.0))

    def control(self, action: str) -> bool:
        """Inject a fault or event now (also reachable on `{prefix}/sim/control`)."""
        p = self.plant
        if action == "grid_loss":
            p.lose_grid()
        elif action == "grid_return":
            p.restore_grid()
        elif action in DIPS:
            p.grid.disturb(p.now_s, *DIPS[action])
        elif action == "genset_fail_next_start" and p.genset is not None:
            p.genset.fail_next_start = True
        elif action == "genset_trip" and p.genset is not None:
            p.genset.trip(p.now_s)
        elif action in ("meter_freeze", "meter_unfreeze"):
            p.meter_frozen = action == "meter_freeze"
        else:
            return False
        log.info("sim control", action=action)
        return True

    async def _plant_session(self) -> None:
        """Publish the ground truth once a second; take injected events on the control topic."""
        prefix = self.cfg.mqtt.topic_prefix
        while True:
            try:
                async with aiomqtt.Client(**self._connect(PLANT_USER, f"sim-{prefix}-plant")) as client:
                    await client.subscribe(control_topic(prefix), qos=1)

                    async def publish() -> None:
                        while True:
                            checkpoint()  # a qos-1 publish can swallow the group's cancel (ems/model/cancel_guard)
                            await client.publish(plant_topic(prefix), json.dumps(self.ground_truth()), retain=True)
                            for topic, body in self._announcements():
                                await client.publish(topic, body, qos=1)
                            await asyncio.sleep(1.0)

                    async def take_commands() -> None:
                        async for message in client.messages:
                            try:
                                body = json.loads(message.payload if isinstance(message.payload, bytes) else b"")
                                ok = isinstance(body, dict) and self.control(str(body.get("action")))
                            except (ValueError, RecursionError):  # not JSON, or nested past the limit
                                ok = False
                            if not ok:
                                log.warning("sim control message ignored", payload=str(message.payload)[:100])

                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(publish())
                        tg.create_task(take_commands())
            except* aiomqtt.MqttError:
                await asyncio.sleep(0.5)

    def _announcements(self) -> list[tuple[str, bytes]]:
        """The job starts and stops due soon, each announced once, as a cluster scheduler would
        (its lead covers this session's publish interval on the accelerated clock)."""
        lead_s = self.sim.announce_jobs_s
        if lead_s <= 0:
            return []
        now = self.plant.now_s
        offset = self.clock.wall() - self.clock.monotonic()
        out = []
        for t in self.plant.racks.upcoming(now, lead_s + 2.0 * self.sim.speed):
            key = (t.job, t.event)
            if key in self._announced:
                continue
            self._announced.add(key)
            a = sp.JobAnnouncement(t.job, t.event, t.rack_ids, offset + t.at_s, t.step_w)
            out.append((sp.jobs_topic(self.cfg.mqtt.topic_prefix), sp.encode(a, len(self._announced))))
        return out

    def ground_truth(self) -> dict[str, object]:
        p = self.plant
        return {
            **p.summary(),
            "grid_power_w": p.meter.grid_power_w,
            "grid_without_battery_w": p.grid_without_battery_w,
            "racks_power_w": p.racks.total_power_w,
            "pv_w": p.pv_w,
            "units": {uid: {"soc": u.soc, "power_w": u.power_w, "mode": u.mode.value}
                      for uid, u in p.units.items()},
            "outage_records": [dataclasses.asdict(o) for o in p.grid.outages],
        }

    async def run(self) -> None:
        """Serve until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for dev in self.devices:
                await dev.start()
            tg.create_task(self._step_loop(), name="plant-step")
            for agent in self.row_agents:
                tg.create_task(agent.run(), name=f"row:{agent.row_id}")
            tg.create_task(self._plant_session(), name="plant-truth")
            log.info("simulated site up", devices=len(self.devices), racks=self.cfg.racks.count,
                     rows=len(self.row_agents), speed=self.sim.speed)
            self._started.set()
            try:
                await asyncio.Event().wait()
            finally:
                for dev in self.devices:
                    await dev.stop()

    async def wait_started(self, timeout_s: float = 10.0) -> None:
        """Wait for the Modbus servers and every row agent's MQTT connection."""
        await asyncio.wait_for(self._started.wait(), timeout_s)
        await asyncio.wait_for(asyncio.gather(*(a.connected.wait() for a in self.row_agents)), timeout_s)
