"""Active or standby: the task beside the control loop that holds (or waits for) the lease.

The standby looks at the lease every `poll_every_s`; when the server has removed it
(expired or released) it creates it, reads the handover state and becomes active. The
active renews every `renew_every_s` and then puts its handover state (the month's demand,
its recent events), only while its fence still allows writes. The control loop asks
`may_write()` before it writes anything: true only while the last acknowledged renewal
leaves more than `guard_s` of lease. NATS down never promotes anybody: the standby
needs the key removed by the server; the active stops writing when its lease could run
out, and says so, and keeps reading, deciding and publishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import structlog

from ems.events import Event, EventLog
from ems.ha import peer
from ems.ha.fence import Fence
from ems.ha.lease import Holding, KvLease, LeaseLost, LeaseUnavailable
from ems.ha.settings import HaConfig
from ems.model.cancel_guard import checkpoint

log = structlog.get_logger("ems.ha")

Role = Literal["standby", "active"]


class HaRole:
    def __init__(self, cfg: HaConfig, site: str, holder: str, events: EventLog, wall: Callable[[], float],
                 state_of: Callable[[], dict[str, Any]], on_promote: Callable[[dict[str, Any] | None], None],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.holder, self.events = cfg, holder, events
        self.wall, self.monotonic = wall, monotonic
        self.state_of, self.on_promote = state_of, on_promote
        self.lease = KvLease(cfg, site, holder)
        self.fence = Fence(cfg.lease_ttl_s, cfg.guard_s)
        self.holding: Holding | None = None
        self._acquired: Holding | None = None  # won, its handover still being read: released on a stop
        self.nats_ok: bool | None = None  # None until the first attempt
        self.recent: deque[dict[str, Any]] = deque(maxlen=cfg.handover_events)
        self.imported: set[str] = set()
        self.promotions = 0
        self._writes_in_epoch = 0
        self._first_write_wall_s: float | None = None
        self._last_write_wall_s: float | None = None
        self._writing = False
        self.no_promote_until_s = -math.inf  # promised to the active while NATS is down (ems/ha/peer.py)
        self.failsafe = False  # writing on the standby's word while NATS does not answer
        self._peer_server: asyncio.Server | None = None
        # what our log already holds (after a restart too), so a handover never records an event twice
        for e in events.query(limit=1000):
            self.imported.add(str(e.data.get("origin") or f"{holder}:{e.id}"))
        events.subscribe(self._on_event)

    # --- what the control loop asks --------------------------------------------------
    @property
    def role(self) -> Role:
        return "active" if self.holding is not None else "standby"

    @property
    def epoch(self) -> int | None:
        return None if self.holding is None else self.holding.epoch

    def may_write(self) -> bool:
        ok = self.holding is not None and self.fence.may_write(self.monotonic())
        if self._writing and not ok:
            self._fenced("lease_not_renewed" if self.holding is not None else "lease_lost")
        return ok

    def note_writes(self, writes: int) -> None:
        """After a period's writes: the first write of an epoch goes into the event log."""
        if writes <= 0 or self.holding is None:
            return
        wall = self.wall()
        if not self._writing:
            self._writing = True
            self._first_write_wall_s = wall
            self._writes_in_epoch = 0
            self.events.context = {"ha_holder": self.holder, "ha_epoch": self.holding.epoch}
            self.events.record("ha_writing", wall, None, holder=self.holder, epoch=self.holding.epoch)
        self._writes_in_epoch += writes
        self._last_write_wall_s = wall

    def describe(self) -> dict[str, Any]:
        return {"role": self.role, "holder": self.holder, "epoch": self.epoch, "nats": self.nats_ok,
                "writing": self._writing, "failsafe": self.failsafe}

    # --- the task ----------------------------------------------------------------------
    async def run(self) -> None:
        try:
            if self.cfg.peer_listen is not None:
                self._peer_server = await peer.serve(self.cfg.peer_listen, self._answer_peer)
            while True:
                checkpoint()  # a stop a library swallowed (ems/model/cancel_guard)
                await self._once()
        finally:
            await self._stop()

    async def _once(self) -> None:
        try:
            if not self.lease.connected:
                await self.lease.connect()
            if self.holding is None:
                await self._try_promote()
                await asyncio.sleep(self.cfg.poll_every_s)
            else:
                await self._renew()
                await asyncio.sleep(self.cfg.renew_every_s)
            self._nats(True, None)
        except LeaseUnavailable as exc:
            self._nats(False, str(exc))
            if self.holding is not None and self.cfg.peer is not None:
                await self._failsafe()
            await asyncio.sleep(self.cfg.renew_every_s if self.holding is not None else self.cfg.poll_every_s)

    async def _failsafe(self) -> None:
        """NATS does not answer: ask the standby whether it sees NATS; write on only on its grant."""
        assert self.holding is not None and self.cfg.peer is not None
        sent = self.monotonic()
        answer = await peer.ask(self.cfg.peer, {"holder": self.holder, "epoch": self.holding.epoch,
                                                "ttl_s": self.cfg.lease_ttl_s}, self.cfg.request_timeout_s)
        granted = answer is not None and answer.get("granted") is True
        if granted:
            self.fence.renewed(sent)
        if granted != self.failsafe:
            self.failsafe = granted
            self.events.record("ha_failsafe" if granted else "ha_failsafe_refused", self.wall(), None,
                               holder=self.holder, epoch=self.holding.epoch,
                               peer=None if answer is None else answer.get("holder"))
            log.warning("NATS down: writing on the standby's word" if granted else
                        "NATS down and the standby does not vouch: stopping writes before the lease can expire")

    def _answer_peer(self, request: dict[str, Any]) -> dict[str, Any]:
        """Grant the active a lease's time only if we cannot reach NATS either and are not active."""
        granted = self.holding is None and self._acquired is None and self.nats_ok is False
        if granted:
            self.no_promote_until_s = max(self.no_promote_until_s, self.monotonic() + self.cfg.lease_ttl_s)
        return {"holder": self.holder, "role": self.role, "nats_ok": self.nats_ok, "granted": granted}

    async def _try_promote(self) -> None:
        if self.monotonic() < self.no_promote_until_s:
            return  # promised to the active while NATS was down
        sent = self.monotonic()
        h = await self.lease.try_acquire()
        if h is None:
            return
        # active (and may_write) only once the handover is in: a period that ran while get_state was
        # awaited would have written from the standby's own state, before take_over
        self._acquired = h
        try:
            state = await self.lease.get_state()
        except LeaseUnavailable:
            state = None  # the handover cannot be read: start from our own warm state, and say so
        self.fence.renewed(sent)
        self.holding, self._acquired = h, None
        self.promotions += 1
        self._import(state)
        self.on_promote(state)
        self.events.record("ha_promoted", self.wall(), None, holder=self.holder, epoch=h.epoch,
                           previous=None if state is None else state.get("holder"),
                           previous_epoch=None if state is None else state.get("epoch"),
                           handover=state is not None)
        log.warning("promoted to active", holder=self.holder, epoch=h.epoch,
                    previous=None if state is None else state.get("holder"))

    async def _renew(self) -> None:
        assert self.holding is not None
        sent = self.monotonic()
        try:
            self.holding = await self.lease.renew(self.holding)
        except LeaseLost:
            if not (self.failsafe and await self._retake()):
                self._demote("lease_lost")
            return
        if self.failsafe:
            self.failsafe = False
            self.events.record("ha_failsafe_end", self.wall(), None, holder=self.holder, epoch=self.holding.epoch)
        self.fence.renewed(sent)
        if self.fence.may_write(self.monotonic()):  # a handover that could land after expiry is not put
            await self.lease.put_state(self.handover())

    async def _retake(self) -> bool:
        """Back from a NATS outage written through on the standby's word: our key expired meanwhile.
        Take it again (a new epoch) if nobody else has; the fence from the grant still runs."""
        sent = self.monotonic()
        h = await self.lease.try_acquire()
        if h is None:
            return False
        self.fence.renewed(sent)
        old, self.holding = self.holding, h
        self.failsafe = False
        self._writing = False  # the next write is the first of the new epoch
        self.events.context = {}
        self.events.record("ha_retaken", self.wall(), None, holder=self.holder, epoch=h.epoch,
                           previous_epoch=None if old is None else old.epoch)
        return True

    def handover(self) -> dict[str, Any]:
        assert self.holding is not None
        return {"holder": self.holder, "epoch": self.holding.epoch, "wall_s": self.wall(),
                "events": list(self.recent), **self.state_of()}

    def _import(self, state: dict[str, Any] | None) -> None:
        """The old active's acknowledged events, recorded here once each (keyed by origin). An entry
        of the wrong shape is skipped (counted, logged once), never an error in the promotion."""
        if state is None:
            return
        items: list[tuple[str, float, str | None, dict[str, Any]]] = []
        given = state.get("events")
        skipped = 0 if isinstance(given, list) else int(given is not None)
        for e in given if isinstance(given, list) else []:
            if not isinstance(e, dict) or not isinstance(e.get("data"), dict):
                skipped += 1
                continue
            origin = str(e.get("origin"))
            try:
                wall_s = float(e.get("wall_s", 0.0))
            except (TypeError, ValueError, ArithmeticError):  # float() of a 400-digit integer
                wall_s = math.nan
            if not math.isfinite(wall_s):
                skipped += 1
                continue
            if origin in self.imported:
                continue
            self.imported.add(origin)
            data = {k: v for k, v in e["data"].items() if k not in ("origin", "handed_over_from")}
            reason = e.get("reason")
            items.append((str(e.get("kind")), wall_s, reason if isinstance(reason, str) else None,
                          {**data, "origin": origin, "handed_over_from": state.get("holder")}))
        if skipped:
            log.warning("handover: events of the wrong shape skipped", skipped=skipped)
        self.events.record_many(items)  # one commit for the lot: the first write must not wait on fsyncs

    def _on_event(self, event: Event) -> None:
        origin = event.data.get("origin") or f"{self.holder}:{event.id}"
        self.imported.add(str(origin))
        self.recent.append({"origin": origin, "kind": event.kind, "wall_s": event.wall_s, "reason": event.reason,
                            "data": event.data})

    def _fenced(self, why: str) -> None:
        self._writing = False
        self.events.context = {}
        self.events.record("ha_fenced", self.wall(), None, holder=self.holder,
                           epoch=None if self.holding is None else self.holding.epoch, why=why,
                           writes=self._writes_in_epoch, first_write_wall_s=self._first_write_wall_s,
                           last_write_wall_s=self._last_write_wall_s)
        log.warning("stopped writing: the lease may no longer be ours", why=why)

    def _demote(self, why: str) -> None:
        self.fence.revoke()
        if self._writing:
            self._fenced(why)
        self.holding = None
        self.events.record("ha_demoted", self.wall(), None, holder=self.holder, why=why)
        log.warning("standby: the lease is held by another controller", why=why)

    def _nats(self, ok: bool, why: str | None) -> None:
        if ok == self.nats_ok:
            return
        self.nats_ok = ok
        self.events.record("ha_nats_up" if ok else "ha_nats_down", self.wall(), None, holder=self.holder,
                           role=self.role, why=why)
        if ok:
            log.info("lease store reachable", role=self.role)
        else:
            log.warning("lease store unreachable: no takeover possible; the active stops writing before its "
                        "lease can expire", role=self.role, why=why)

    async def _stop(self) -> None:
        """A clean stop: release the lease so the standby takes over without waiting for the TTL.
        The caller has finished writing (the loop's shutdown ran first)."""
        if self._peer_server is not None:
            self._peer_server.close()
        h, self.holding = self.holding or self._acquired, None
        self.fence.revoke()
        if h is not None:
            with contextlib.suppress(LeaseUnavailable, LeaseLost):
                await self.lease.release(h)
        with contextlib.suppress(LeaseUnavailable):
            await self.lease.close()
