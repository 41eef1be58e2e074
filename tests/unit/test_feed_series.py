"""What every feed returns (ems/feeds/series.py): refused when not regular or not finite, and
merged with the series before it so a weather feed's past hours stay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ems.feeds.cache import FeedCache
from ems.feeds.prices import PRICE, overlaid
from ems.feeds.series import FeedMalformed, FeedSeries, regular_series


def test_irregular_steps_and_values_that_are_not_finite_are_refused() -> None:
    with pytest.raises(FeedMalformed, match="regular step"):
        regular_series([0.0, 3600.0, 9000.0], {"x": [1.0, 2.0, 3.0]}, "src")
    with pytest.raises(FeedMalformed, match=r"src: x is not finite at 1 of 3 steps"):
        regular_series([0.0, 3600.0, 7200.0], {"x": [1.0, float("inf"), 3.0]}, "src")
    with pytest.raises(FeedMalformed, match=r"src: x is outside -10..10 at 1 of 3 steps \(e.g. 1e\+300\)"):
        regular_series([0.0, 3600.0, 7200.0], {"x": [1.0, 1e300, 3.0]}, "src", {"x": (-10.0, 10.0)})
    with pytest.raises(FeedMalformed, match="no rows"):
        regular_series([], {"x": []}, "src")
    with pytest.raises(FeedMalformed, match="2 values for 3 timestamps"):
        regular_series([0.0, 3600.0, 7200.0], {"x": [1.0, 2.0]}, "src")


def test_a_new_series_keeps_the_hours_before_it_and_is_cut_at_the_kept_span() -> None:
    old = FeedSeries(0.0, 3600.0, {"t": np.arange(10, dtype=np.float64)})  # hours 0..9
    new = FeedSeries(12 * 3600.0, 3600.0, {"t": np.arange(100, 105, dtype=np.float64)})  # hours 12..16
    m = new.merged(old, keep_from_utc_s=3 * 3600.0)
    assert m.start_utc_s == 3 * 3600.0 and m.step_s == 3600.0
    # hours 3..9 from the old one, 10 and 11 nobody had (NaN), then the new one
    np.testing.assert_array_equal(m.columns["t"], [3, 4, 5, 6, 7, 8, 9, np.nan, np.nan, 100, 101, 102, 103, 104])
    overlap = FeedSeries(5 * 3600.0, 3600.0, {"t": np.full(3, 50.0)})  # the new one wins where both are
    np.testing.assert_array_equal(overlap.merged(old, 0.0).columns["t"], [0, 1, 2, 3, 4, 50, 50, 50])
    other_grid = FeedSeries(5 * 3600.0 + 900.0, 3600.0, {"t": np.ones(2)})  # not on the same grid: new alone
    assert other_grid.merged(old, 0.0).start_utc_s == 5 * 3600.0 + 900.0


def test_an_older_series_far_in_the_past_is_cut_before_the_gap_is_filled() -> None:
    # a cache file (crafted, or left by a run long ago) starting 10^12 hours back on the same grid:
    # filled from its start, the gap would be 8 TB of NaN; cut at the kept span first, it is nothing
    new = FeedSeries(1e16, 3600.0, {"t": np.arange(5, dtype=np.float64)})
    old = FeedSeries(1e16 - 3600.0 * 1e12, 3600.0, {"t": np.ones(3)})
    m = new.merged(old, keep_from_utc_s=1e16 - 2 * 3600.0)
    assert m.start_utc_s == 1e16 and m.n_steps == 5
    recent = FeedSeries(1e16 - 3 * 3600.0, 3600.0, {"t": np.full(2, 7.0)})  # within the span: kept, gap NaN
    m = new.merged(recent, keep_from_utc_s=1e16 - 2 * 3600.0)
    np.testing.assert_array_equal(m.columns["t"], [7, np.nan, 0, 1, 2, 3, 4])


def test_auctions_overlaid_a_later_one_wins_and_a_day_none_priced_stays_a_gap(tmp_path: Path) -> None:
    q = 900.0
    ida1 = FeedSeries(0.0, q, {PRICE: np.array([10.0, 11.0, 12.0, 13.0])})
    ida3 = FeedSeries(2 * q, q, {PRICE: np.array([30.0, 31.0])})
    next_day = FeedSeries(6 * q, q, {PRICE: np.array([50.0])})  # 4q and 5q: no auction priced them
    out = overlaid([ida1, ida3, next_day], "ida")
    assert out.start_utc_s == 0.0 and out.step_s == q
    np.testing.assert_array_equal(out.columns[PRICE], [10.0, 11.0, 30.0, 31.0, np.nan, np.nan, 50.0])
    # the gap survives the cache (as null), the planner sees NaN there and keeps the day-ahead
    cache = FeedCache(tmp_path)
    cache.save("ida", out, 1.0)
    back = cache.load("ida")
    assert back is not None
    np.testing.assert_array_equal(back[0].columns[PRICE], out.columns[PRICE])
    with pytest.raises(FeedMalformed, match=r"ida: the auctions' prices are not on one grid \(steps \[900.0, 3600.0\]"):
        overlaid([ida1, FeedSeries(0.0, 3600.0, {PRICE: np.array([1.0])})], "ida")
    with pytest.raises(FeedMalformed, match="not on one grid"):
        overlaid([ida1, FeedSeries(300.0, q, {PRICE: np.array([1.0])})], "ida")
