"""Rack telemetry ingest rate: how many rack messages per second the controller takes in.

A separate publisher process (8 connections, like row agents) sends valid rack telemetry
for `--racks` racks at `--hz` each, for `--seconds`, through a private Mosquitto (or the
embedded broker). The controller's MQTT link decodes, validates and stores them. Prints
the ingest rate, losses and CPU per message, and writes them to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, update_section, write_json
from drivers.racks import RackTelemetryStore
from ems import logs
from ems.broker import private_broker
from ems.clock import ScaledClock
from ems.config import MqttConfig
from ems.mqtt_link import MqttLink

PUBLISHER = r'''
import asyncio, sys, time
import aiomqtt
from drivers import rack_protocol as rp
host, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
racks, hz, seconds, conns = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
ids = [f"row{(i // 16) + 1:02d}-rack{(i % 16) + 1:02d}" for i in range(racks)]
async def agent(k):
    mine = ids[k::conns]
    async with aiomqtt.Client(host, port, identifier=f"bench-pub-{k}", max_queued_outgoing_messages=200000) as c:
        t0 = time.monotonic(); seq = 0
        while time.monotonic() - t0 < seconds:
            for rid in mine:
                m = rp.RackTelemetry(rid, 30000.0, None, 40000.0, "training", seq, time.time())
                await c.publish(rp.telemetry_topic(prefix, rid), rp.encode_telemetry(m))
            seq += 1
            await asyncio.sleep(max(0.0, t0 + seq / hz - time.monotonic()))
    return seq * len(mine)
async def main():
    print(sum(await asyncio.gather(*(agent(k) for k in range(conns)))))
asyncio.run(main())
'''


async def main(racks: int, hz: float, seconds: float, broker_kind: str, json_path: Path | None = None,
               write: bool = True) -> None:
    logs.configure("console", "warning")
    async with private_broker(broker_kind) as broker:
        mqtt = MqttConfig(url=broker.url, topic_prefix="ems/ingest", client_id="bench-controller")
        ids = [f"row{(i // 16) + 1:02d}-rack{(i % 16) + 1:02d}" for i in range(racks)]
        store = RackTelemetryStore(ids, 40_000.0, stale_after_s=2.0)
        link = MqttLink(mqtt, store, ScaledClock(1.0))
        task = asyncio.create_task(link.run())
        await asyncio.wait_for(link.connected.wait(), 10)
        cpu0, t0 = time.process_time(), time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PUBLISHER, broker.host, str(broker.port), mqtt.topic_prefix, str(racks),
            str(hz), str(seconds), "8", cwd=str(Path(__file__).resolve().parent.parent),
            stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        sent = int(out.decode().strip() or 0)
        # drain what is still in flight (bounded)
        last, deadline = -1, time.perf_counter() + 10
        while store.received != last and time.perf_counter() < deadline:
            last = store.received
            await asyncio.sleep(0.3)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    lines = [
        f"Telemetry ingest: {racks} racks x {hz:g} Hz for {seconds:g} s from 8 publisher connections via "
        f"{broker.kind} ({sent} messages offered).",
        f"- ingested {store.received} valid messages ({store.received / elapsed:.0f} msg/s over the run), "
        f"malformed {store.malformed}, lost {max(0, sent - store.received)}",
        f"- controller CPU: {1e6 * cpu / max(store.received, 1):.1f} µs per message "
        f"({100 * cpu / elapsed:.0f} % of one core at this rate)",
    ]
    print("\n".join(lines))
    write_json(json_path, {"racks": racks, "hz": hz, "seconds": seconds, "offered": sent, "ingested": store.received,
                           "msg_per_s": store.received / elapsed, "malformed": store.malformed,
                           "lost": max(0, sent - store.received), "cpu_us_per_msg": 1e6 * cpu / max(store.received, 1)})
    if not write:
        return
    update_section("ingest", "## Telemetry ingest\n\n" + f"Machine: {machine()}. Command: "
                   f"`python benchmarks/bench_ingest.py --racks {racks} --hz {hz:g} --seconds {seconds:g}`.\n\n"
                   + "\n".join(lines))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--racks", type=int, default=1000)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--broker", default="auto", choices=["auto", "mosquitto", "embedded"])
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--quick", action="store_true", help="200 racks for 3 s (docs left alone)")
    a = ap.parse_args()
    if a.quick:
        a.racks, a.seconds = 200, 3.0
    asyncio.run(main(a.racks, a.hz, a.seconds, a.broker, a.json, write=not a.quick))
