"""Token buckets per client and for all clients, and stream slots, on a clock the test moves."""

from __future__ import annotations

from ems.config import HttpLimits, RateLimit
from ems.operator.rate_limits import ClassLimiter, RequestLimits, StreamSlots, kind_of


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def _limiter(clock: Clock, *, per_s: float = 1.0, burst: int = 3, total_per_s: float = 100.0,
             total_burst: int = 100, clients: int = 16) -> ClassLimiter:
    return ClassLimiter(RateLimit(per_client_per_s=per_s, per_client_burst=burst, total_per_s=total_per_s,
                                  total_burst=total_burst), clients, clock)


def test_a_client_gets_its_burst_then_its_rate_with_a_retry_after() -> None:
    clock = Clock()
    lim = _limiter(clock, per_s=0.5, burst=3)
    assert [lim.take("a") for _ in range(3)] == [None] * 3
    refused = lim.take("a")
    assert refused is not None and refused.scope == "client" and refused.retry_after_s == 2  # 1 token at 0.5/s
    assert lim.take("b") is None  # another client has its own bucket
    clock.now_s += 2.0
    assert lim.take("a") is None and lim.take("a") is not None  # one token back, no more


def test_many_clients_together_meet_the_total() -> None:
    clock = Clock()
    lim = _limiter(clock, per_s=10, burst=10, total_per_s=1.0, total_burst=4)
    assert [lim.take(f"10.0.0.{i}") for i in range(4)] == [None] * 4
    refused = lim.take("10.0.0.9")
    assert refused is not None and refused.scope == "total" and refused.retry_after_s == 1
    # what the total refused did not cost the client: its own burst is still whole
    clock.now_s += 1.0
    assert lim.take("10.0.0.9") is None
    clock.now_s += 100.0
    results = [lim.take("10.0.0.9") for _ in range(10)]
    assert results[:4] == [None] * 4 and all(r is not None and r.scope == "total" for r in results[4:])


def test_tracked_clients_are_bounded_and_the_oldest_is_forgotten() -> None:
    clock = Clock()
    lim = _limiter(clock, burst=1, clients=16)
    assert lim.take("first") is None and lim.take("first") is not None
    for i in range(16):
        lim.take(f"other-{i}")
    assert lim.take("first") is None  # forgotten, so full again: the total still bounds all of them


def test_stream_slots_per_client_and_in_total() -> None:
    slots = StreamSlots(per_client=2, total=3)
    assert slots.acquire("a") and slots.acquire("a") and not slots.acquire("a")
    assert slots.acquire("b") and not slots.acquire("c")  # the total is spent
    slots.release("a")
    assert slots.acquire("c") and slots.count == 3


def test_every_path_has_a_class_and_the_expensive_reads_are_heavy() -> None:
    assert {kind_of(p) for p in ("/api/events", "/metrics", "/api/snapshot", "/api/history")} == {"heavy_reads"}
    assert kind_of("/api/actions/set-param") == "actions" and kind_of("/api/actions/nope") == "actions"
    assert {kind_of(p) for p in ("/", "/api/status", "/api/stream", "/static/app.js", "/nope")} == {"reads"}
    limits = RequestLimits(HttpLimits())
    assert limits.take("a", "/metrics")[0] == "heavy_reads"
