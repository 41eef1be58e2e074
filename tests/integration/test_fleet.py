"""The fleet on real NATS JetStream and PostgreSQL: a site's outbox through a link that goes
down and comes back, `ems fleet`'s consumer into partitioned tables, the fleet API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import nats
import psycopg
import pytest
from aiohttp import web

from ems.broker import free_port
from ems.events import EventLog
from ems.fleet.api import app
from ems.fleet.consumer import FleetConsumer
from ems.fleet.link import FleetLink
from ems.fleet.settings import FleetLinkConfig, FleetServiceConfig
from ems.fleet.store import FleetStore
from tests.nats_peer import Relay, shared_nats_or_skip, unique
from tests.pg_peer import private_database

pytestmark = pytest.mark.integration


class Fleet:
    def __init__(self, nats_url: str, dsn: str) -> None:
        self.nats_url, self.dsn = nats_url, dsn
        self.stream = unique("EMS_FLEET_T")
        self.prefix = "t" + unique("fleet").replace("_", "")
        self.service = FleetServiceConfig(nats_url=nats_url, stream=self.stream, subject_prefix=self.prefix,
                                          consumer=unique("c"), postgres_dsn=dsn, batch=200, retention_days=1)
        self.tasks: list[asyncio.Task[None]] = []
        self.consumer: FleetConsumer | None = None
        self.stop = asyncio.Event()

    def link(self, site: str, url: str, outbox: Path | None = None) -> FleetLink:
        cfg = FleetLinkConfig(nats_url=url, stream=self.stream, subject_prefix=self.prefix, retention_days=1,
                              request_timeout_s=0.5)
        link = FleetLink(cfg, site, outbox, EventLog(None), time.time)
        self.tasks.append(asyncio.create_task(link.run()))
        return link

    async def start_consumer(self) -> FleetConsumer:
        self.consumer = FleetConsumer(self.service, await FleetStore.connect(self.dsn))
        await self.consumer.connect()
        self.tasks.append(asyncio.create_task(self.consumer.run(self.stop)))
        return self.consumer

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(self.dsn) as c, c.cursor() as cur:
            await cur.execute(sql, args)
            return await cur.fetchall()

    async def close(self) -> None:
        self.stop.set()
        for t in self.tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.consumer is not None:
            await self.consumer.close()
            await self.consumer.store.close()
        nc = await nats.connect(self.nats_url)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(self.stream)
        await nc.close()


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    url = shared_nats_or_skip()
    async with private_database() as dsn:
        f = Fleet(url, dsn)
        try:
            yield f
        finally:
            await f.close()


async def until(cond: Callable[[], Any], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def status(i: int, grid_w: float = 500_000.0, flex_w: float = 200_000.0) -> dict[str, Any]:
    return {"grid_w": grid_w + i, "soc": 0.5, "mode": "grid", "reason": "PEAK_SHAVING_ACTIVE", "battery_w": 0.0,
            "alarms": [], "flex_w": flex_w}


async def test_a_link_down_for_a_while_loses_nothing_and_doubles_nothing(fleet: Fleet, tmp_path: Path) -> None:
    relay = Relay(int(fleet.nats_url.rsplit(":", 1)[1]))
    await relay.start()
    try:
        await fleet.start_consumer()
        link = fleet.link("site-a", relay.url, tmp_path / "outbox.db")
        t0 = time.time()
        for i in range(50):
            link.outbox.append("status", t0 + i, status(i))
        await until(lambda: _count(fleet, "fleet_status", 50))
        relay.cut()  # the site's link goes down; the site goes on producing
        await until(lambda: asyncio.sleep(0, link.up is False))
        for i in range(50, 300):
            link.outbox.append("status", t0 + i, status(i))
        link.outbox.append("events", t0 + 300, {"id": 1, "kind": "device_lost", "reason": "DEVICE_LOST", "data": {}})
        await asyncio.sleep(0.5)
        assert len(link.outbox) == 251  # kept locally
        relay.heal()
        await until(lambda: _count(fleet, "fleet_status", 300))
        await until(lambda: _count(fleet, "fleet_events", 1))
        rows = await fleet.rows("SELECT seq, grid_w FROM fleet_status WHERE site = 'site-a' ORDER BY seq")
        assert [r[1] for r in rows] == [500_000.0 + i for i in range(300)]  # in order, every one, once
        assert len(link.outbox) == 0
        assert link.events.count("fleet_link_down") == 1 and link.events.count("fleet_link_up") == 2
    finally:
        await relay.close()


async def test_a_replay_beyond_the_duplicate_window_is_stored_once(fleet: Fleet) -> None:
    consumer = await fleet.start_consumer()
    link = fleet.link("site-b", fleet.nats_url)
    t0 = time.time()
    for i in range(20):
        link.outbox.append("status", t0 + i, status(i))
    await until(lambda: _count(fleet, "fleet_status", 20))
    # the same messages again under their own ids, as after a crash between send and ack
    # (JetStream's window would drop them; a new stream id per message shows the table key does it too)
    nc = await nats.connect(fleet.nats_url)
    js = nc.jetstream()
    for i in range(1, 21):
        body = {"site": "site-b", "source": link.outbox.source, "seq": i, "kind": "status", "ts": t0 + i - 1,
                "body": status(i - 1)}
        await js.publish(f"{fleet.prefix}.site-b.status", json.dumps(body).encode(), headers={"Nats-Msg-Id": f"x{i}"})
    await nc.close()
    await until(lambda: asyncio.sleep(0, consumer.stats.duplicates >= 20))
    assert await fleet.rows("SELECT count(*) FROM fleet_status") == [(20,)]


async def test_malformed_messages_are_kept_aside_and_the_rest_flows(fleet: Fleet) -> None:
    consumer = await fleet.start_consumer()
    nc = await nats.connect(fleet.nats_url)
    js = nc.jetstream()
    await fleet_stream_ready(fleet)
    bad_seq = {"site": "x", "source": "s", "seq": "1", "kind": "status", "ts": 1, "body": {}}
    bad_ts = {"site": "x", "source": "s", "seq": 1, "kind": "status", "ts": 1e30, "body": {}}
    for raw in (b"not json", b"[1,2]", b'{"site": "x"}', json.dumps(bad_seq).encode(), json.dumps(bad_ts).encode()):
        await js.publish(f"{fleet.prefix}.x.status", raw)
    await nc.close()
    link = fleet.link("site-c", fleet.nats_url)
    link.outbox.append("status", time.time(), status(0))
    await until(lambda: _count(fleet, "fleet_status", 1))
    await until(lambda: _count(fleet, "fleet_rejected", 5))
    assert consumer.stats.rejected == 5


async def test_the_fleet_api_sums_the_flexibility_of_fresh_sites(fleet: Fleet) -> None:
    await fleet.start_consumer()
    now = time.time()
    for site, flex, ts in (("s1", 100_000.0, now), ("s2", 250_000.0, now), ("old", 999_000.0, now - 3600)):
        fleet.link(site, fleet.nats_url).outbox.append("status", ts, status(0, flex_w=flex))
    await until(lambda: _count(fleet, "fleet_sites", 3))
    runner = web.AppRunner(app(fleet.dsn, stale_after_s=30.0))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/api/fleet") as r:
                body = await r.json()
            async with http.get(f"http://127.0.0.1:{port}/") as r:
                page = await r.text()
        assert body["flexibility_w"] == 350_000.0 and body["stale"] == 1
        assert [s["site"] for s in body["sites"]] == ["old", "s1", "s2"]
        assert "Fleet" in page
    finally:
        await runner.cleanup()


async def test_with_a_token_the_fleet_api_needs_it(fleet: Fleet, tmp_path: Path) -> None:
    from ems.fleet.service import FleetServiceError, api_tokens
    from ems.operator.auth import Tokens

    await fleet.start_consumer()  # the tables
    token = "fleet-token-0123456789abcdef"
    runner = web.AppRunner(app(fleet.dsn, stale_after_s=30.0, tokens=Tokens({"noc": token})))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/api/fleet", "/api/sites/s1/history"):
                async with http.get(f"http://127.0.0.1:{port}{path}") as r:
                    assert r.status == 401
                async with http.get(f"http://127.0.0.1:{port}{path}", headers={"Authorization": "Bearer wrong"}) as r:
                    assert r.status == 401
                async with http.get(f"http://127.0.0.1:{port}{path}",
                                    headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    finally:
        await runner.cleanup()
    # an API open to the network is refused at start; on loopback, or with a token, it serves
    open_to_all = fleet.service.model_copy(update={"http": fleet.service.http.model_copy(update={"host": "0.0.0.0"})})
    with pytest.raises(FleetServiceError, match="open to the network"):
        api_tokens(open_to_all)
    token_file = tmp_path / "tokens"
    token_file.write_text(f"noc:{token}\n")
    with_token = open_to_all.model_copy(update={"http": open_to_all.http.model_copy(update={"token_file": token_file})})
    assert api_tokens(with_token).operator(f"Bearer {token}") == "noc"
    assert not api_tokens(fleet.service).configured  # loopback, no token: open reads, as before


async def fleet_stream_ready(fleet: Fleet) -> None:
    nc = await nats.connect(fleet.nats_url)
    try:
        await nc.jetstream().stream_info(fleet.stream)
    finally:
        await nc.close()


async def _count(fleet: Fleet, table: str, n: int) -> bool:
    return (await fleet.rows(f"SELECT count(*) FROM {table}"))[0][0] >= n


async def test_two_replicas_share_the_durable_consumer(fleet: Fleet) -> None:
    fleet.service = fleet.service.model_copy(update={"batch": 20})  # many fetches: both replicas get some
    first = await fleet.start_consumer()
    second = FleetConsumer(fleet.service, await FleetStore.connect(fleet.dsn))
    await second.connect()
    fleet.tasks.append(asyncio.create_task(second.run(fleet.stop)))
    try:
        t0 = time.time()
        for s in range(10):
            link = fleet.link(f"site-{s}", fleet.nats_url)
            for i in range(100):
                link.outbox.append("status", t0 + i, status(i))
        await until(lambda: _count(fleet, "fleet_status", 1000))
        await asyncio.sleep(0.5)
        assert await fleet.rows("SELECT count(*) FROM fleet_status") == [(1000,)]
        assert first.stats.stored + second.stats.stored == 1000
        assert first.stats.stored > 0 and second.stats.stored > 0  # JetStream shared the batches
    finally:
        await second.close()
        await second.store.close()


async def test_events_handed_over_to_a_new_active_are_stored_once(fleet: Fleet) -> None:
    """The old active sent its events; the new active was handed them over (ems/ha) and sends them
    again from its own outbox, under its own ids: one row each, by origin."""
    await fleet.start_consumer()
    old, new = fleet.link("site-h", fleet.nats_url), fleet.link("site-h", fleet.nats_url)
    old.events.context = {"ha_holder": "a", "ha_epoch": 3}
    t0 = time.time()
    sent = [old.events.record("operator_action", t0 + i, None, n=i) for i in range(5)]
    new.events.record_many([(e.kind, e.wall_s, e.reason, {**e.data, "origin": f"a:{e.id}", "handed_over_from": "a"})
                            for e in sent])
    new.events.context = {"ha_holder": "b", "ha_epoch": 4}
    new.events.record("ha_promoted", t0 + 10, None)
    await until(lambda: _count(fleet, "fleet_events", 6))
    await asyncio.sleep(0.5)  # nothing more arrives: the handed-over copies were not stored again
    rows = await fleet.rows("SELECT origin, kind FROM fleet_events WHERE site = 'site-h' ORDER BY ts")
    assert [r[0] for r in rows] == [f"a:{e.id}" for e in sent] + ["b:6"]


async def test_an_outbox_message_changed_on_disk_neither_ends_the_link_nor_holds_the_rest(tmp_path: Path) -> None:
    """A stored body that was not JSON raised out of the link's task (the controller's side task:
    the controller stopped, and again at each start once the link was up)."""
    import sqlite3

    from ems.fleet.outbox import Outbox

    url = shared_nats_or_skip()
    box = Outbox(tmp_path / "outbox.db", 100)
    for n in range(3):
        box.append("status", time.time() + n, status(n))
    box.close()
    db = sqlite3.connect(tmp_path / "outbox.db")
    with db:
        db.execute("UPDATE outbox SET body = '{\"grid_w\": 5' WHERE seq = 2")
    db.close()
    cfg = FleetLinkConfig(nats_url=url, stream=unique("EMS_FLEET_T"), subject_prefix="t" + unique("fleet").replace(
        "_", ""), retention_days=1, request_timeout_s=0.5)
    link = FleetLink(cfg, "site-a", tmp_path / "outbox.db", EventLog(None), time.time)
    task = asyncio.create_task(link.run())
    try:
        await until(lambda: asyncio.sleep(0, len(link.outbox) == 0 or task.done()))
        assert not task.done() and link.outbox.unreadable == 1  # the two good ones sent, the link up
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        nc = await nats.connect(url)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(cfg.stream)
        await nc.close()
