"""Active/standby takeover: kill -9 the active controller, again and again.

One simulated site (`ems sim`, PCS heartbeat timeout 2 s) under two `ems run` processes on
one site file sharing a lease in NATS JetStream (ems/ha). Each round waits a random
0.2-1.2 s (so the kill lands at any phase of a period, writes in flight or not), sends
SIGKILL to whichever holds the lease, measures the time from the kill to the other's first
write in a newer epoch (its event log's `ha_writing`), checks that every event the dead
active had acknowledged (put in the handover bucket) is in the new active's log, and
starts the killed one again as the standby. At the end: PCS fallbacks (the plant's
heartbeat timeouts), epochs with two writers (both event logs), events lost.
Prints p50/p99/max; writes docs/benchmarks.md (not with --quick) and --json PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine, method_of, report_lines
from ems.broker import private_broker
from sim_devices.ha_pair import HaPair


async def main(kills: int, nats_url: str, json_path: Path | None, write: bool) -> dict[str, float]:
    rng = random.Random(14)
    takeovers: list[float] = []
    lost = failed = acked = 0
    async with private_broker("auto") as broker:
        with tempfile.TemporaryDirectory(prefix="ems-takeover-") as tmp:
            pair = HaPair(Path(tmp), broker.url, nats_url)
            try:
                await pair.start()
                for i in range(kills):
                    await asyncio.sleep(rng.uniform(0.2, 1.2))
                    kill = await pair.kill_active()
                    acked += len(kill.acknowledged)
                    got = await pair.takeover(kill)
                    if got is None:
                        failed += 1
                    else:
                        takeovers.append(got[0])
                        lost += got[1]
                    await pair.restart(kill.holder)
                    if (i + 1) % 10 == 0:
                        print(f"  {i + 1}/{kills} kills, last takeover {takeovers[-1]:.3f} s", flush=True)
                two_writers = pair.two_writer_epochs()
            finally:
                truth = await pair.stop()
    t = np.asarray(takeovers) if takeovers else np.full(1, np.nan)
    figures = {"kills": kills, "takeover_p50_s": float(np.percentile(t, 50)),
               "takeover_p99_s": float(np.percentile(t, 99)), "takeover_max_s": float(t.max()),
               "no_takeover": failed, "pcs_fallbacks": int(truth.get("heartbeat_timeouts", -1)),
               "two_writer_epochs": two_writers, "events_lost": lost,
               "events_acknowledged": acked}
    lines = [
        f"- kills of the active: {kills}; no takeover within 10 s: {failed}",
        f"- kill to the standby's first write: p50 {figures['takeover_p50_s']:.3f} s, "
        f"p99 {figures['takeover_p99_s']:.3f} s, max {figures['takeover_max_s']:.3f} s "
        f"(lease TTL 0.6 s, renewed every 0.1 s, standby polls every 0.05 s, period 0.2 s)",
        f"- PCS fallbacks (heartbeat timeout 2 s): {figures['pcs_fallbacks']}",
        f"- epochs with two writers: {two_writers}; acknowledged events lost: {lost} "
        f"(of {acked} in the handovers at the kills)",
    ]
    report_lines("takeover", "Active/standby takeover", f"Machine: {machine()}, NATS {nats_url} (JetStream, file "
                 f"store). Command: `python benchmarks/bench_takeover.py --kills {kills}`.", lines,
                 method_of(__doc__), json_path, figures, write)
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--quick", action="store_true", help="5 kills (docs left alone)")
    a = ap.parse_args()
    if a.quick:
        a.kills = 5
    asyncio.run(main(a.kills, a.nats_url, a.json, write=not a.quick))
