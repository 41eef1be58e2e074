"""Fuzz the operator API's request bodies (ems/operator/requests.py) as the server parses them:
`TypeAdapter.validate_json` on raw bytes. Only pydantic's ValidationError may escape, and an
accepted body holds only finite numbers."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from ems.operator import requests as rq
from tests.fuzz.strategies import FUZZ, dumps, json_values, mutated, reaches_both_paths

pytestmark = pytest.mark.fuzz

ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "set_param": TypeAdapter(rq.SetParam), "reset_param": TypeAdapter(rq.ResetParam),
    "maintenance": TypeAdapter(rq.SetMaintenance), "force": TypeAdapter(rq.ForceMode),
}
number = st.floats(allow_nan=True, allow_infinity=True) | st.integers()
reason = st.text(min_size=3, max_size=20).filter(lambda t: not t.isspace())
param = st.sampled_from(["policies.peak_shaving.grid_import_cap_w", "control.period_s"])
good: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "set_param": st.fixed_dictionaries({"param": param, "value": st.none() | st.booleans() | number,
                                        "reason": reason}, optional={"revert_after_s": number}),
    "reset_param": st.fixed_dictionaries({"param": param, "reason": reason}),
    "maintenance": st.fixed_dictionaries({"unit": st.sampled_from(["bess-1", "bess-2"]),
                                          "in_maintenance": st.booleans(), "reason": reason}),
    "force": st.one_of(
        st.fixed_dictionaries({"mode": st.just("zero"), "timeout_s": number, "reason": reason}),
        st.fixed_dictionaries({"mode": st.just("setpoint"), "timeout_s": number, "setpoint_w": number,
                               "reason": reason}),
        st.fixed_dictionaries({"mode": st.just("auto"), "reason": reason})),
}
KEYS = ["param", "value", "reason", "revert_after_s", "unit", "in_maintenance", "mode", "timeout_s", "setpoint_w"]


def _numbers(model: BaseModel) -> list[float]:
    return [v for v in model.model_dump().values() if isinstance(v, float)]


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_fuzz_request_body(name: str) -> None:
    adapter = ADAPTERS[name]
    seen: Counter[str] = Counter()
    bodies = mutated(good[name], KEYS).map(dumps)
    raw = st.one_of(bodies, bodies, json_values.map(dumps), st.binary(max_size=200))

    @FUZZ
    @given(raw)
    def check(body: bytes) -> None:
        try:
            parsed = adapter.validate_json(body or b"null")
        except ValidationError:
            seen["rejected"] += 1
            return
        seen["accepted"] += 1
        assert all(math.isfinite(v) for v in _numbers(parsed))

    check()
    print(f"{name}: ", end="")
    reaches_both_paths(seen)
