"""Active/standby on a real NATS JetStream KV lease (the machine's server, private buckets;
a private nats-server where a test stops it; a TCP relay it cuts for a partition)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ems.broker import free_port
from ems.events import EventLog
from ems.ha.lease import KvLease, LeaseLost
from ems.ha.role import HaRole
from ems.ha.settings import HaConfig
from tests.nats_peer import PrivateNats, Relay, shared_nats_or_skip, unique

pytestmark = pytest.mark.integration


def ha_cfg(url: str, bucket: str, **kw: Any) -> HaConfig:
    return HaConfig(nats_url=url, bucket=bucket, **kw)


class Pair:
    """Two controllers' roles, each with a writer that writes every 10 ms while allowed."""

    def __init__(self) -> None:
        self.roles: dict[str, HaRole] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.writes: list[tuple[float, str, int]] = []  # (monotonic, holder, epoch)
        self.promoted: dict[str, list[dict[str, Any] | None]] = {}

    def add(self, cfg: HaConfig, holder: str, state: Callable[[], dict[str, Any]] | None = None) -> HaRole:
        self.promoted[holder] = []
        role = HaRole(cfg, "site-under-test", holder, EventLog(None), time.time,
                      state or (lambda: {}), self.promoted[holder].append)
        self.roles[holder] = role
        self.tasks[holder] = asyncio.create_task(role.run())
        self.tasks[holder + ".writer"] = asyncio.create_task(self._writer(role))
        return role

    async def _writer(self, role: HaRole) -> None:
        while True:
            if role.may_write():
                assert role.epoch is not None
                self.writes.append((time.monotonic(), role.holder, role.epoch))
                role.note_writes(1)
            await asyncio.sleep(0.01)

    async def stop(self, holder: str) -> None:
        for name in (holder + ".writer", holder):
            task = self.tasks.pop(name)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        for holder in list(self.roles):
            if holder in self.tasks:
                await self.stop(holder)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    p = Pair()
    yield p
    await p.close()


async def until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def assert_one_writer_per_epoch(writes: list[tuple[float, str, int]]) -> None:
    """No two holders in one epoch, and epochs follow each other in time without overlap."""
    holders: dict[int, set[str]] = {}
    for _, holder, epoch in writes:
        holders.setdefault(epoch, set()).add(holder)
    assert all(len(h) == 1 for h in holders.values()), holders
    spans = {e: (min(t for t, _, ep in writes if ep == e), max(t for t, _, ep in writes if ep == e)) for e in holders}
    ordered = sorted(spans)
    for a, b in itertools.pairwise(ordered):
        assert spans[a][1] < spans[b][0], f"epoch {a} still wrote after epoch {b} began"


async def test_lease_is_taken_once_and_passes_on_only_after_expiry() -> None:
    url = shared_nats_or_skip()
    cfg = ha_cfg(url, unique("lease"), lease_ttl_s=0.5, renew_every_s=0.1, guard_s=0.15, request_timeout_s=0.2)
    a, b = KvLease(cfg, "s", "a"), KvLease(cfg, "s", "b")
    await a.connect()
    await b.connect()
    try:
        held = await a.try_acquire()
        assert held is not None
        assert await b.try_acquire() is None
        for _ in range(15):  # while a renews, for three TTLs, b never gets it
            held = await a.renew(held)
            assert await b.try_acquire() is None
            await asyncio.sleep(0.1)
        assert (await b.current() or ({}, 0))[0]["holder"] == "a"
        while (taken := await b.try_acquire()) is None:  # a stops renewing: the server lets the key expire
            await asyncio.sleep(0.01)
        assert taken.epoch > held.epoch
        with pytest.raises(LeaseLost):
            await a.renew(held)
    finally:
        await a.close()
        await b.close()


