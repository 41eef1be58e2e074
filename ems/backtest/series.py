"""Power series from CSV (load, PV) and their resampling to the backtest step.

Two layouts are read:

* one value per line after any header lines (like SAM's `sample_load.csv`: a line of
  text, then 8760 hourly kW values); the step comes from `step_s`, or from the count for
  a whole year (8760 or 8784 -> 1 h, 35040 -> 15 min, 525600 -> 1 min), and the series
  starts at `start`;
* `timestamp,value` rows (ISO 8601 naive local time) at a constant step.

Values are average power over each step, in kW unless `unit="w"`.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from ems.backtest.errors import BacktestInputError

FloatArray = npt.NDArray[np.float64]

SAM_YEAR_START = datetime(2018, 1, 1)  # non-leap, a Monday: SAM's hour 0 (docs/tariffs.md)
_YEAR_STEPS = {8760: 3600, 8784: 3600, 17520: 1800, 35040: 900, 35136: 900, 105120: 300, 525600: 60}


@dataclass(frozen=True)
class PowerSeries:
    start: datetime  # naive local time of the first step's start
    step_s: int
    values_w: FloatArray

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.step_s * self.values_w.size)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_power_csv(path: str | Path, *, unit: Literal["kw", "w"] = "kw", scale: float = 1.0,
                   start: datetime | None = None, step_s: int | None = None) -> PowerSeries:
    try:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except OSError as exc:
        raise BacktestInputError(f"{path}: cannot read: {exc.strerror}") from None
    factor = scale * (1000.0 if unit == "kw" else 1.0)
    # leading rows whose value column is not a number are headers
    value_col = 1 if rows and len(rows[-1]) >= 2 else 0
    first = next((i for i, r in enumerate(rows) if len(r) > value_col and _float(r[value_col]) is not None), None)
    if first is None:
        raise BacktestInputError(f"{path}: no numeric rows")
    body = rows[first:]
    values = []
    times: list[datetime] = []
    for line, row in enumerate(body, start=first + 1):
        v = _float(row[value_col]) if len(row) > value_col else None
        if v is None or not np.isfinite(v):
            raise BacktestInputError(f"{path}:{line}: not a number: {row!r}")
        values.append(v * factor)
        if value_col == 1:
            try:
                times.append(datetime.fromisoformat(row[0].strip()))
            except ValueError:
                raise BacktestInputError(f"{path}:{line}: not an ISO timestamp: {row[0]!r}") from None
    arr = np.asarray(values, dtype=np.float64)
    if times:
        if len(times) < 2:
            raise BacktestInputError(f"{path}: at least two rows are needed to know the step")
        step = int((times[1] - times[0]).total_seconds())
        for line, (a, b) in enumerate(itertools.pairwise(times), start=first + 2):
            if step <= 0 or (b - a).total_seconds() != step:  # name the row: a gap, a repeat or a step back
                what = ("repeats" if b == a else "goes back" if b < a
                        else f"is {(b - a).total_seconds():g} s after the row before, not {step} s")
                raise BacktestInputError(f"{path}:{line}: timestamps must increase at a constant step; "
                                         f"{b.isoformat(sep=' ')} {what}")
        if times[0].tzinfo is not None:
            raise BacktestInputError(f"{path}: timestamps must be naive local time")
        return PowerSeries(times[0], step, arr)
    if step_s is None:
        step_s = _YEAR_STEPS.get(arr.size)
        if step_s is None:
            raise BacktestInputError(f"{path}: {arr.size} values is not a whole year; give the step")
    return PowerSeries(start or SAM_YEAR_START, step_s, arr)


def resample(series: PowerSeries, step_s: int) -> PowerSeries:
    """To `step_s`: a coarser source is held over each finer step (its average stays the
    same), a finer one is averaged over each coarser step (a partial last step is dropped)."""
    src = series.step_s
    if src == step_s:
        return series
    if src > step_s:
        if src % step_s:
            raise BacktestInputError(f"series step {src} s is not a multiple of {step_s} s")
        return PowerSeries(series.start, step_s, np.repeat(series.values_w, src // step_s))
    if step_s % src:
        raise BacktestInputError(f"{step_s} s is not a multiple of the series step {src} s")
    k = step_s // src
    n = series.values_w.size // k
    return PowerSeries(series.start, step_s, series.values_w[: n * k].reshape(n, k).mean(axis=1))


def window(series: PowerSeries, start: datetime, n_steps: int, name: str = "the series") -> FloatArray:
    """`n_steps` values from `start`; the series must cover them (`name`: the file, for the message)."""
    offset = (start - series.start).total_seconds() / series.step_s
    if offset < 0 or offset != int(offset) or int(offset) + n_steps > series.values_w.size:
        raise BacktestInputError(
            f"{name} ({series.start:%Y-%m-%d %H:%M} .. {series.end:%Y-%m-%d %H:%M}) does not cover "
            f"{n_steps} steps from {start:%Y-%m-%d %H:%M} on its step grid")
    out: FloatArray = series.values_w[int(offset): int(offset) + n_steps]
    return out
