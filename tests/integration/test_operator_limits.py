"""The operator server's limits over loopback HTTP: per-client and total rates, stream slots,
the action queue's bound and its timeout. A controller that is built but not running is
enough: the server reads only what it published, and this test plays the control loop's
turn (`apply_pending`) where an action must be applied."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from ems.clock import ManualClock
from ems.config import HttpConfig, HttpLimits, RateLimit, parse_config
from ems.control_loop import Controller
from ems.operator.auth import Tokens
from ems.operator.server import RunningServer, serve
from tests.conftest import site_dict, wait_for

pytestmark = pytest.mark.integration

TOKEN = "limits-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CAP = "policies.peak_shaving.grid_import_cap_w"
PLENTY = RateLimit(per_client_per_s=1000, per_client_burst=1000, total_per_s=1000, total_burst=1000)


def _controller(**http: object) -> Controller:
    d = site_dict("mqtt://127.0.0.1:1", policies={"battery": {"soc_min": 0.1, "soc_max": 0.95},
                                                  "peak_shaving": {"grid_import_cap_w": 1e6,
                                                                   "recharge_below_w": 5e5}}, http=http)
    return Controller(parse_config(d, "test"), ManualClock())


@asynccontextmanager
async def _served(ctl: Controller, **limits: object) -> AsyncIterator[RunningServer]:
    http = HttpConfig(enabled=True, port=0, limits=HttpLimits(**{"reads": PLENTY, "heavy_reads": PLENTY,
                                                                 "actions": PLENTY, **limits}))
    async with serve(ctl, http, Tokens({"operator": TOKEN})) as server:
        yield server


def _client(server: RunningServer, address: str) -> aiohttp.ClientSession:
    """A client from its own loopback address: the server tells clients apart by that alone."""
    return aiohttp.ClientSession(server.url, connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def test_a_client_over_its_rate_gets_429_while_another_is_served() -> None:
    ctl = _controller()
    heavy = RateLimit(per_client_per_s=0.1, per_client_burst=3, total_per_s=1000, total_burst=1000)
    async with (_served(ctl, heavy_reads=heavy) as server, _client(server, "127.0.0.1") as a,
                _client(server, "127.0.0.2") as b):
        for _ in range(3):
            async with a.get("/metrics") as r:
                assert r.status == 200
        async with a.get("/metrics") as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
            body = await r.json()
        assert "from this client" in body["error"] and body["detail"] == []
        async with a.get("/api/health") as r:  # other classes have their own buckets
            assert r.status == 200
        async with b.get("/metrics") as r:
            assert r.status == 200
            assert 'ems_http_requests_limited_total{kind="heavy_reads",scope="client"} 1.0' in await r.text()


async def test_many_clients_together_meet_the_total_rate() -> None:
    ctl = _controller()
    reads = RateLimit(per_client_per_s=100, per_client_burst=100, total_per_s=0.1, total_burst=3)
    async with _served(ctl, reads=reads) as server:
        answers = []
        for i in range(1, 5):
            async with _client(server, f"127.0.0.{i}") as c, c.get("/api/health") as r:
                answers.append((r.status, (await r.json())["error"] if r.status != 200 else None))
    assert [s for s, _ in answers] == [200, 200, 200, 429]
    assert "all clients together" in (answers[3][1] or "")


async def test_event_streams_are_limited_per_client_and_slots_come_back() -> None:
    ctl = _controller()
    async with (_served(ctl, streams_per_client=1, streams_total=2) as server, _client(server, "127.0.0.1") as a,
                _client(server, "127.0.0.2") as b):
        first = await a.get("/api/stream")
        assert first.status == 200
        async with a.get("/api/stream") as r:
            assert r.status == 429 and r.headers["Retry-After"]
        async with b.get("/api/stream") as r:
            assert r.status == 200
        first.close()  # the browser tab goes away: its slot comes back
        await wait_for(lambda: server.surface.limits.streams.count < 2, timeout_s=5)
        async with a.get("/api/stream") as r:
            assert r.status == 200


async def test_an_action_waits_for_the_loop_and_a_full_queue_or_a_silent_loop_is_503() -> None:
    ctl = _controller(limits={"action_queue": 1})  # the queue is the controller's: its site file's bound
    body = {"param": CAP, "value": 1.2e6, "reason": "limits test"}
    async with _served(ctl, action_timeout_s=1.0) as server, _client(server, "127.0.0.1") as c:
        # the loop takes its turn while the handler waits: 200 with the loop's event
        waiting = asyncio.create_task(c.post("/api/actions/set-param", json=body, headers=AUTH))
        await wait_for(lambda: ctl.actions.pending() == 1)
        # one action waits already: the next is turned away at once
        async with c.post("/api/actions/set-param", json=body, headers=AUTH) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "1" and "busy" in (await r.json())["error"]
        assert ctl.actions.apply_pending(ctl.controls) == 1
        async with await waiting as r:
            assert r.status == 200
            event = (await r.json())["event"]
        assert event["data"]["value"] == 1.2e6 and ctl.controls.step_params.peak is not None
        assert ctl.controls.step_params.peak.grid_import_cap_w == 1.2e6
        # the loop does not answer in time: 503, and the action is withdrawn, never applied later
        again = {**body, "value": 1.3e6}
        async with c.post("/api/actions/set-param", json=again, headers=AUTH) as r:
            assert r.status == 503 and "not applied" in (await r.json())["error"]
        assert ctl.actions.apply_pending(ctl.controls) == 0
        assert ctl.controls.step_params.peak.grid_import_cap_w == 1.2e6
        # a refusal from the loop keeps its status code, and is audited
        bad = {**body, "value": -1.0}
        refused = asyncio.create_task(c.post("/api/actions/set-param", json=bad, headers=AUTH))
        await wait_for(lambda: ctl.actions.pending() == 1)
        ctl.actions.apply_pending(ctl.controls)
        async with await refused as r:
            assert r.status == 422
    statuses = [e.data["status"] for e in ctl.events.query(kind="operator_refused")]
    assert statuses == [422, 503, 503]


async def test_health_tells_a_loop_that_has_not_run() -> None:
    ctl = _controller()
    async with _served(ctl) as server, _client(server, "127.0.0.1") as c, c.get("/api/health") as r:
        health = await r.json()
        assert health["ok"] is False and health["periods"] == 0 and health["last_period_age_s"] is None
        async with c.get("/api/status") as r:
            assert r.status == 503
