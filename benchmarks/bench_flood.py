"""Control period lateness and duration with the operator server flooded, and without.

The control-loop benchmark's site (100 ms periods, 4 BESS units, 256 racks at 1 Hz; the
simulated site in its own process) with the operator server on (default limits, an event
log on disk). The same run measures a quiet stretch, then a stretch of the same length
while `tests/http_flood.py`, in a process of its own, floods every endpoint from 32
loopback addresses as fast as it can, then another with the server's thread unpaced
(`server_cpu_share: 1`) to show what the pacing buys. Prints p50/p99/max and rewrites its
section of docs/benchmarks.md.
Usage: python benchmarks/bench_flood.py [--periods 600] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, percentiles_ms, spawn_site, update_section
from benchmarks.bench_control_loop import site
from ems import logs
from ems.broker import private_broker
from ems.clock import ScaledClock
from ems.config import HttpConfig, parse_config
from ems.control_loop import Controller
from ems.operator.auth import Tokens
from ems.operator.server import serve

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-flood-token-0123456789"


async def _stretch(ctl: Controller, periods: int) -> dict[str, Any]:
    """Figures over the next `periods` periods."""
    s = ctl.stats
    start, over0 = s.periods, s.overruns
    n0 = len(s.durations_s)
    while s.periods - start < periods:
        await asyncio.sleep(0.1)
    durations, lateness = list(s.durations_s)[n0:], list(s.lateness_s)[n0:]
    return {"periods": len(durations), "overruns": s.overruns - over0,
            "duration_ms": percentiles_ms(durations), "lateness_ms": percentiles_ms(lateness)}


async def _flooded(ctl: Controller, http: HttpConfig, periods: int, period_s: float) -> dict[str, Any]:
    """A stretch of `periods` periods with the server (config `http`) flooded all along."""
    async with serve(ctl, http, Tokens({"operator": TOKEN})) as server:
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.http_flood", server.url, "--seconds", str(periods * period_s + 1.0),
            "--max-requests", "10000000", "--token", TOKEN, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(0.5)  # the flood is up to speed
        stretch = await _stretch(ctl, periods)
        out, _ = await flooder.communicate()
    flood = json.loads(out)
    return {**stretch, "requests": flood["requests"], "requests_per_s": flood["per_s"],
            "by_status": flood["by_status"]}


async def main(periods: int, period_s: float, broker_kind: str) -> dict[str, Any]:
    logs.configure("console", "error")
    paced = HttpConfig(enabled=True, port=0)  # the defaults
    unpaced = paced.model_copy(update={"limits": paced.limits.model_copy(update={"server_cpu_share": 1.0})})
    async with private_broker(broker_kind) as broker:
        d = site(broker.url, period_s)
        with tempfile.TemporaryDirectory() as tmp:
            d["state"] = {"dir": str(Path(tmp) / "state")}  # the event log on disk, as on a site
            cfg = parse_config(d, "bench")
            sim, anchor, truth_path = await spawn_site(cfg.model_dump(mode="json"), Path(tmp))
            ctl = Controller(cfg, ScaledClock(1.0, anchor_monotonic=anchor))
            stop = asyncio.Event()
            task = asyncio.create_task(ctl.run(stop))
            async with serve(ctl, paced, Tokens({"operator": TOKEN})):
                await asyncio.sleep(3.0)  # warm-up: connections up, first telemetry in
                quiet = await _stretch(ctl, periods)
            flooded = await _flooded(ctl, paced, periods, period_s)
            flooded_unpaced = await _flooded(ctl, unpaced, periods, period_s)
            stop.set()
            await task
            sim.send_signal(signal.SIGTERM)
            await sim.wait()
            truth = json.loads(truth_path.read_text())
    return {"period_s": period_s, "broker": broker.kind, "server_cpu_share": paced.limits.server_cpu_share,
            "quiet": quiet, "flood": flooded, "flood_unpaced": flooded_unpaced,
            "heartbeat_timeouts": int(truth["heartbeat_timeouts"])}


def report(r: dict[str, Any], command: str) -> str:
    def line(name: str, s: dict[str, Any]) -> str:
        d, late = s["duration_ms"], s["lateness_ms"]
        return (f"| {name} | {s['periods']} | {late['p50']:.2f} | {late['p99']:.2f} | {late['max']:.2f} | "
                f"{d['p50']:.2f} | {d['p99']:.2f} | {s['overruns']} |")

    def flood(name: str, s: dict[str, Any]) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in s["by_status"].items())
        return f"- {name}: {s['requests']} requests, {s['requests_per_s']:.0f}/s; answers by status: {statuses}"

    lines = [
        f"Control loop at {r['period_s'] * 1e3:.0f} ms (4 BESS units, 256 racks at 1 Hz via {r['broker']}; site in "
        "its own process) with the operator server in its own thread (default limits, event log on disk). "
        "The flood: `tests/http_flood.py` in its own process, every endpoint, 64 connections from 32 loopback "
        "addresses.",
        "",
        "| stretch | periods | lateness p50 ms | lateness p99 ms | lateness max ms | duration p50 ms "
        "| duration p99 ms | overruns |",
        "|---|---|---|---|---|---|---|---|",
        line("quiet", r["quiet"]),
        line(f"flooded (server paced to {r['server_cpu_share']:g} of a core, the default)", r["flood"]),
        line("flooded, server unpaced (`server_cpu_share: 1`)", r["flood_unpaced"]),
        "",
        flood("flood, paced server", r["flood"]),
        flood("flood, unpaced server", r["flood_unpaced"]),
        f"- PCS heartbeat timeouts in the plant over the whole run: {r['heartbeat_timeouts']}",
        "- the same flood against the server as it was before it had a thread of its own (in the control "
        "loop's event loop, commit 2864fc9, 600 periods): lateness p99 289 ms, max 520 ms, duration p99 701 ms, "
        "74 overruns.",
    ]
    text = "\n".join(lines)
    return (f"## Control loop under an operator-server flood\n\nMachine: {machine()}. Command: `{command}`.\n\n"
            + text)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--periods", type=int, default=600, help="per stretch (quiet, then flooded)")
    ap.add_argument("--period-s", type=float, default=0.1)
    ap.add_argument("--broker", default="auto", choices=["auto", "mosquitto", "embedded"])
    ap.add_argument("--quick", action="store_true", help="120 periods a stretch: under a minute (docs left alone)")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    a = ap.parse_args()
    n = 120 if a.quick else a.periods
    result = asyncio.run(main(n, a.period_s, a.broker))
    command = "python benchmarks/bench_flood.py" + (" --quick" if a.quick else f" --periods {n}")
    body = report(result, command)
    print(body)
    if not a.quick:
        update_section("control-loop-flood", body)
    if a.json is not None:
        a.json.write_text(json.dumps(result, indent=2))
