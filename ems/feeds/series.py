"""What every feed returns: a regular series in UTC, one column per quantity, units in the names.

A feed's adapter turns its client's answer (a pandas series, a JSON document) into a
`FeedSeries`; `checked` then refuses what the planner must not use: no rows, values that are
not finite, steps that are not regular, or a series that does not cover the window asked for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ems.model.errors import EmsError

FloatArray = npt.NDArray[np.float64]


class FeedError(EmsError):
    """A feed gave nothing usable this time; the planner falls back (ems/feeds/source.py)."""

    kind = "error"


class FeedUnavailable(FeedError):
    """The source could not be reached or answered with an error (timeout, HTTP status)."""

    kind = "unavailable"


class FeedMalformed(FeedError):
    """The answer came but cannot be used: unparsable, not finite, irregular, a column missing."""

    kind = "malformed"


class FeedNotCovering(FeedError):
    """The series does not reach over the window the planner needs (stale or short)."""

    kind = "not_covering"


@dataclass(frozen=True)
class FeedSeries:
    """Values at `start_utc_s + k * step_s` (each holding for one step), per named column."""

    start_utc_s: float
    step_s: float
    columns: Mapping[str, FloatArray]

    @property
    def n_steps(self) -> int:
        return next(iter(self.columns.values())).size if self.columns else 0

    @property
    def end_utc_s(self) -> float:
        return self.start_utc_s + self.n_steps * self.step_s

    def covers(self, start_utc_s: float, end_utc_s: float) -> bool:
        return self.n_steps > 0 and self.start_utc_s <= start_utc_s and self.end_utc_s >= end_utc_s

    def at(self, column: str, utc_s: npt.ArrayLike) -> FloatArray:
        """The column's value at each time (NaN outside the series)."""
        values = self.columns[column]
        idx = np.floor((np.asarray(utc_s, dtype=np.float64) - self.start_utc_s) / self.step_s).astype(np.int64)
        ok = (idx >= 0) & (idx < values.size)
        out = np.full(idx.shape, np.nan)
        out[ok] = values[idx[ok]]
        return out

    def merged(self, older: FeedSeries | None, keep_from_utc_s: float) -> FeedSeries:
        """This series with what `older` has before it (same step and grid), cut at
        `keep_from_utc_s`: a weather feed's past hours stay for the learned load model."""
        start = self.start_utc_s
        cols = dict(self.columns)
        if older is not None and older.step_s == self.step_s and older.start_utc_s < keep_from_utc_s:
            # cut first: the gap filled below is then within the kept span, not back to an old (or
            # crafted) cache file's start, whatever its distance
            skip = math.floor((keep_from_utc_s - older.start_utc_s) / self.step_s)
            older = None if skip >= older.n_steps else FeedSeries(
                older.start_utc_s + skip * self.step_s, self.step_s, {k: v[skip:] for k, v in older.columns.items()})
        if (older is not None and older.step_s == self.step_s and older.start_utc_s < start
                and (start - older.start_utc_s) % self.step_s == 0 and set(older.columns) == set(cols)):
            head = min(older.n_steps, round((start - older.start_utc_s) / self.step_s))
            gap = round((start - older.start_utc_s) / self.step_s) - head  # steps neither series has
            for name, values in cols.items():
                cols[name] = np.concatenate([older.columns[name][:head], np.full(gap, np.nan), values])
            start = older.start_utc_s
        drop = max(0, math.floor((keep_from_utc_s - start) / self.step_s))
        drop = min(drop, max(0, next(iter(cols.values())).size - 1))
        return FeedSeries(start + drop * self.step_s, self.step_s, {k: v[drop:] for k, v in cols.items()})


def regular_series(times_utc_s: Sequence[float] | FloatArray, columns: Mapping[str, Sequence[float] | FloatArray],
                   source: str, ranges: Mapping[str, tuple[float, float]] | None = None,
                   step_s: float | None = None) -> FeedSeries:
    """A `FeedSeries` from timestamps and values; FeedMalformed (naming the source and the
    column) unless the steps are regular and every value is finite (and within its column's
    `ranges`, where given: a finite 1e300 would reach the planner's LP as a price). `step_s`:
    the market's own step, where the source knows it: a single row's, and any other is malformed
    (read off the answer, one 5-minute row would price an hour)."""
    t = np.asarray(times_utc_s, dtype=np.float64)
    if t.size == 0:
        raise FeedMalformed(f"{source}: no rows")
    if not np.all(np.isfinite(t)):
        raise FeedMalformed(f"{source}: a timestamp is not a time")
    step = float(t[1] - t[0]) if t.size > 1 else 3600.0 if step_s is None else step_s
    if step <= 0 or (t.size > 1 and not np.all(np.diff(t) == step)):
        raise FeedMalformed(f"{source}: timestamps are not at a regular step")
    if step_s is not None and step != step_s:
        raise FeedMalformed(f"{source}: timestamps {step:g} s apart, not the market's {step_s:g} s")
    out: dict[str, FloatArray] = {}
    for name, values in columns.items():
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.size != t.size:
            raise FeedMalformed(f"{source}: {name} has {v.size} values for {t.size} timestamps")
        bad = ~np.isfinite(v)
        if bad.any():
            raise FeedMalformed(f"{source}: {name} is not finite at {int(bad.sum())} of {v.size} steps")
        lo, hi = (ranges or {}).get(name, (-math.inf, math.inf))
        out_of = (v < lo) | (v > hi)
        if out_of.any():
            raise FeedMalformed(f"{source}: {name} is outside {lo:g}..{hi:g} at {int(out_of.sum())} of {v.size} "
                                f"steps (e.g. {v[out_of][0]:g})")
        out[name] = v
    return FeedSeries(float(t[0]), step, out)
