"""What may stop the controller from writing: the active/standby lease (ems/ha/role.py)."""

from __future__ import annotations

from typing import Any, Protocol


class WriteGate(Protocol):
    def may_write(self) -> bool:
        """True while this controller may write to devices (it holds a lease that cannot yet expire)."""
        ...

    def note_writes(self, writes: int) -> None:
        """How many writes the period just made (the first of an epoch goes into the event log)."""
        ...

    def describe(self) -> dict[str, Any]:
        """For the site status: role, epoch, whether the lease store is reachable."""
        ...
