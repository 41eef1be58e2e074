"""Fuzz SunSpec model blocks: random words (the model's id first, its length or not) through
the decoder. Only `MalformedData` may escape; a decoded number is finite; a repeating group's
count cannot make the decoder build thousands of groups (each decode stays fast)."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import MalformedData
from drivers.sunspec_models import decode_model, model_def

MODELS = [1, 701, 702, 704, 713, 802, 803, 201, 202, 203, 204]


def _check(model_id: int, words: list[int]) -> None:
    t = time.perf_counter()
    try:
        values = decode_model(model_id, words)
    except MalformedData:
        return
    assert time.perf_counter() - t < 0.5
    for v in values.values():
        assert v is None or isinstance(v, str) or math.isfinite(v)


@pytest.mark.fuzz
@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(MODELS), st.data())
def test_random_model_blocks_decode_or_are_malformed(model_id: int, data: st.DataObject) -> None:
    n = model_def(model_id).words
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n))
    words[0] = model_id
    if data.draw(st.booleans()):
        words[1] = n - 2
    _check(model_id, words)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(MODELS), st.data())
def test_random_model_blocks_quick(model_id: int, data: st.DataObject) -> None:
    """The same, a few hundred cases, in the ordinary run."""
    n = model_def(model_id).words
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n))
    words[0], words[1] = model_id, n - 2
    _check(model_id, words)


def test_a_huge_string_count_is_not_built() -> None:
    md = model_def(803)
    words = [0] * md.words
    words[0], words[1] = 803, md.words - 2
    words[md.points["NStr"].offset] = 60000
    values = decode_model(803, words)
    assert values["NStr"] == 60000
