"""JSON from a third party, decoded with its nesting bounded.

`json.loads` refuses what is nested past the interpreter's recursion limit, but a value just
under it (a list 990 deep) decodes, and then raises RecursionError wherever it is rendered
again a few frames deeper: `json.dumps` into an event, `str()` into a log line. Refusing
deep nesting at the door leaves no such value to trip over later.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # far beyond any message ems reads (a handover is 4 levels deep)


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads(data)`, or ValueError where it is not JSON or nests deeper than `max_depth`."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested past the parser's depth") from None
    if depth(value, max_depth) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth}")
    return value


def depth(value: object, stop_at: int) -> int:
    """How deep `value`'s lists and objects nest (a scalar: 0), counted without recursion and
    no further than `stop_at` + 1."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            d += 1
            deepest = max(deepest, d)
            if d > stop_at:
                return d
            stack.extend((c, d) for c in (v.values() if isinstance(v, dict) else v))
    return deepest
