"""A number from decoded JSON, as every message decoder of ems reads one."""

from __future__ import annotations

import math


def finite(value: object) -> float | None:
    """A JSON number as a finite float, else None (a bool, a string, an integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None
