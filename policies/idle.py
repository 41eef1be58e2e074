"""Lowest priority: with nothing else to do, the battery rests at 0 W."""

from __future__ import annotations

from ems.model.decision import Decision
from ems.model.reasons import Reason

NAME = "idle"


def decide() -> Decision:
    return Decision(NAME, Reason.IDLE, target_w=0.0)
