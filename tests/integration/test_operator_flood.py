"""Nothing a client does starves the control loop: a flood of every operator endpoint, from
many loopback addresses and in a process of its own, while the controller shaves the
simulated site's peak. The PCS heartbeat never stalls and the site status keeps coming."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from pathlib import Path

import aiomqtt
import pytest

from drivers import rack_protocol as rp
from ems.clock import ScaledClock
from ems.config import HttpConfig
from ems.mqtt_auth import client_kwargs
from ems.operator.auth import Tokens
from ems.operator.server import serve
from tests.conftest import running_controller, running_site, shaving_site, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "flood-test-token-0123456789"
FLOOD_S = 6.0


def _gaps_s(times_ns: list[int], start_ns: int, end_ns: int) -> list[float]:
    """Gaps between consecutive times, the flood's start and end included as bounds."""
    points = [start_ns, *sorted(t for t in times_ns if start_ns <= t <= end_ns), end_ns]
    return [(b - a) / 1e9 for a, b in itertools.pairwise(points)]


async def test_a_flood_of_every_endpoint_never_stalls_the_pcs_heartbeat(broker, make_site) -> None:
    cfg = shaving_site(make_site, broker.url)
    heartbeat_timeout_s = 1.0  # the simulated PCS's (conftest): without a heartbeat it falls back to 0 W
    clock = ScaledClock(1.0)
    http = HttpConfig(enabled=True, port=0)  # the default limits
    status_ns: list[int] = []

    async def watch_status(client: aiomqtt.Client) -> None:
        async for _ in client.messages:
            status_ns.append(time.monotonic_ns())

    async with (running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl,
                serve(ctl, http, Tokens({"operator": TOKEN})) as server,
                aiomqtt.Client(**client_kwargs(cfg.mqtt, identifier="flood-test-watcher")) as watcher):
        await watcher.subscribe(rp.status_topic(cfg.mqtt.topic_prefix))
        watching = asyncio.create_task(watch_status(watcher))
        await wait_for(lambda: site.plant.battery_power_w > 300_000)  # shaving: the battery is needed
        pcs = {u.id: site.device(f"{u.id}.pcs") for u in cfg.bess_units}
        for dev in pcs.values():
            dev.writes.clear()
        periods0 = ctl.stats.periods
        late0 = len(ctl.stats.lateness_s)
        start_ns = time.monotonic_ns()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.http_flood", server.url, "--seconds", str(FLOOD_S),
            "--max-requests", "150000", "--token", TOKEN, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), FLOOD_S + 30)
        end_ns = time.monotonic_ns()
        assert proc.returncode == 0, err.decode()[-3000:]
        flood = json.loads(out)
        periods = ctl.stats.periods - periods0
        lateness_ms = sorted(x * 1e3 for x in list(ctl.stats.lateness_s)[late0:])
        # the server still answers, and the operator's view is current
        await wait_for(lambda: ctl.stats.periods > periods0 + periods + 2)
        watching.cancel()
        hold = ctl.last
        assert hold is not None and hold.step.cap_w == 1_000_000.0  # the flood changed nothing
    elapsed_s = (end_ns - start_ns) / 1e9
    print(f"flood: {flood['requests']} requests ({flood['per_s']}/s) by status {flood['by_status']}; "
          f"{periods} periods in {elapsed_s:.1f} s, lateness max {lateness_ms[-1]:.1f} ms")
    # the flood was a flood, and the limits answered it. How many requests a client process gets
    # through depends on the machine (~900 in 6 s on this 2-core one on a slow day, the same
    # commit ~1,100 on another): the bound says the flood ran; the 429s, that it went past the limits
    assert flood["requests"] >= 500, flood
    assert flood["by_status"].get("429", 0) >= flood["requests"] // 4, flood
    assert all(p in flood["by_path"] for p in ("/api/events", "/metrics", "/api/actions/set-param", "/api/stream"))
    # every PCS got its heartbeat well within its timeout, all through the flood
    for unit_id, dev in pcs.items():
        beats = [w.received_ns for w in dev.writes if w.register == "heartbeat"]
        gaps = _gaps_s(beats, start_ns, end_ns)
        print(f"{unit_id}: {len(beats)} heartbeats, longest gap {max(gaps) * 1e3:.0f} ms")
        assert max(gaps) < heartbeat_timeout_s, (unit_id, max(gaps))
    assert all(u.heartbeat_timeouts == 0 for u in site.plant.units.values())
    # the periods kept their pace, and the site status kept being published
    assert periods >= 0.8 * elapsed_s / cfg.control.period_s, (periods, elapsed_s)
    status_gaps = _gaps_s(status_ns, start_ns, end_ns)
    assert max(status_gaps) < heartbeat_timeout_s, max(status_gaps)
