"""Fencing arithmetic, pure: may the holder of a lease still write?

The server stamps a renewal when it receives it, which is after we sent it; so the lease
cannot expire before `sent_at + ttl` on our clock (monotonic clocks tick at the same rate
within a fraction of a percent, which the guard covers with room to spare). The active
writes only before `sent_at + ttl - guard`: whatever it writes then lands while its
lease still stands, and a standby takes over only once the server has removed it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Fence:
    ttl_s: float
    guard_s: float
    renewed_sent_at_s: float = -math.inf  # monotonic time at which the last acknowledged renewal was sent

    def renewed(self, sent_at_s: float) -> None:
        """A renewal (or the acquisition) sent at `sent_at_s` was acknowledged by the server."""
        self.renewed_sent_at_s = max(self.renewed_sent_at_s, sent_at_s)

    def revoke(self) -> None:
        """The lease is lost (another holds it, or we gave it up): no more writes at all."""
        self.renewed_sent_at_s = -math.inf

    def write_deadline_s(self) -> float:
        return self.renewed_sent_at_s + self.ttl_s - self.guard_s

    def may_write(self, now_s: float) -> bool:
        return now_s < self.write_deadline_s()

    def expires_not_before_s(self) -> float:
        """The earliest the server can remove our lease (monotonic, our clock)."""
        return self.renewed_sent_at_s + self.ttl_s
