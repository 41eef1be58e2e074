"""The last good series of each feed, on disk under the state dir: it survives a restart.

One JSON file per feed (`<state dir>/feeds/<name>.json`), written whole to a temporary
file and renamed over the old one, so a crash leaves the old or the new, never half. The
file is bounded: the series is cut to the days the source keeps (a week or two of hours).
A file that cannot be read, or holds the series of another zone, node or place than the
feed's now (`of`), is ignored (logged): the feed then starts with nothing cached.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import structlog

from ems import state_file
from ems.feeds.series import FeedSeries

log = structlog.get_logger("ems.feeds")

MAX_FILE_BYTES = 4 << 20  # a larger file is not ours (a year of 15-minute steps is ~1 MB)
MIN_STEP_S, MAX_STEP_S = 60.0, 86_400.0  # the steps feeds come in (15 min, an hour) and then some


class FeedCache:
    """Last good series by feed name; `dir` None keeps them in memory only."""

    def __init__(self, dir: Path | None) -> None:
        self.dir = dir
        self.write_errors = 0

    def _path(self, name: str) -> Path | None:
        return None if self.dir is None else self.dir / f"{name}.json"

    def load(self, name: str, of: str = "") -> tuple[FeedSeries, float] | None:
        """(series, fetched at UTC s), or None when there is none (or it cannot be read, or is
        of another zone, node or place than `of`)."""
        path = self._path(name)
        if path is None or not path.exists():
            return None
        try:
            doc = json.loads(state_file.read_text(path, MAX_FILE_BYTES))
            if doc.get("of", "") != of:
                raise ValueError(f"a series of {str(doc.get('of'))[:80]!r}, not of {of!r}")
            cols = {str(k): np.asarray(v, dtype=np.float64) for k, v in doc["columns"].items()}
            sizes = {v.size for v in cols.values()}
            if len(sizes) != 1 or sizes == {0}:
                raise ValueError("columns of different lengths, or empty")
            if not MIN_STEP_S <= float(doc["step_s"]) <= MAX_STEP_S:  # NaN fails too
                raise ValueError(f"step_s not within {MIN_STEP_S:g}..{MAX_STEP_S:g}")
            if not (math.isfinite(float(doc["start_utc_s"])) and math.isfinite(float(doc["fetched_utc_s"]))):
                raise ValueError("start_utc_s or fetched_utc_s is not a time")
            # only a gap neither fetch had is saved as null (NaN); the newest value is a fetched one
            if any(np.isinf(v).any() or not np.isfinite(v[-1]) for v in cols.values()):
                raise ValueError("a value is infinite or the last one is missing")
            series = FeedSeries(float(doc["start_utc_s"]), float(doc["step_s"]), cols)
            return series, float(doc["fetched_utc_s"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:  # nested past depth
            log.warning("feed cache unreadable, ignored", feed=name, path=str(path), error=str(exc))
            return None

    def save(self, name: str, series: FeedSeries, fetched_utc_s: float, of: str = "") -> None:
        path = self._path(name)
        if path is None:
            return
        # NaN (an hour neither fetch had) as null: JSON has no NaN
        doc = {"of": of, "start_utc_s": series.start_utc_s, "step_s": series.step_s, "fetched_utc_s": fetched_utc_s,
               "columns": {k: [None if not np.isfinite(x) else float(x) for x in v] for k, v in series.columns.items()}}
        try:
            state_file.write_atomically(path, json.dumps(doc, separators=(",", ":")))
        except OSError as exc:  # a full or read-only disk: the series still serves from memory
            self.write_errors += 1
            if self.write_errors == 1:
                log.warning("feed cache not written", feed=name, path=str(path), error=str(exc))
