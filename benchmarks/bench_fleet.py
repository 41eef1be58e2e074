"""The fleet: N simulated sites' status at 1 Hz through NATS JetStream into PostgreSQL.

`ems fleet` (one replica, its own process) consumes a private stream into a private
database. First a backlog of messages already in the stream: how many per second one
consumer stores (from the first row stored to the last). Then N sites, each with its own
fleet link and NATS connection (ems/fleet/link.py, an outbox on disk each), send a status
every second; half of them reach NATS through a relay that is cut for the outage (10
minutes; --quick: 8 s) and then healed: their outboxes replay. At the end: end-to-end lag
(status time to the row's commit, for the sites never cut) p50/p99, and for every site
whether every status it made is stored exactly once (lost, duplicates).
Prints the figures; writes docs/benchmarks.md (not with --quick) and --json PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nats
import numpy as np
import psycopg
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, method_of, report_lines
from ems import logs
from ems.broker import free_port
from ems.events import EventLog
from ems.fleet.link import FleetLink
from ems.fleet.settings import FleetLinkConfig
from ems.fleet.subjects import ensure_stream, msg_id, subject
from sim_devices.tcp_relay import Relay


def status(i: int) -> dict[str, Any]:
    return {"grid_w": 400_000.0 + i % 1000, "soc": 0.6, "mode": "grid", "reason": "PEAK_SHAVING_ACTIVE",
            "battery_w": 50_000.0, "alarms": [], "flex_w": 150_000.0}


async def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as c, c.cursor() as cur:
        await cur.execute(sql)
        return await cur.fetchall()


async def count(dsn: str) -> int:
    try:
        return int((await rows(dsn, "SELECT count(*) FROM fleet_status"))[0][0])
    except psycopg.errors.UndefinedTable:
        return 0


async def wait_count(dsn: str, n: int, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if await count(dsn) >= n:
            return True
        await asyncio.sleep(0.2)
    return False


async def main(sites: int, backlog: int, run_s: float, outage_s: float, nats_url: str, admin_dsn: str,
               json_path: Path | None, write: bool) -> dict[str, Any]:
    db = f"ems_bench_{uuid.uuid4().hex[:10]}"
    stream, prefix = f"EMS_FLEET_B{uuid.uuid4().hex[:8]}", f"bench{uuid.uuid4().hex[:8]}"
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + db
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {db}")
    nc = await nats.connect(nats_url)
    js = nc.jetstream(timeout=10)
    await ensure_stream(js, stream, prefix, 1.0, 10)
    tmp = tempfile.TemporaryDirectory(prefix="ems-fleet-bench-")
    folder = Path(tmp.name)
    svc: asyncio.subprocess.Process | None = None
    relay = Relay(int(nats_url.rsplit(":", 1)[1]))
    links: list[FleetLink] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        # 1. a backlog in the stream, then one consumer drains it
        t0 = time.time()
        for start in range(0, backlog, 1000):
            batch = []
            for k in range(start, min(start + 1000, backlog)):
                site, seq = f"backlog-{k % sites:04d}", k // sites + 1
                body = {"site": site, "source": "bl", "seq": seq, "kind": "status", "ts": t0 - 3600 + seq,
                        "body": status(seq)}
                batch.append(js.publish(subject(prefix, site, "status"), json.dumps(body).encode(),
                                        headers={"Nats-Msg-Id": msg_id(site, "bl", seq)}))
            await asyncio.gather(*batch)
        cfg_path = folder / "fleet.yaml"
        cfg_path.write_text(yaml.safe_dump({"nats_url": nats_url, "stream": stream, "subject_prefix": prefix,
                                            "consumer": "bench", "postgres_dsn": dsn,
                                            "http": {"port": free_port()}, "retention_days": 1}))
        svc = await asyncio.create_subprocess_exec(sys.executable, "-m", "ems.cli", "fleet", "--config", str(cfg_path),
                                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        if not await wait_count(dsn, backlog, 600):
            raise RuntimeError("the consumer did not drain the backlog")
        span = (await rows(dsn, "SELECT extract(epoch FROM max(stored_at) - min(stored_at)) FROM fleet_status"))[0][0]
        msgs_per_s = backlog / max(float(span), 1e-9)

        # 2. N sites at 1 Hz, half of them cut off for the outage
        await relay.start()
        cut = set(range(0, sites, 2))
        for s in range(sites):
            url = relay.url if s in cut else nats_url
            link = FleetLink(FleetLinkConfig(nats_url=url, stream=stream, subject_prefix=prefix, retention_days=1),
                             f"site-{s:04d}", folder / f"outbox-{s}.db", EventLog(None), time.time)
            links.append(link)
            tasks.append(asyncio.create_task(link.run()))
        made = [0] * sites
        t_start = time.monotonic()
        outage_at, healed = run_s * 0.25, False
        tick = 0
        while True:
            now_s = time.monotonic() - t_start
            if now_s >= run_s + outage_s and healed:
                break
            if not relay.open and now_s >= outage_at + outage_s:
                relay.heal()
                healed = True
            elif relay.open and not healed and now_s >= outage_at:
                relay.cut()
            wall = time.time()
            for s, link in enumerate(links):
                made[s] += 1
                link.outbox.append("status", wall, status(made[s]))
                link._wake.set()
            tick += 1
            await asyncio.sleep(max(0.0, t_start + tick - time.monotonic()))
        expected = backlog + sum(made)
        drained = await wait_count(dsn, expected, 600)
        stored = await rows(dsn, "SELECT site, count(*), count(DISTINCT seq) FROM fleet_status "
                                 "WHERE site LIKE 'site-%' GROUP BY site ORDER BY site")
        per_site = {r[0]: (int(r[1]), int(r[2])) for r in stored}
        lost = sum(max(0, made[s] - per_site.get(f"site-{s:04d}", (0, 0))[1]) for s in range(sites))
        dup_rows = (await rows(dsn, "SELECT count(*) FROM (SELECT site, seq FROM fleet_status GROUP BY site, seq "
                                    "HAVING count(*) > 1) d"))[0][0]
        steady = ",".join(f"'site-{s:04d}'" for s in range(sites) if s not in cut)
        lags = [float(r[0]) for r in await rows(
            dsn, f"SELECT extract(epoch FROM stored_at - ts) FROM fleet_status WHERE site IN ({steady})")]
        lag = np.asarray(lags) if lags else np.full(1, np.nan)
        figures = {"sites": sites, "backlog": backlog, "msgs_per_s": round(msgs_per_s, 1),
                   "lag_p50_s": float(np.percentile(lag, 50)), "lag_p99_s": float(np.percentile(lag, 99)),
                   "lag_max_s": float(lag.max()), "outage_s": outage_s, "statuses_made": sum(made),
                   "buffered_sites": len(cut), "lost": lost, "duplicates": int(dup_rows), "drained": drained}
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await relay.close()
        if svc is not None and svc.returncode is None:
            svc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(svc.wait(), 15)
            except TimeoutError:
                svc.kill()
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await nc.close()
        async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as admin:
            await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        tmp.cleanup()
    lines = [
        f"- one consumer (`ems fleet`, one process) stores {figures['msgs_per_s']:.0f} status messages a second "
        f"(a backlog of {backlog} already in the stream, first row to last)",
        f"- {sites} sites at 1 Hz, each its own NATS connection and outbox: end-to-end lag (status time to the row's "
        f"commit) p50 {figures['lag_p50_s']:.3f} s, p99 {figures['lag_p99_s']:.3f} s, max {figures['lag_max_s']:.3f} s",
        f"- {len(cut)} of them cut off for {outage_s:g} s and healed: {sum(made)} statuses made, lost {lost}, "
        f"duplicates {figures['duplicates']}",
    ]
    report_lines("fleet", "Fleet", f"Machine: {machine()}, NATS {nats_url}, PostgreSQL 15. Command: "
                 f"`python benchmarks/bench_fleet.py --sites {sites} --outage-s {outage_s:g}`.", lines,
                 method_of(__doc__, "\nPrints"), json_path, figures, write)
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=200)
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--run-s", type=float, default=60.0, help="seconds of 1 Hz status besides the outage")
    ap.add_argument("--outage-s", type=float, default=600.0)
    ap.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    ap.add_argument("--pg-dsn", default="postgresql://127.0.0.1:5432/postgres",
                    help="a database to run CREATE DATABASE from")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--quick", action="store_true", help="50 sites, a 10,000 backlog, an 8 s outage (docs left alone)")
    a = ap.parse_args()
    logs.configure("console", "warning")
    if a.quick:
        a.sites, a.backlog, a.run_s, a.outage_s = 50, 10_000, 12.0, 8.0
    asyncio.run(main(a.sites, a.backlog, a.run_s, a.outage_s, a.nats_url, a.pg_dsn, a.json, write=not a.quick))
