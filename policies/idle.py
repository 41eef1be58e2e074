"""Lowest priority: with nothing else to do, the battery rests at 0 W."""

from __future__ import annotations

from ems.reasons import Reason
from policies.decision import Decision

NAME = "idle"


def decide() -> Decision:
    return Decision(NAME, Reason.IDLE, target_w=0.0)
