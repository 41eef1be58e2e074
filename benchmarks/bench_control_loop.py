"""Control period duration and lateness at 100 ms with 4 BESS units and 256 racks.

The simulated site runs in its own process (as a real site would), racks publish 1 Hz
telemetry through a private Mosquitto (or the embedded broker), and the controller runs
here. Prints p50/p99/max and writes them to docs/benchmarks.md.
Usage: python benchmarks/bench_control_loop.py [--periods 600] [--period-s 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, percentiles_ms, spawn_site, update_section, write_json
from ems import logs
from ems.broker import free_port, private_broker
from ems.clock import ScaledClock
from ems.config import parse_config
from ems.control_loop import Controller


def site(mqtt_url: str, period_s: float) -> dict:
    return {
        "site": "bench",
        "control": {"period_s": period_s, "setpoint_deadband_w": 1000.0},
        "mqtt": {"url": mqtt_url, "topic_prefix": "ems/bench"},
        "meter": {"port": free_port(), "profile": "meter_v1"},
        "bess_units": [{"id": f"bess-{i + 1}", "bms": {"port": free_port(), "profile": "bms_v1"},
                        "pcs": {"port": free_port(), "profile": "pcs_v1"}} for i in range(4)],
        "racks": {"rows": 16, "racks_per_row": 16, "nameplate_w": 40_000.0, "telemetry_stale_after_s": 5.0},
        "policies": {"peak_shaving": {"grid_import_cap_w": 10e6, "recharge_below_w": 8e6, "peak_hold_s": 2.0}},
        "simulation": {"speed": 1.0, "pue": 1.25,
                       "bess": [{"capacity_wh": 8e6, "rated_power_w": 2.5e6, "initial_soc": 0.6}],
                       "racks": {"model": "training", "telemetry_period_s": 1.0}},
    }


async def main(periods: int, period_s: float, broker_kind: str, json_path: Path | None = None,
               write: bool = True) -> None:
    logs.configure("console", "warning")
    async with private_broker(broker_kind) as broker:
        cfg = parse_config(site(broker.url, period_s), "bench")
        with tempfile.TemporaryDirectory() as tmp:
            proc, anchor, _ = await spawn_site(cfg.model_dump(mode="json"), Path(tmp))
            ctl = Controller(cfg, ScaledClock(1.0, anchor_monotonic=anchor))
            stop = asyncio.Event()
            task = asyncio.create_task(ctl.run(stop))
            await asyncio.sleep(3.0)  # warm-up: connections up, first telemetry in
            ctl.stats.durations_s.clear()
            ctl.stats.lateness_s.clear()
            warm_periods, warm_overruns = ctl.stats.periods, ctl.stats.overruns
            received0, t0 = ctl.store.received, time.perf_counter()
            cpu0 = time.process_time()
            while ctl.stats.periods - warm_periods < periods:
                await asyncio.sleep(0.5)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            received = ctl.store.received - received0
            stale = ctl.last.snapshot.racks.stale_count if ctl.last else -1
            stop.set()
            await task
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    d = percentiles_ms(list(ctl.stats.durations_s))
    late = percentiles_ms(list(ctl.stats.lateness_s))
    overruns = ctl.stats.overruns - warm_overruns
    lines = [
        f"Control loop: {periods} periods of {period_s * 1e3:.0f} ms, 4 BESS units (9 Modbus devices), "
        f"256 racks at 1 Hz via {broker.kind}; site in its own process.",
        f"- period duration (gather + decide + write + publish): p50 {d['p50']:.2f} ms, p99 {d['p99']:.2f} ms, "
        f"max {d['max']:.2f} ms",
        f"- period start lateness: p50 {late['p50']:.2f} ms, p99 {late['p99']:.2f} ms, max {late['max']:.2f} ms",
        f"- overruns: {overruns}; stale racks at the end: {stale}",
        f"- rack telemetry ingested alongside: {received / elapsed:.0f} msg/s; controller process CPU "
        f"{100 * cpu / elapsed:.0f} % of one core",
    ]
    print("\n".join(lines))
    write_json(json_path, {"periods": periods, "period_s": period_s, "duration_ms": d, "lateness_ms": late,
                           "overruns": overruns, "stale_racks": stale, "telemetry_msg_per_s": received / elapsed,
                           "cpu_share": cpu / elapsed})
    if not write:
        return
    update_section("control-loop", "## Control loop\n\n" + f"Machine: {machine()}. Command: "
                   f"`python benchmarks/bench_control_loop.py --periods {periods}`.\n\n" + "\n".join(lines))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--periods", type=int, default=600)
    ap.add_argument("--period-s", type=float, default=0.1)
    ap.add_argument("--broker", default="auto", choices=["auto", "mosquitto", "embedded"])
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--quick", action="store_true", help="150 periods (docs left alone)")
    a = ap.parse_args()
    if a.quick:
        a.periods = 150
    asyncio.run(main(a.periods, a.period_s, a.broker, a.json, write=not a.quick))
