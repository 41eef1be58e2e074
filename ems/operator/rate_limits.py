"""How much any client may ask of the operator server: token buckets and stream slots.

Each request falls in one class (reads, heavy reads, actions; docs/operator.md lists the
paths) and takes a token from its client's bucket, then one from the bucket all clients
share: one client cannot flood, and many cannot add up to a flood. Clients are keyed by
the TCP peer's address, never by a header a client writes (X-Forwarded-For is whatever
the client says); behind a proxy all its clients are one, so limit at the proxy too.
Per-client buckets are kept for the most recent `clients_tracked` addresses; one that is
dropped comes back full, which the shared bucket still bounds. Open event streams are
counted per client and in total. Everything here runs on the server's own thread: no locks.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ems.config import HttpLimits, RateLimit

Kind = Literal["reads", "heavy_reads", "actions"]
HEAVY_READS = frozenset({"/api/events", "/metrics", "/api/snapshot", "/api/history"})
ACTIONS_PREFIX = "/api/actions/"


def kind_of(path: str) -> Kind:
    if path.startswith(ACTIONS_PREFIX):
        return "actions"
    return "heavy_reads" if path in HEAVY_READS else "reads"


@dataclass(slots=True)
class TokenBucket:
    per_s: float
    burst: float
    tokens: float
    at_s: float

    def take(self, now_s: float) -> float:
        """0.0 when a token was taken, else the seconds until one will be there."""
        self.tokens = min(self.burst, self.tokens + (now_s - self.at_s) * self.per_s)
        self.at_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_s


@dataclass(frozen=True, slots=True)
class Refusal:
    scope: Literal["client", "total"]
    retry_after_s: int  # whole seconds, at least 1 (the Retry-After header)


class ClassLimiter:
    """One class of requests: a bucket per client (LRU-bounded) and one for all."""

    def __init__(self, limit: RateLimit, clients_tracked: int, now: Callable[[], float]) -> None:
        self.limit = limit
        self.clients_tracked = clients_tracked
        self.now = now
        self._clients: OrderedDict[str, TokenBucket] = OrderedDict()
        self._total = TokenBucket(limit.total_per_s, limit.total_burst, limit.total_burst, now())

    def take(self, client: str) -> Refusal | None:
        now = self.now()
        bucket = self._clients.get(client)
        if bucket is None:
            lim = self.limit
            bucket = TokenBucket(lim.per_client_per_s, lim.per_client_burst, lim.per_client_burst, now)
            self._clients[client] = bucket
            if len(self._clients) > self.clients_tracked:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
        wait = bucket.take(now)
        if wait:
            return Refusal("client", max(1, math.ceil(wait)))
        wait = self._total.take(now)
        if wait:
            bucket.tokens += 1.0  # what the shared bucket refused does not count against the client
            return Refusal("total", max(1, math.ceil(wait)))
        return None


class StreamSlots:
    """Open event streams, per client and in total."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client, self.total = per_client, total
        self._open: dict[str, int] = {}
        self.count = 0

    def acquire(self, client: str) -> bool:
        if self.count >= self.total or self._open.get(client, 0) >= self.per_client:
            return False
        self._open[client] = self._open.get(client, 0) + 1
        self.count += 1
        return True

    def release(self, client: str) -> None:
        n = self._open.get(client, 0) - 1
        if n > 0:
            self._open[client] = n
        else:
            self._open.pop(client, None)
        self.count -= 1


class RequestLimits:
    def __init__(self, limits: HttpLimits, now: Callable[[], float] = time.monotonic) -> None:
        self.by_kind: dict[Kind, ClassLimiter] = {
            "reads": ClassLimiter(limits.reads, limits.clients_tracked, now),
            "heavy_reads": ClassLimiter(limits.heavy_reads, limits.clients_tracked, now),
            "actions": ClassLimiter(limits.actions, limits.clients_tracked, now),
        }
        self.streams = StreamSlots(limits.streams_per_client, limits.streams_total)

    def take(self, client: str, path: str) -> tuple[Kind, Refusal | None]:
        kind = kind_of(path)
        return kind, self.by_kind[kind].take(client)
