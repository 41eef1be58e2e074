"""Fault campaign: inject faults into the simulated site under control and count what survived.

Real sockets on loopback, a private Mosquitto, peak shaving discharging 2 BESS units, the
site's fleet link to a private NATS JetStream (through a relay) and a fleet consumer into
a private PostgreSQL database (through another relay).
Each round injects one fault for 1-3 s, clears it, and waits for normal operation:
Modbus exception responses, timeouts and dropped connections (BMS, PCS, meter), a PCS
trip, a frozen meter, an invalid config reload, a broker restart, a wall-clock step,
a flood of operator actions, NATS down and back, the site cut off from NATS, PostgreSQL
cut off from the fleet consumer, malformed JetStream messages, the state directory's disk
full (a tmpfs of its own, filled by a file), a restart that finds its state file corrupt. Then an active/standby pair
of `ems run` processes (sim_devices/ha_pair.py), each in a network namespace of its own
(sim_devices/netns.py; a TCP relay to NATS where namespaces cannot be made): kill -9 of the
active at a random phase (writes in flight or not), and the active's machine cut off the
network while the standby's is not (a partition). A fault is survived
when during it no rack is lost and the loop keeps running, no PCS falls back on its
heartbeat timeout unless the fault cut the controller off that PCS for longer than the
timeout (then that fallback is the designed safe state), and after it every unit is back
in service within 15 s; for the pair: the standby took over with no PCS fallback, no epoch
with two writers and no acknowledged event lost. At the end every event the controller
recorded must be in PostgreSQL (0 lost) and no status stored twice. Every period, an independent
check compares each unit's final setpoint with its safety envelope (SoC window, reserve,
BMS limits, rating, temperature derating): the count of setpoints outside must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import psycopg
import yaml
from pymodbus.constants import ExcCodes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, update_section, wait_until, write_json
from ems import logs
from ems.action_queue import QueueFull
from ems.broker import free_port, mosquitto
from ems.clock import ScaledClock
from ems.config import parse_config
from ems.control_loop import Controller
from ems.envelope import EnvelopeParams, unit_bounds
from ems.fleet.attach import attach_link
from ems.fleet.consumer import FleetConsumer
from ems.fleet.link import FleetLink
from ems.fleet.settings import FleetServiceConfig
from ems.fleet.store import FleetStore
from ems.published import PeriodResult
from sim_devices import disk
from sim_devices.config import parse_sim_config
from sim_devices.ha_pair import HaPair
from sim_devices.nats_server import NatsServer
from sim_devices.netns import NoNetns, PairNetwork
from sim_devices.secure_broker import secure_broker as make_secure_broker
from sim_devices.secure_broker import tools_missing
from sim_devices.site import PLANT_USER, SimulatedSite
from sim_devices.tcp_relay import Relay

PG_ADMIN = "postgresql://127.0.0.1:5432/postgres"

FAULTS = ["bms_exception", "pcs_timeout", "meter_drop", "pcs_trip", "meter_frozen", "bad_reload", "broker_restart",
          "bms_drop", "meter_exception", "pcs_drop", "pcs_exception", "meter_timeout", "bms_timeout", "clock_step",
          "operator_flood", "nats_down", "nats_partition", "pg_down", "malformed_jetstream", "state_disk_full",
          "corrupt_state_restart", "tls_expired", "credential_rotation"]
NEEDS_SMALL_DISK = ("state_disk_full",)
NEEDS_SECURE_BROKER = ("tls_expired", "credential_rotation")
PREFIX = "ems/faults"
MQTT_USERS = ["ems-controller", PLANT_USER, "row01", "row02", "row03", "row04"]


class CampaignBroker:
    """The site's broker: TLS, passwords and the example ACL (sim_devices/secure_broker.py) where
    mosquitto_passwd and openssl are here, else a plain loopback Mosquitto (and the TLS and
    credential kinds left out)."""

    def __init__(self, folder: Path) -> None:
        missing = tools_missing()
        folder.mkdir(parents=True, exist_ok=True)
        self.secure = None if missing else make_secure_broker(folder, PREFIX, MQTT_USERS)
        if missing:
            print(f"  no TLS broker ({missing} missing): {', '.join(NEEDS_SECURE_BROKER)} left out", file=sys.stderr)
        self.port = free_port() if self.secure is None else self.secure.port
        self._plain: contextlib.AbstractAsyncContextManager[object] | None = None

    async def start(self) -> None:
        if self.secure is not None:
            self.secure.start()
        else:
            self._plain = mosquitto(self.port)
            await self._plain.__aenter__()

    async def stop(self) -> None:
        if self.secure is not None:
            self.secure.stop()
        elif self._plain is not None:
            await self._plain.__aexit__(None, None, None)
            self._plain = None

    def site_mqtt(self) -> dict:
        if self.secure is None:
            return {"url": f"mqtt://127.0.0.1:{self.port}", "topic_prefix": PREFIX}
        return self.secure.site_mqtt()

    def sim_mqtt(self) -> dict:
        return {} if self.secure is None else {"mqtt_passwords_file": str(self.secure.dir / "sim-passwords")}
PAIR_FAULTS = ["active_kill9", "controller_partition"]
# a PCS the controller cannot reach for longer than its heartbeat timeout falls back to 0 W by design
CUTS_PCS = ("pcs_timeout", "pcs_drop", "pcs_exception")


def site(broker: CampaignBroker, nats_url: str, state_dir: Path) -> dict:
    return {
        "site": "bench-faults",
        "control": {"period_s": 0.1, "setpoint_deadband_w": 500.0, "bess_stale_after_s": 0.5,
                    "meter_stale_after_s": 0.5, "meter_frozen_s": 2.0, "meter_invalid_hold_s": 5.0},
        "mqtt": broker.site_mqtt(),
        "meter": {"port": free_port(), "profile": "meter_v1"},
        "bess_units": [{"id": f"bess-{i + 1}", "bms": {"port": free_port(), "profile": "bms_v1"},
                        "pcs": {"port": free_port(), "profile": "pcs_v1"}} for i in range(2)],
        "racks": {"rows": 4, "racks_per_row": 8, "nameplate_w": 40_000.0},
        "policies": {"battery": {"soc_min": 0.1, "soc_max": 0.95, "unit_ramp_w_per_s": 2_000_000},
                     "peak_shaving": {"grid_import_cap_w": 1_000_000.0, "recharge_below_w": 600_000.0}},
        "simulation": {"speed": 1.0, "pue": 1.25,
                       "bess": [{"capacity_wh": 4e6, "rated_power_w": 500_000, "initial_soc": 0.8,
                                 "heartbeat_timeout_s": 2.0}],
                       "racks": {"model": "steady", "steady_fraction": 0.9, "telemetry_period_s": 0.5},
                       **broker.sim_mqtt()},
        "state": {"dir": str(state_dir)},
        "fleet": {"nats_url": nats_url, "stream": "EMS_FLEET_FAULTS", "subject_prefix": "faults",
                  "retention_days": 1, "request_timeout_s": 0.5},
    }


class EnvelopeCheck:
    """Recomputes each unit's envelope from the period's own snapshot, independently of the loop."""

    def __init__(self, ctl: Controller | None) -> None:
        self.ctl = ctl  # the running controller (a new one after a restart)
        self.checked = 0
        self.outside = 0

    def __call__(self, r: PeriodResult) -> None:
        assert self.ctl is not None
        b = self.ctl.cfg.policies.battery
        p = EnvelopeParams(b.soc_min, b.soc_max, r.step.reserve_soc, b.unit_ramp_w_per_s, b.temp_derate_start_c,
                           b.temp_max_c)
        for u in r.snapshot.units:
            holding = None if u.pcs is None else u.pcs.setpoint_w  # what the PCS reported it held
            lo, hi = unit_bounds(u, p, holding, r.snapshot.period_s)
            w = r.step.unit_setpoints_w[u.unit_id]
            self.checked += 1
            if not lo - 1e-6 <= w <= hi + 1e-6:
                self.outside += 1
                print(f"  outside: {u.unit_id} {w:.0f} not in [{lo:.0f}, {hi:.0f}]", file=sys.stderr)


def _drained(link: FleetLink) -> bool:
    return link.up is True and len(link.outbox) < 5


@contextlib.asynccontextmanager
async def pair_network(tmp: Path) -> AsyncIterator[tuple[HaPair, Callable[[str], None], Callable[[str], None], str]]:
    """The pair on two network namespaces (a partition takes the active's machine off the network;
    a private broker and NATS on the bridge), or, where they cannot be made (not root), on loopback
    with a TCP relay to NATS per controller (a partition cuts the active's relay)."""
    try:
        net = PairNetwork(("a", "b")).up()
    except NoNetns as exc:
        print(f"  no network namespaces ({exc}): the partition cuts a TCP relay to NATS", file=sys.stderr)
        relays = {h: Relay(4222) for h in ("a", "b")}
        for r in relays.values():
            await r.start()
        try:
            async with mosquitto(free_port()) as broker:
                pair = HaPair(tmp, broker.url, "nats://127.0.0.1:4222", nats_urls={h: r.url for h, r in relays.items()})
                yield (pair,
                       lambda h: relays[h].cut(), lambda h: relays[h].heal(), "a TCP relay to NATS cut")
        finally:
            for r in relays.values():
                await r.close()
        return
    nats_server = NatsServer(tmp / "nats", host=net.host_ip)
    nats_server.start()
    try:
        async with mosquitto(free_port(), host=net.host_ip) as broker:
            yield (HaPair(tmp, broker.url, nats_server.url, network=net), net.cut, net.heal,
                   "the active's network namespace cut off the bridge")
    finally:
        nats_server.stop()
        net.down()


async def pair_rounds(n: int, rng: random.Random) -> tuple[dict[str, list[int]], int, int, int, str]:
    """kill -9 of the active, and the active partitioned off, `n` times each, on a pair of
    `ems run` processes over a simulated site (a private bucket)."""
    by_kind: dict[str, list[int]] = {k: [0, 0] for k in PAIR_FAULTS}
    lost_total = 0
    with tempfile.TemporaryDirectory(prefix="ems-faults-pair-") as tmp:
        async with pair_network(Path(tmp)) as (pair, cut, heal, partition):
            try:
                await pair.start()
                for i in range(2 * n):
                    kind = PAIR_FAULTS[i % 2]
                    await asyncio.sleep(rng.uniform(0.2, 1.2))  # any phase of a period: writes in flight or not
                    fenced = True
                    kill = await (pair.kill_active() if kind == "active_kill9" else pair.cut_active(cut))
                    got = await pair.takeover(kill)
                    ok = got is not None and got[1] == 0
                    if kind == "controller_partition":
                        fenced = await pair.fenced_before(kill)
                        ok = ok and fenced
                        heal(kill.holder)
                    else:
                        await pair.restart(kill.holder)
                    lost_total += 0 if got is None else got[1]
                    by_kind[kind][0] += 1
                    by_kind[kind][1] += ok
                    why = "" if ok else (f" (took over: {got is not None}, acknowledged events lost: "
                                         f"{None if got is None else got[1]}, fenced first: {fenced})")
                    print(f"  pair {kind:<21} {'survived' if ok else 'NOT survived'}{why}", file=sys.stderr, flush=True)
                two = pair.two_writer_epochs()
            finally:
                truth = await pair.stop()
    fallbacks = int(truth.get("heartbeat_timeouts", 0))
    if fallbacks or two:  # the whole pair campaign fails if any PCS fell back or two wrote in one epoch
        for v in by_kind.values():
            v[1] = 0
    return by_kind, fallbacks, two, lost_total, partition


async def main(rounds: int, seed: int, json_path: Path | None = None, write: bool = True,
               pair_rounds_n: int = 3, hold_s: tuple[float, float] = (1.0, 3.0)) -> None:
    logs.configure("console", "error")
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp())
    broker = CampaignBroker(tmp / "mqtt")
    await broker.start()
    # the state directory on a small disk of its own, to fill (root only: without it that kind is left out)
    state_disk = contextlib.ExitStack()
    try:
        state_disk.enter_context(disk.small_disk(tmp / "state", "64m"))
        faults = FAULTS
    except disk.NoSmallDisk as exc:
        print(f"  {exc}: {', '.join(NEEDS_SMALL_DISK)} left out", file=sys.stderr)
        faults = [k for k in FAULTS if k not in NEEDS_SMALL_DISK]
    if broker.secure is None:
        faults = [k for k in faults if k not in NEEDS_SECURE_BROKER]
    nats_server = NatsServer(tmp / "nats")
    nats_server.start()
    nats_relay = Relay(nats_server.port)
    await nats_relay.start()
    db = f"ems_faults_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {db}")
    pg_relay = Relay(5432)
    await pg_relay.start()
    dsn = f"postgresql://127.0.0.1:{pg_relay.port}/{db}"
    cfg = parse_config(site(broker, nats_relay.url, tmp / "state"), "bench")
    clock = ScaledClock(1.0)
    cfg_path = tmp / "site.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    sim = SimulatedSite(parse_sim_config(cfg.model_dump(mode="json"), "bench"), clock)
    sim_task = asyncio.create_task(sim.run())
    await sim.wait_started()
    assert cfg.fleet is not None
    fleet_cfg = cfg.fleet

    def start_controller() -> tuple[Controller, FleetLink, asyncio.Event, asyncio.Task[None]]:
        c = Controller(cfg, clock)
        lk = attach_link(c, fleet_cfg)
        check.ctl = c
        c.observers.append(check)
        s = asyncio.Event()
        return c, lk, s, asyncio.create_task(c.run(s))

    check = EnvelopeCheck(None)
    ctl, link, stop, task = start_controller()
    restarts = periods_before = 0  # the periods of controllers stopped by a restart
    consumer = FleetConsumer(FleetServiceConfig(nats_url=nats_server.url, stream=cfg.fleet.stream,
                                                subject_prefix=cfg.fleet.subject_prefix, postgres_dsn=dsn,
                                                retention_days=1), await FleetStore.connect(dsn))
    await consumer.connect()
    consumer_stop = asyncio.Event()
    consumer_task = asyncio.create_task(consumer.run(consumer_stop))
    plant = sim.plant

    def normal() -> bool:
        last = ctl.last
        return (last is not None and all(u.available for u in last.snapshot.units) and last.snapshot.meter is not None
                and plant.battery_power_w > 100_000)

    await wait_until(normal, 15)
    injected, survived, by_kind, fallbacks = 0, 0, {}, 0
    for i in range(rounds):
        kind = faults[i % len(faults)] if i < len(faults) else rng.choice(faults)
        unit = rng.choice(["bess-1", "bess-2"])
        lost0, hb0 = plant.summary()["lost_racks"], plant.summary()["heartbeat_timeouts"]
        periods0 = ctl.stats.periods
        rejected0 = refused = connects0 = 0
        injected += 1
        if kind == "bms_exception":
            sim.device(f"{unit}.bms").fail_with = ExcCodes.DEVICE_FAILURE
        elif kind == "meter_exception":
            sim.device("meter").fail_with = ExcCodes.DEVICE_BUSY
        elif kind == "pcs_timeout":
            sim.device(f"{unit}.pcs").delay_s = 1.5
        elif kind == "meter_drop":
            await sim.device("meter").stop()
        elif kind == "bms_drop":
            await sim.device(f"{unit}.bms").stop()
        elif kind == "pcs_trip":
            plant.units[unit].inject_fault()
        elif kind == "meter_frozen":
            sim.control("meter_freeze")
        elif kind == "bad_reload":
            bad = yaml.safe_load(cfg_path.read_text())
            bad["policies"]["peak_shaving"]["grid_import_cap_w"] = "a lot"
            bad_path = tmp / "bad.yaml"
            bad_path.write_text(yaml.safe_dump(bad))
            ctl.reload_config(bad_path)
        elif kind == "broker_restart":
            await broker.stop()
        elif kind == "tls_expired":  # the broker comes back with an expired certificate: nobody gets in
            assert broker.secure is not None
            connects0 = ctl.mqtt.connects
            await broker.stop()
            broker.secure.expire_certificate()
            await broker.start()
        elif kind == "credential_rotation":  # the controller's password rotated on both sides, the broker restarted
            assert broker.secure is not None
            connects0 = ctl.mqtt.connects
            await broker.stop()
            broker.secure.rotate_password()
            await broker.start()
        elif kind == "pcs_drop":
            await sim.device(f"{unit}.pcs").stop()
        elif kind == "pcs_exception":
            sim.device(f"{unit}.pcs").fail_with = ExcCodes.DEVICE_FAILURE
        elif kind == "meter_timeout":
            sim.device("meter").delay_s = 1.5
        elif kind == "bms_timeout":
            sim.device(f"{unit}.bms").delay_s = 1.5
        elif kind == "clock_step":  # the site's wall clock steps an hour ahead (NTP), and back when cleared
            clock.epoch_wall += 3600.0
        elif kind == "operator_flood":
            for _ in range(10_000):
                try:
                    ctl.actions.submit(lambda _c: None)
                except QueueFull:
                    refused += 1
        elif kind == "nats_down":
            nats_server.stop()
        elif kind == "nats_partition":
            nats_relay.cut()
        elif kind == "pg_down":
            pg_relay.cut()
        elif kind == "state_disk_full":  # events, state and outbox held in memory meanwhile
            filler = disk.fill(tmp / "state")
        elif kind == "corrupt_state_restart":  # a restart finds its state file corrupt: set aside, runs on
            stop.set()
            await task
            restarts += 1
            periods_before += ctl.stats.periods
            (tmp / "state" / "state.db").write_bytes(random.Random(i).randbytes(16384))
            for side in ("-wal", "-shm"):
                (tmp / "state" / f"state.db{side}").unlink(missing_ok=True)
            periods0 = 0
            ctl, link, stop, task = start_controller()
        elif kind == "malformed_jetstream":
            rejected0 = consumer.stats.rejected
            nc = await nats.connect(nats_server.url)
            for raw in (b"", b"not json", b"[]", b'{"site": 1}', b'{"kind": "status"}', b"\xff\xfe" * 100):
                await nc.jetstream().publish(f"{cfg.fleet.subject_prefix}.{cfg.site}.status", raw)
            await nc.close()
        await asyncio.sleep(rng.uniform(*hold_s))
        if kind in ("bms_exception", "meter_exception"):
            sim.device("meter").fail_with = None
            sim.device(f"{unit}.bms").fail_with = None
        elif kind == "pcs_timeout":
            sim.device(f"{unit}.pcs").delay_s = 0.0
        elif kind == "meter_drop":
            await sim.device("meter").start()
        elif kind == "bms_drop":
            await sim.device(f"{unit}.bms").start()
        elif kind == "pcs_trip":
            plant.units[unit].clear_fault()
        elif kind == "meter_frozen":
            sim.control("meter_unfreeze")
        elif kind == "broker_restart":
            await broker.start()
        elif kind == "tls_expired":  # renewed
            assert broker.secure is not None
            await broker.stop()
            broker.secure.renew_certificate()
            await broker.start()
        elif kind == "pcs_drop":
            await sim.device(f"{unit}.pcs").start()
        elif kind == "pcs_exception":
            sim.device(f"{unit}.pcs").fail_with = None
        elif kind == "meter_timeout":
            sim.device("meter").delay_s = 0.0
        elif kind == "bms_timeout":
            sim.device(f"{unit}.bms").delay_s = 0.0
        elif kind == "clock_step":
            clock.epoch_wall -= 3600.0
        elif kind == "nats_down":
            nats_server.start()
        elif kind == "nats_partition":
            nats_relay.heal()
        elif kind == "pg_down":
            pg_relay.heal()
        elif kind == "state_disk_full":
            filler.unlink()
        cleared_at = ctl.stats.periods  # judged on a period that began after the fault cleared
        back = await wait_until(lambda: ctl.stats.periods > cleared_at + 1 and normal(), 15)  # noqa: B023
        if kind in ("nats_down", "nats_partition"):  # the link is back and its backlog went out
            back = back and await wait_until(lambda: _drained(link), 30)  # noqa: B023
        if kind == "pg_down":
            back = back and await wait_until(lambda: consumer.stats.store_failures > 0 and _drained(link), 30)  # noqa: B023
        if kind in NEEDS_SECURE_BROKER:  # connected again: with the renewed certificate, the new password
            back = back and await wait_until(lambda: ctl.mqtt.connects > connects0, 30)  # noqa: B023
        if kind == "state_disk_full":  # what was held went to disk, in order
            back = back and await wait_until(
                lambda: ctl.events.unwritten == 0 and not ctl.persisted.store.disk.failing, 15)  # noqa: B023
        if kind == "corrupt_state_restart":
            back = back and ctl.events.count("state_file_set_aside") == restarts
        if kind == "malformed_jetstream":
            want = rejected0 + 6
            back = back and await wait_until(lambda: consumer.stats.rejected >= want, 15)  # noqa: B023
        if kind == "operator_flood":
            back = back and refused > 0 and await wait_until(lambda: ctl.actions.pending() == 0, 15)  # noqa: B023
        s = plant.summary()
        # a PCS the controller cannot reach for longer than its heartbeat timeout falls back to
        # 0 W standby by design: the safe outcome for that fault, not a failure, if it comes back
        fell_back = s["heartbeat_timeouts"] - hb0
        fallbacks += int(fell_back)
        ok = (back and not task.done() and ctl.stats.periods > periods0 and s["lost_racks"] == lost0
              and (fell_back == 0 or kind in CUTS_PCS))
        survived += ok
        by_kind.setdefault(kind, [0, 0])
        by_kind[kind][0] += 1
        by_kind[kind][1] += ok
        why = "" if ok else (f" (back in service: {back}, PCS fallbacks: {fell_back:g}, "
                             f"racks lost: {s['lost_racks'] - lost0:g}, loop running: {not task.done()})")
        print(f"  {i + 1:3d} {kind:<15} {'survived' if ok else 'NOT survived'}{why}", file=sys.stderr, flush=True)
    stop.set()
    await task
    # every event the controller recorded, and every status it made, is in PostgreSQL once
    pending_events = sum(1 for p in link.outbox.head(1_000_000) if p.kind == "events")  # kept for the next start
    want_events = sum(1 for e in ctl.events.query(limit=1000) if not e.kind.startswith("fleet_link_"))
    stored_events = stored_status = dup_status = 0
    for _ in range(300):
        async with await psycopg.AsyncConnection.connect(PG_ADMIN.rsplit("/", 1)[0] + "/" + db) as c:
            stored_events = (await (await c.execute("SELECT count(*) FROM fleet_events")).fetchone() or (0,))[0]
            stored_status = (await (await c.execute("SELECT count(*) FROM fleet_status")).fetchone() or (0,))[0]
            dup_status = (await (await c.execute("SELECT count(*) FROM (SELECT seq FROM fleet_status GROUP BY seq "
                                                 "HAVING count(*) > 1) d")).fetchone() or (0,))[0]
        if stored_events + pending_events >= want_events:
            break
        await asyncio.sleep(0.2)
    events_lost = max(0, want_events - stored_events - pending_events)
    consumer_stop.set()
    await consumer_task
    await consumer.close()
    await consumer.store.close()
    pair_by_kind, pair_fallbacks, pair_two_writers, pair_lost, partition = await pair_rounds(pair_rounds_n, rng)
    for k, v in pair_by_kind.items():
        by_kind[k] = v
        injected += v[0]
        survived += v[1]
    events_lost += pair_lost
    await nats_relay.close()
    await pg_relay.close()
    nats_server.stop()
    async with await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True) as admin:
        await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    sim_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sim_task
    await broker.stop()
    kinds = ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in sorted(by_kind.items()))
    lines = [
        f"Fault campaign: {len(by_kind)} kinds, {injected} faults injected, {survived} survived ({kinds}).",
        f"- events lost: {events_lost} (the controller recorded {want_events}, PostgreSQL holds {stored_events} "
        f"through the fleet link, {pending_events} wait in its outbox for the next start; the pair's handovers "
        f"lost {pair_lost}); statuses stored {stored_status}, "
        f"stored twice {dup_status}; malformed messages set aside {consumer.stats.rejected}",
        f"- active/standby: PCS fallbacks {pair_fallbacks}, epochs with two writers {pair_two_writers}; "
        f"the partition: {partition}",
        f"- setpoints outside the safety envelope: {check.outside} of {check.checked} checked "
        f"({periods_before + ctl.stats.periods} periods)",
        f"- lost racks: {plant.summary()['lost_racks']:.0f}; PCS fallbacks to 0 W standby on heartbeat timeout: "
        f"{fallbacks} (only by design: a PCS unreachable for longer than its 2 s timeout); devices lost and recovered: "
        f"{ctl.events.count('device_lost')} / {ctl.events.count('device_recovered')}",
        f"- data set aside as not trusted: {dict(ctl.reader.validity.rejected)}",
    ]
    print("\n".join(lines))
    write_json(json_path, {"kinds": len(by_kind), "injected": injected, "survived": survived, "by_kind": by_kind,
                           "events_lost": events_lost, "statuses_stored_twice": dup_status,
                           "pair_pcs_fallbacks": pair_fallbacks, "two_writer_epochs": pair_two_writers,
                           "setpoints_outside_envelope": check.outside, "setpoints_checked": check.checked,
                           "periods": periods_before + ctl.stats.periods, "lost_racks": plant.summary()["lost_racks"],
                           "heartbeat_fallbacks": fallbacks, "devices_lost": ctl.events.count("device_lost"),
                           "devices_recovered": ctl.events.count("device_recovered"),
                           "set_aside": dict(ctl.reader.validity.rejected)})
    ctl.events.close()
    state_disk.close()  # the state directory's own disk unmounted
    if not write:
        return
    update_section("faults", "## Fault campaign\n\n" + f"Machine: {machine()}. Command: "
                   f"`python benchmarks/bench_faults.py --rounds {rounds} --pair-rounds {pair_rounds_n}`.\n\n"
                   + "\n".join(lines) + "\n\n"
                   "Survived: no rack lost and the loop running during the fault, no PCS heartbeat fallback "
                   "unless the fault cut the controller off that PCS for longer than its timeout, and "
                   "every unit back in service within 15 s after it cleared; for the fleet faults also the link "
                   "up again with its backlog sent (NATS), the batch stored after PostgreSQL returned, the "
                   "malformed messages set aside; for the pair, the standby writing in a newer epoch with every "
                   "acknowledged event, the cut-off active fenced before it, no PCS fallback and no epoch with "
                   "two writers. After every period the check "
                   "recomputes each unit's bounds from that period's snapshot (the envelope's definition, "
                   "ems/envelope.py) and compares the setpoint the loop wrote; tests/unit/test_validity_envelope.py "
                   "states the envelope "
                   "a second, independent way and checks it with hypothesis.")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=57)
    ap.add_argument("--pair-rounds", type=int, default=3, help="kills and partitions of the active, each")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--quick", action="store_true", help="each kind once, held 0.8-1 s (docs left alone)")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.pair_rounds = len(FAULTS), 1
    asyncio.run(main(a.rounds, a.seed, a.json, write=not a.quick, pair_rounds_n=a.pair_rounds,
                     hold_s=(0.8, 1.0) if a.quick else (1.0, 3.0)))
