"""A year (or any span) of demand-response events for `ems backtest --dr-events`.

CSV with a header; one event a row; times ISO 8601 in the load series' own clock (naive,
as the tariff's local time). Columns: `start`, `end`, exactly one of `target_kw`,
`reduction_kw`, `reduction_fraction`; optional `event_id`, `baseline_kw`, `price_per_kwh`,
`price_per_kw`, `penalty_per_kwh`. A bad row names its line and column; the backtest exits 2.
"""

from __future__ import annotations

import csv
import math
from datetime import datetime, timedelta
from pathlib import Path

from ems.backtest.errors import BacktestInputError
from ems.model.dr import DrEvent

_EPOCH = datetime(1970, 1, 1)  # the engine's wall clock: naive seconds since 1970 in the series' time
MAX_EVENTS = 100_000


def _time(value: str, where: str) -> float:
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BacktestInputError(f"{where}: not an ISO 8601 time: {value[:40]!r}") from None
    if t.tzinfo is not None:
        raise BacktestInputError(f"{where}: give times in the load series' clock, without a zone")
    return (t - _EPOCH).total_seconds()


def _number(row: dict[str, str], key: str, where: str) -> float | None:
    raw = (row.get(key) or "").strip()
    if not raw:
        return None
    try:
        v = float(raw)
    except ValueError:
        raise BacktestInputError(f"{where}, {key}: not a number: {raw[:40]!r}") from None
    if not math.isfinite(v) or v < 0:
        raise BacktestInputError(f"{where}, {key}: must be a finite number >= 0")
    return v


def load_dr_events(path: Path) -> list[DrEvent]:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise BacktestInputError(f"{path}: cannot read: {exc.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise BacktestInputError(f"{path}: not a CSV file: {exc}") from None
    if len(rows) > MAX_EVENTS:
        raise BacktestInputError(f"{path}: more than {MAX_EVENTS} events")
    if not rows:  # else the run went on without a word of demand response, as if none had been asked for
        raise BacktestInputError(f"{path}: no events (a header line, then an event a line: docs/demand-response.md)")
    out: list[DrEvent] = []
    for n, row in enumerate(rows, 2):
        where = f"{path}:{n}"
        if not row.get("start") or not row.get("end"):
            raise BacktestInputError(f"{where}: start and end are needed")
        kw = {k: _number(row, k, where) for k in ("target_kw", "reduction_kw", "reduction_fraction", "baseline_kw",
                                                   "price_per_kwh", "price_per_kw", "penalty_per_kwh")}
        try:
            out.append(DrEvent(
                (row.get("event_id") or "").strip() or f"dr-{n - 1}", _time(row["start"], f"{where}, start"),
                _time(row["end"], f"{where}, end"),
                target_import_w=None if kw["target_kw"] is None else kw["target_kw"] * 1e3,
                reduction_w=None if kw["reduction_kw"] is None else kw["reduction_kw"] * 1e3,
                reduction_fraction=kw["reduction_fraction"],
                baseline_w=None if kw["baseline_kw"] is None else kw["baseline_kw"] * 1e3,
                price_per_kwh=kw["price_per_kwh"] or 0.0, price_per_kw=kw["price_per_kw"] or 0.0,
                penalty_per_kwh=kw["penalty_per_kwh"] or 0.0, source="backtest"))
        except ValueError as exc:
            raise BacktestInputError(f"{where}: {exc}") from None
    return out


def check_events_in_run(events: list[DrEvent], path: Path, start: datetime, span_s: float) -> None:
    """A file none of whose events touches the run replayed nothing and said "0 events"."""
    t0 = (start - _EPOCH).total_seconds()
    if events and not any(e.start_s < t0 + span_s and e.end_s > t0 for e in events):
        end = start + timedelta(seconds=span_s)
        raise BacktestInputError(f"--dr-events {path}: none of its {len(events)} events falls within the run "
                                 f"({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M})")
