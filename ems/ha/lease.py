"""The leadership lease in a NATS JetStream key-value bucket, and the handover state beside it.

One key, `leader`, in a bucket whose TTL is the lease's life: the server removes it
`lease_ttl_s` after its last write, and only then can `create` (which fails while the key
exists) give it to someone else. The active renews with a compare-and-set on the
revision it holds; the epoch is the revision of the `create` that won the lease, so
epochs only grow (the bucket's stream sequence). The handover state is one key in a
second bucket without a TTL. Library errors stop here: `LeaseUnavailable` (NATS cannot be
reached or did not answer in time) and `LeaseLost` (someone else holds the lease).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from ems import nats_conn
from ems.ha.settings import HaConfig
from ems.model import bounded_json
from ems.model.errors import EmsError
from ems.nats_conn import connect

KEY = "leader"
STATE_KEY = "state"
T = TypeVar("T")


class LeaseError(EmsError):
    """The lease could not be taken, kept or read."""


class LeaseUnavailable(LeaseError):
    """NATS (or its JetStream) cannot be reached, or did not answer within the timeout."""


class LeaseLost(LeaseError):
    """Another controller holds the lease: ours is gone."""


@dataclass(frozen=True, slots=True)
class Holding:
    holder: str
    epoch: int  # revision of the create that won the lease
    revision: int  # revision of our latest write of the key


class KvLease:
    def __init__(self, cfg: HaConfig, site: str, holder: str) -> None:
        self.cfg, self.site, self.holder = cfg, site, holder
        self._nc: Client | None = None
        self._kv: KeyValue | None = None
        self._state: KeyValue | None = None

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected and self._kv is not None

    async def _call(self, aw: Awaitable[T]) -> T:
        try:
            # a timeout scope, not wait_for: no inner task is left to fail unobserved when the
            # caller is cancelled (nats-py's create raised "never retrieved" at a controller's stop)
            async with asyncio.timeout(self.cfg.request_timeout_s):
                return await aw
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            if isinstance(exc, nats.js.errors.KeyWrongLastSequenceError):
                raise LeaseLost(str(exc)) from exc
            raise LeaseUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def connect(self) -> None:
        """Connect (the client reconnects on its own afterwards) and open both buckets,
        creating them where they do not exist yet."""
        if self._nc is None:
            try:
                self._nc = await connect(self.cfg.nats_url, f"ems-ha-{self.holder}",
                                         max(self.cfg.request_timeout_s, 1.0), 0.2)
            except (TimeoutError, nats.errors.Error, OSError) as exc:
                raise LeaseUnavailable(f"cannot connect to {self.cfg.nats_url}: {exc}") from exc
        js = self._nc.jetstream(timeout=self.cfg.request_timeout_s)
        self._kv = await self._bucket(js, self.cfg.lease_bucket(self.site), ttl=self.cfg.lease_ttl_s)
        self._state = await self._bucket(js, self.cfg.state_bucket(self.site), ttl=None)

    async def _bucket(self, js: Any, name: str, ttl: float | None) -> KeyValue:
        try:
            kv: KeyValue = await self._call(js.key_value(name))
            return kv
        except LeaseUnavailable as exc:
            if not isinstance(exc.__cause__, nats.js.errors.BucketNotFoundError | nats.js.errors.NotFoundError):
                raise
        config = KeyValueConfig(bucket=name, history=1, ttl=ttl, storage=StorageType.FILE)
        created: KeyValue = await self._call(js.create_key_value(config))
        return created

    def _bucket_or_raise(self) -> KeyValue:
        if self._kv is None:
            raise LeaseUnavailable("not connected")
        return self._kv

    def _value(self, epoch: int) -> bytes:
        return json.dumps({"holder": self.holder, "epoch": epoch}).encode()

    async def try_acquire(self) -> Holding | None:
        """Take the lease if nobody holds it (the key is absent: never held, expired or
        released). None: someone holds it."""
        kv = self._bucket_or_raise()
        try:
            revision = await self._call(kv.create(KEY, self._value(0)))
        except LeaseLost:
            return None
        except LeaseUnavailable as exc:
            # the key expired between create's two requests (the client re-reads a key it could not
            # create): contended, not unreachable; the next poll tries again
            if isinstance(exc.__cause__, nats.js.errors.KeyNotFoundError):
                return None
            raise
        # the epoch is the create's revision; written into the value with the first renewal
        return Holding(self.holder, revision, revision)

    async def renew(self, h: Holding) -> Holding:
        """Renew with a compare-and-set on our last revision. LeaseLost when another holds it."""
        kv = self._bucket_or_raise()
        try:
            revision = await self._call(kv.update(KEY, self._value(h.epoch), last=h.revision))
        except LeaseLost:
            # a renewal that timed out may have landed after all: if the key is still ours, adopt it
            current = await self.current()
            if current is not None and current[0].get("holder") == self.holder and current[0].get("epoch") == h.epoch:
                return Holding(self.holder, h.epoch, current[1])
            raise
        return Holding(self.holder, h.epoch, revision)

    async def current(self) -> tuple[dict[str, Any], int] | None:
        """The lease's value and revision; None while nobody holds it."""
        kv = self._bucket_or_raise()
        try:
            entry = await self._call(kv.get(KEY))
        except LeaseUnavailable as exc:
            if isinstance(exc.__cause__, nats.js.errors.KeyNotFoundError):
                return None
            raise
        try:
            value = bounded_json.loads(entry.value or b"{}")
        except ValueError:  # not a lease this code wrote: nobody's we know
            value = {}
        return (value if isinstance(value, dict) else {}), int(entry.revision or 0)

    async def release(self, h: Holding) -> None:
        """Give the lease up at once (a clean stop), only if it is still ours."""
        kv = self._bucket_or_raise()
        await self._call(kv.delete(KEY, last=h.revision))

    async def put_state(self, state: dict[str, Any]) -> None:
        if self._state is None:
            raise LeaseUnavailable("not connected")
        await self._call(self._state.put(STATE_KEY, json.dumps(state, default=str, separators=(",", ":")).encode()))

    async def get_state(self) -> dict[str, Any] | None:
        if self._state is None:
            raise LeaseUnavailable("not connected")
        try:
            entry = await self._call(self._state.get(STATE_KEY))
        except LeaseUnavailable as exc:
            if isinstance(exc.__cause__, nats.js.errors.KeyNotFoundError):
                return None
            raise
        try:
            value = bounded_json.loads(entry.value or b"{}")  # nesting bounded: it is logged and stored again
        except ValueError:
            return None  # a malformed handover is no handover: the new active starts from its own state
        return value if isinstance(value, dict) else None

    async def close(self) -> None:
        nc, self._nc, self._kv, self._state = self._nc, None, None, None
        if nc is not None:
            await nats_conn.close(nc)
