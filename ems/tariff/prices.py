"""Dynamic energy prices (e.g. day-ahead or real-time) loaded from CSV into a `PriceSeries`."""

from __future__ import annotations

import csv
import itertools
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from ems.tariff.model import PriceSeries, TariffFormatError

__all__ = ["load_price_csv"]

_UNIT_SCALE = {"per_kwh": 1.0, "per_mwh": 1e-3}


def load_price_csv(
    path: str | Path,
    *,
    buy_column: str = "price_per_kwh",
    sell_column: str | None = None,
    timestamp_column: str = "timestamp",
    unit: Literal["per_kwh", "per_mwh"] = "per_kwh",
    mode: Literal["replace", "add"] = "replace",
) -> PriceSeries:
    """Read a CSV with a header: ISO 8601 naive local timestamps and prices.

    Rows must be in time order at a constant step (each price holds until the next row).
    Prices in currency per MWh are converted with ``unit="per_mwh"``.
    """
    try:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise TariffFormatError(f"cannot read price CSV {path}: {exc}") from exc
    if not rows:
        raise TariffFormatError(f"{path}: no price rows")
    for column in (timestamp_column, buy_column, sell_column):
        if column is not None and column not in rows[0]:
            raise TariffFormatError(f"{path}: column {column!r} not found")

    times: list[datetime] = []
    buy: list[float] = []
    sell: list[float] = []
    scale = _UNIT_SCALE[unit]
    for line, row in enumerate(rows, start=2):
        try:
            times.append(datetime.fromisoformat(row[timestamp_column].strip()))
            buy.append(float(row[buy_column]) * scale)
            if sell_column is not None:
                sell.append(float(row[sell_column]) * scale)
        except (ValueError, AttributeError) as exc:
            raise TariffFormatError(f"{path}:{line}: {exc}") from exc

    if len(times) < 2:
        raise TariffFormatError(f"{path}: at least two rows are needed to know the step")
    step = times[1] - times[0]
    for line, (a, b) in enumerate(itertools.pairwise(times), start=3):
        if b - a != step:
            raise TariffFormatError(f"{path}:{line}: {timestamp_column} is not at a constant step")
    step_s = step.total_seconds()
    if step_s <= 0 or step_s != int(step_s):
        raise TariffFormatError(f"{path}: {timestamp_column} must increase by whole seconds")
    try:
        return PriceSeries(
            start=times[0],
            step_s=int(step_s),
            buy_per_kwh=tuple(buy),
            sell_per_kwh=tuple(sell) if sell_column is not None else None,
            mode=mode,
        )
    except ValidationError as exc:
        raise TariffFormatError(f"{path}: {exc}") from exc
