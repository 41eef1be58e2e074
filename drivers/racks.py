"""GPU rack telemetry ingest and cap commands over MQTT.

Telemetry lands in preallocated arrays indexed by rack (ingest is ~O(1) per message);
a snapshot copies them with each rack's age. A rack whose stream is missing or stale is
never read as 0 W: the conservative estimate assumes it draws its cap or nameplate.
Malformed messages are rejected, counted, and logged once per rack until it recovers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import numpy as np
import structlog

from drivers import rack_protocol as rp
from drivers.errors import MalformedData
from ems.model.racks import FloatArray, RacksReading, SmoothingProfile

log = structlog.get_logger("drivers.racks")

NAMEPLATE_MARGIN = 1.1  # a rack may draw a little over its nameplate (PSU transients), not more

class RackTelemetryStore:
    def __init__(self, rack_ids: list[str], nameplate_w: float, stale_after_s: float) -> None:
        n = len(rack_ids)
        self.rack_ids = tuple(rack_ids)
        self.rows = tuple(r.split("-")[0] for r in rack_ids)
        self.index = {rid: i for i, rid in enumerate(rack_ids)}
        self.stale_after_s = stale_after_s
        self.power_w: FloatArray = np.full(n, np.nan)
        self.cap_w: FloatArray = np.full(n, np.nan)
        self.nameplate_w: FloatArray = np.full(n, float(nameplate_w))
        self.received_at_s: FloatArray = np.full(n, -np.inf)
        self.last_seq = np.full(n, -1, dtype=np.int64)
        self.received = 0
        self.malformed = 0
        self.unknown = 0
        self._bad: set[int] = set()  # racks whose last message was malformed (log once)

    def ingest(self, topic: str, payload: bytes, now_s: float) -> bool:
        """Take one telemetry message. Returns False (and counts it) if rejected."""
        try:
            rack_id = rp.rack_id_from_topic(topic)
        except MalformedData:
            self.malformed += 1
            return False
        i = self.index.get(rack_id)
        if i is None:
            self.unknown += 1
            return False
        try:
            t = rp.decode_telemetry(rack_id, payload)
            # the site file's nameplate rules, not the rack's own claim: a rack reporting far
            # beyond it (a fault, or a lie) must not move the site's load estimate
            limit_w = NAMEPLATE_MARGIN * self.nameplate_w[i]
            if t.power_w > limit_w or (t.cap_w is not None and t.cap_w > limit_w):
                raise MalformedData(f"power {t.power_w:g} W or cap {t.cap_w} W beyond the configured nameplate "
                                    f"{self.nameplate_w[i]:g} W")
        except MalformedData as exc:
            self.malformed += 1
            if i not in self._bad:
                self._bad.add(i)
                log.warning("rack telemetry rejected", rack=rack_id, error=str(exc))
            return False
        if i in self._bad:
            self._bad.discard(i)
            log.info("rack telemetry valid again", rack=rack_id)
        self.power_w[i] = t.power_w
        self.cap_w[i] = np.nan if t.cap_w is None else t.cap_w
        self.received_at_s[i] = now_s
        self.last_seq[i] = t.seq
        self.received += 1
        return True

    def reading(self, now_s: float) -> RacksReading:
        return RacksReading(
            rack_ids=self.rack_ids, row_of_rack=self.rows, power_w=self.power_w.copy(),
            cap_w=self.cap_w.copy(), nameplate_w=self.nameplate_w.copy(),
            age_s=now_s - self.received_at_s, stale_after_s=self.stale_after_s,
        )


Publish = Callable[[str, bytes], Awaitable[None]]


T = TypeVar("T")
_UNKNOWN: Any = float("nan")  # what a rack was told is not known (after a reconnect): never the same


class RowWriter(Generic[T]):
    """Sends per-rack commands as one group message per row (never one publish per rack).

    Each message carries the row's whole state (`null` for a rack without the command)
    and is published retained, so a row agent that (re)subscribes late — after a broker
    restart, say — gets what is in force at once, and a later message can never leave an
    older partial one behind. After a (re)connect every row is sent again: that re-asserts
    the commands and clears any a previous controller left retained.
    """

    def __init__(self, prefix: str, rack_ids: list[str]) -> None:
        self.prefix = prefix
        self.row_of = {rid: rid.split("-")[0] for rid in rack_ids}
        self.rows: dict[str, list[str]] = {}
        for rid, row in self.row_of.items():
            self.rows.setdefault(row, []).append(rid)
        self.desired: dict[str, T | None] = dict.fromkeys(rack_ids)
        self.sent: dict[str, T | None] = {}  # what the racks were last told
        self.seq = 0

    def _same(self, a: T | None, b: T | None) -> bool:
        return a is not _UNKNOWN and a == b

    def _topic(self, row: str) -> str:
        raise NotImplementedError

    def _encode(self, values: dict[str, T | None], seq: int) -> bytes:
        raise NotImplementedError

    def changes(self, values: dict[str, T | None]) -> dict[str, dict[str, T | None]]:
        """Take these values (other racks keep theirs); return the rows to send, each whole."""
        for rack, value in values.items():
            if rack in self.desired:
                self.desired[rack] = value
        out: dict[str, dict[str, T | None]] = {}
        for row, racks in self.rows.items():
            if any(r not in self.sent or not self._same(self.sent[r], self.desired[r]) for r in racks):
                if all(r not in self.sent for r in racks) and all(self.desired[r] is None for r in racks):
                    continue  # never told anything, nothing to say
                out[row] = {r: self.desired[r] for r in racks}
        return out

    async def send(self, publish: Publish, by_row: dict[str, dict[str, T | None]]) -> int:
        """Every row's message at once: a broker slow to acknowledge (QoS 1, each publish bounded
        by its timeout) costs the period one timeout, not one per row. The rows it took count as
        sent; the first failure is raised after all were tried (the rest go again next period)."""
        sends = []
        for row, values in by_row.items():
            self.seq += 1
            sends.append(publish(self._topic(row), self._encode(values, self.seq)))
        results = await asyncio.gather(*sends, return_exceptions=True)
        for values, result in zip(by_row.values(), results, strict=True):
            if not isinstance(result, BaseException):
                self.sent.update(values)
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            raise failed
        return len(by_row)

    def release_all(self) -> dict[str, dict[str, T | None]]:
        """Every command released (shutdown): the rows that need telling."""
        return self.changes(dict.fromkeys(self.desired))

    def forget(self) -> None:
        """After a (re)connect the racks may have missed commands, and stale retained ones may
        sit in the broker: mark every rack unknown so the next send covers every row."""
        self.sent = dict.fromkeys(self.desired, _UNKNOWN)


class RackCapWriter(RowWriter[float]):
    """Power caps; a change smaller than `deadband_w` is not worth a message."""

    def __init__(self, prefix: str, rack_ids: list[str], deadband_w: float = 500.0) -> None:
        super().__init__(prefix, rack_ids)
        self.deadband_w = deadband_w

    def _same(self, a: float | None, b: float | None) -> bool:
        if a is None or b is None:
            return a is None and b is None
        return abs(a - b) < self.deadband_w  # NaN (unknown) is never the same

    def _topic(self, row: str) -> str:
        return rp.row_caps_topic(self.prefix, row)

    def _encode(self, values: dict[str, float | None], seq: int) -> bytes:
        return rp.encode_row_caps(values, seq)


class SmoothingProfileWriter(RowWriter[SmoothingProfile]):
    """GPU power smoothing profiles (floor and ramp) per rack."""

    def _topic(self, row: str) -> str:
        return rp.row_smoothing_topic(self.prefix, row)

    def _encode(self, values: dict[str, SmoothingProfile | None], seq: int) -> bytes:
        return rp.encode_row_smoothing(values, seq)
