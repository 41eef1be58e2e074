"""Shared hypothesis settings and JSON strategies for the decoder fuzz tests.

`EMS_FUZZ_EXAMPLES` scales every fuzz test (default 3000 cases each); `pytest -m "not fuzz"`
skips them for a quick run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("EMS_FUZZ_EXAMPLES", "3000"))

# no deadline: a loaded CI machine must not turn a slow case into a failure
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# JSON numbers as a hostile sender writes them: huge integers, NaN/Infinity (Python's json
# accepts those tokens), negative zero, subnormals
numbers = st.one_of(st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
                    st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12))
# shallow JSON is much cheaper to generate than st.recursive: use it inside objects, and
# the recursive one only for whole payloads
shallow_json = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=4), scalars,
                                                                                 max_size=3))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)


def either(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value of the right type, sometimes any JSON value at all."""
    return st.one_of(good, good, shallow_json)


def mutate(obj: dict[str, object], drop: list[str], replace: dict[str, object]) -> dict[str, object]:
    out = {k: v for k, v in obj.items() if k not in drop}
    out.update(replace)
    return out


def mutated(good: st.SearchStrategy[dict[str, Any]], keys: list[str]) -> st.SearchStrategy[dict[str, object]]:
    """A plausible object with none, one or two fields dropped or replaced by any JSON value:
    random objects almost never get past the first check, these reach the deep ones."""
    return st.builds(mutate, good, st.just([]) | st.lists(st.sampled_from(keys), max_size=1),
                     st.just({}) | st.dictionaries(st.sampled_from([*keys, "extra"]), shallow_json, max_size=2))


def dumps(obj: object) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


def reaches_both_paths(seen: Mapping[str, int]) -> None:
    """A fuzz run that never got past the first check (or never refused) proves little: with
    enough cases both outcomes must have happened. Counts go to stdout (`pytest -s`)."""
    print(f"fuzz outcomes: {dict(seen)}")
    if EXAMPLES >= 1000:
        assert seen.get("accepted", 0) >= EXAMPLES // 100 and seen.get("rejected", 0) > 0, dict(seen)


def finite(*values: float | None) -> bool:
    return all(v is None or math.isfinite(v) for v in values)