async def test_standby_promotes_after_a_clean_stop_with_the_handover(pair: Pair) -> None:
    url = shared_nats_or_skip()
    cfg = ha_cfg(url, unique("handover"))
    a = pair.add(cfg, "a", lambda: {"demand": {"month_peak_w": 123.0}})
    await until(lambda: a.role == "active")
    b = pair.add(cfg, "b")
    await asyncio.sleep(0.3)
    assert b.role == "standby"
    a.events.record("operator_action", time.time(), None, action="force", by="alice")
    await asyncio.sleep(0.3)  # a renewal puts the handover with the event
    await pair.stop("a")  # a clean stop releases the lease
    await until(lambda: b.role == "active", 2.0)
    state = pair.promoted["b"][0]
    assert state is not None and state["holder"] == "a" and state["demand"]["month_peak_w"] == 123.0
    imported = b.events.query(kind="operator_action")
    assert [e.data["by"] for e in imported] == ["alice"]
    assert imported[0].data["handed_over_from"] == "a"
    promotions = b.events.query(kind="ha_promoted")  # a's own promotion came with the handover
    assert sorted(e.data["holder"] for e in promotions) == ["a", "b"]
    assert_one_writer_per_epoch(pair.writes)


async def test_partitioned_active_stops_writing_before_the_standby_writes(pair: Pair) -> None:
    url = shared_nats_or_skip()
    relay = Relay(int(url.rsplit(":", 1)[1]))
    await relay.start()
    bucket = unique("partition")
    try:
        a = pair.add(ha_cfg(relay.url, bucket), "a")  # a reaches NATS through the relay
        await until(lambda: a.role == "active" and any(h == "a" for _, h, _ in pair.writes))
        b = pair.add(ha_cfg(url, bucket), "b")
        await asyncio.sleep(0.3)
        assert b.role == "standby"
        relay.cut()  # a is cut off from NATS; b is not
        await until(lambda: b.role == "active", 3.0)
        await until(lambda: any(h == "b" for _, h, _ in pair.writes), 2.0)
        assert not a.may_write()
        assert a.events.count("ha_fenced") == 1 and a.events.count("ha_nats_down") == 1
        a_last = max(t for t, h, _ in pair.writes if h == "a")
        b_first = min(t for t, h, _ in pair.writes if h == "b")
        assert a_last < b_first
        relay.heal()  # a comes back as the standby: the lease is b's
        await until(lambda: a.nats_ok is True, 5.0)
        await asyncio.sleep(0.3)
        assert a.role == "standby" and b.role == "active"
        assert_one_writer_per_epoch(pair.writes)
    finally:
        await relay.close()



async def _one_active_again(pair: Pair, a: HaRole, b: HaRole, also: Callable[[], bool] = lambda: True) -> None:
    """NATS back: both see it, exactly one of them is active, and no epoch had two writers."""
    await until(lambda: a.nats_ok is True and b.nats_ok is True, 10.0)
    await until(lambda: [a.role, b.role].count("active") == 1 and also(), 5.0)
    await asyncio.sleep(0.5)
    assert [a.role, b.role].count("active") == 1
    assert_one_writer_per_epoch(pair.writes)

async def test_nats_down_promotes_nobody_and_the_active_says_so(pair: Pair, tmp_path: Path) -> None:
    server = PrivateNats(tmp_path / "js")
    server.start()
    try:
        cfg = ha_cfg(server.url, unique("down"))
        a = pair.add(cfg, "a")
        await until(lambda: a.role == "active")
        b = pair.add(cfg, "b")
        await asyncio.sleep(0.3)
        server.stop()
        await until(lambda: a.nats_ok is False and b.nats_ok is False, 5.0)
        await asyncio.sleep(3 * cfg.lease_ttl_s)
        assert b.role == "standby" and b.events.count("ha_promoted") == 0
        assert not a.may_write()  # fenced: it cannot know the lease is still its own
        assert a.events.count("ha_nats_down") == 1 and a.events.count("ha_fenced") == 1
        assert a.describe()["nats"] is False
        server.start()  # back: one of them holds the lease again, never both
        await _one_active_again(pair, a, b)
    finally:
        await pair.close()
        server.stop()


