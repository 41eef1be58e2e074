"""The fast path: fire the armed failover plan, concurrently, against the deadline.

No planning happens here: the control loop re-arms a precomputed plan every period.
On the event every write is started at once — the PCS mode writes first, each on its
own dedicated Modbus connection, then one cap message per row on a dedicated MQTT
connection and the genset start — and the timeline (detected, each write sent, each
acknowledged) is kept for the event log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from drivers import rack_protocol as rp
from drivers.bess import GensetDriver, PcsDriver
from ems.model.errors import EmsError
from ems.model.readings import PcsMode
from policies.failover_plan import FailoverPlan

Publish = Callable[[str, bytes], Awaitable[None]]


@dataclass
class TimelineEntry:
    device: str
    action: str
    sent_ns: int
    ack_ns: int | None = None
    error: str | None = None

    def as_dict(self, origin_ns: int) -> dict[str, Any]:
        return {"device": self.device, "action": self.action,
                "sent_ms": round((self.sent_ns - origin_ns) / 1e6, 3),
                "ack_ms": None if self.ack_ns is None else round((self.ack_ns - origin_ns) / 1e6, 3),
                "error": self.error}


@dataclass
class Firing:
    detected_ns: int
    cause: str
    plan: FailoverPlan
    entries: list[TimelineEntry] = field(default_factory=list)

    @property
    def last_ack_ms(self) -> float | None:
        acks = [e.ack_ns for e in self.entries if e.ack_ns is not None]
        return None if not acks else (max(acks) - self.detected_ns) / 1e6

    def timeline(self) -> list[dict[str, Any]]:
        return [e.as_dict(self.detected_ns) for e in self.entries]


class FastPath:
    def __init__(self, pcs: dict[str, PcsDriver], genset: GensetDriver | None, publish: Publish | None,
                 prefix: str, deadline_s: float, rows: dict[str, list[str]] | None = None) -> None:
        self.pcs = pcs  # dedicated control connections, one per unit
        self.genset = genset
        self.publish = publish
        self.prefix = prefix
        self.deadline_s = deadline_s
        self.rows = rows or {}  # row -> its racks: a cap message states the whole row (it is retained)
        self.plan: FailoverPlan | None = None
        self.seq = 0

    def arm(self, plan: FailoverPlan) -> None:
        self.plan = plan

    async def _timed(self, entry: TimelineEntry, write: Awaitable[None]) -> None:
        try:
            await write
            entry.ack_ns = time.monotonic_ns()
        except EmsError as exc:  # a failed write (driver, broker) must not stop the others
            entry.error = f"{type(exc).__name__}: {exc}"

    async def fire(self, detected_ns: int, cause: str) -> Firing | None:
        plan = self.plan
        if plan is None:
            return None
        firing = Firing(detected_ns, cause, plan)
        tasks: list[asyncio.Task[None]] = []

        def start(device: str, action: str, write: Awaitable[None]) -> None:
            entry = TimelineEntry(device, action, time.monotonic_ns())
            firing.entries.append(entry)
            tasks.append(asyncio.create_task(self._timed(entry, write)))

        for unit_id in plan.units:  # the PCS first: each request goes out before anything else
            driver = self.pcs.get(unit_id)
            if driver is not None:
                start(f"{unit_id}.pcs", "grid_forming", driver.set_mode(PcsMode.GRID_FORMING))
        if self.publish is not None:
            for row, capped in plan.rows_capped.items():
                caps = {r: plan.rack_caps_w.get(r) for r in self.rows.get(row, [])} or capped
                self.seq += 1
                start(f"row:{row}", f"caps x{len(caps)}",
                      self.publish(rp.row_caps_topic(self.prefix, row), rp.encode_row_caps(caps, self.seq)))
        if plan.genset_start and self.genset is not None:
            start("genset", "start", self.genset.start())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.deadline_s * 10)
            for t, entry in zip(tasks, firing.entries, strict=True):
                if t in pending:  # far past the deadline: give up on it, say so in the timeline
                    t.cancel()
                    entry.error = f"no answer within {self.deadline_s * 10 * 1e3:g} ms"
        return firing