async def test_nats_down_with_a_peer_that_vouches_keeps_the_active_writing(pair: Pair, tmp_path: Path) -> None:
    server = PrivateNats(tmp_path / "js")
    server.start()
    try:
        bucket, pa, pb = unique("failsafe"), f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        # While NATS is down a grant must come back within ttl - guard of the last one, and a turn is
        # the failing NATS request, the ask and renew_every: with the defaults (0.6 s, 0.2 s
        # timeouts) that leaves 0.1 s, and an ask over a timeout is no grant. Both roles share one
        # event loop here, which a loaded 2-core machine starves for longer than that: a lapse
        # (a second ha_failsafe) then says nothing about the failsafe, so the timings have room.
        timings = {"lease_ttl_s": 1.5, "request_timeout_s": 0.5, "guard_s": 0.2}
        a = pair.add(ha_cfg(server.url, bucket, peer_listen=pa, peer=pb, **timings), "a")
        await until(lambda: a.role == "active")
        b = pair.add(ha_cfg(server.url, bucket, peer_listen=pb, peer=pa, **timings), "b")
        await asyncio.sleep(0.3)
        server.stop()
        await until(lambda: a.failsafe, 5.0)  # b cannot see NATS either: it vouches
        writes_before = sum(1 for _, h, _ in pair.writes if h == "a")
        await asyncio.sleep(5 * a.cfg.lease_ttl_s)  # far beyond the lease: a still writes, b never promotes
        assert sum(1 for _, h, _ in pair.writes if h == "a") > writes_before + 50
        assert a.may_write() and b.role == "standby" and b.events.count("ha_promoted") == 0
        assert a.events.count("ha_failsafe") == 1 and a.describe()["failsafe"] is True
        server.start()  # back: a takes its expired key again (a new epoch) or b takes it; never both
        await _one_active_again(pair, a, b, lambda: not a.failsafe)
    finally:
        await pair.close()
        server.stop()


async def test_a_partition_with_a_peer_still_fences_the_active(pair: Pair) -> None:
    url = shared_nats_or_skip()
    relay = Relay(int(url.rsplit(":", 1)[1]))
    await relay.start()
    bucket, pa, pb = unique("partition_peer"), f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    try:
        a = pair.add(ha_cfg(relay.url, bucket, peer_listen=pa, peer=pb), "a")
        await until(lambda: a.role == "active" and any(h == "a" for _, h, _ in pair.writes))
        b = pair.add(ha_cfg(url, bucket, peer_listen=pb, peer=pa), "b")
        await asyncio.sleep(0.3)
        relay.cut()  # a cannot see NATS, b can: b refuses to vouch
        await until(lambda: b.role == "active", 3.0)
        await until(lambda: any(h == "b" for _, h, _ in pair.writes), 2.0)
        assert not a.failsafe and a.events.count("ha_failsafe") == 0
        a_last = max(t for t, h, _ in pair.writes if h == "a")
        assert a_last < min(t for t, h, _ in pair.writes if h == "b")
        assert_one_writer_per_epoch(pair.writes)
    finally:
        await relay.close()


async def test_garbage_in_the_lease_or_the_handover_is_nobodys_never_fatal() -> None:
    """Anyone who can write the buckets: a lease value that is not JSON made the active's next
    refused renewal raise JSONDecodeError (its HA task, and the controller, ended instead of
    stepping down); a handover nested past the parser's depth did the same to the standby."""
    url = shared_nats_or_skip()
    cfg = ha_cfg(url, unique("garbage"), lease_ttl_s=2.0, renew_every_s=0.1, guard_s=0.15, request_timeout_s=0.5)
    a = KvLease(cfg, "s", "a")
    await a.connect()
    try:
        held = await a.try_acquire()
        assert held is not None
        assert a._kv is not None and a._state is not None
        await a._kv.put("leader", b"not json")  # over the lease: the revision moves on
        with pytest.raises(LeaseLost):
            await a.renew(held)
        assert await a.current() == ({}, held.revision + 1)
        await a._state.put("state", b"[" * 5000)
        assert await a.get_state() is None
    finally:
        await a.close()


async def test_a_peer_answer_nested_past_the_parsers_depth_is_no_answer() -> None:
    from ems.ha.peer import ask

    async def nested(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"[" * 3000 + b"\n")
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(nested, "127.0.0.1", port)
    try:
        assert await ask(f"127.0.0.1:{port}", {"holder": "a", "epoch": 1, "ttl_s": 1.0}, 2.0) is None
    finally:
        server.close()
        await server.wait_closed()
