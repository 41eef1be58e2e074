"""One feed kept fresh in its own task, with the last good series to fall back on.

`FeedSource.run` refreshes the feed every `refresh_s` (every `retry_s` after a failure),
each fetch in a worker thread bounded by `timeout_s`: the control period never waits on a
feed. A fetch that fails (unreachable, an HTTP error, a malformed or non-finite answer, a
series that does not reach `min_ahead_s` past now) is counted by kind and logged once per
outage; the last good series stays in force. The planner reads it with `series`: the last
good series while it still covers the window it needs, else None (the tariff's own prices,
or no temperature), counted and logged once per stale stretch. A series without the columns
the planner reads (`columns`: a cache file left by another feed or crafted, an answer of
another kind) is never the one in force: fetched, it is malformed; cached, it is ignored.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import structlog

from ems.feeds.cache import FeedCache
from ems.feeds.series import FeedError, FeedMalformed, FeedNotCovering, FeedSeries, FeedUnavailable
from ems.model.cancel_guard import checkpoint

log = structlog.get_logger("ems.feeds")


class Feed(Protocol):
    """A source of one regular series: fetch what there is for [start, end) (UTC seconds)."""

    name: str

    def fetch(self, start_utc_s: float, end_utc_s: float) -> FeedSeries: ...


class FeedSource:
    def __init__(self, feed: Feed, cache: FeedCache, *, refresh_s: float, timeout_s: float,
                 min_ahead_s: float, fetch_ahead_s: float, keep_s: float, retry_s: float = 300.0,
                 clock: Callable[[], float] = time.time, columns: tuple[str, ...] = ()) -> None:
        self.feed = feed
        self.name = feed.name
        # the zone, node or place the series is of: a cache of another (the site file changed, a
        # state dir copied from another site) is not served as this one's
        self.of = str(getattr(feed, "of", ""))
        self.cache = cache
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self.min_ahead_s = min_ahead_s
        self.fetch_ahead_s = fetch_ahead_s
        self.keep_s = keep_s
        self.retry_s = min(retry_s, refresh_s)
        self.clock = clock
        self.columns = columns  # what the planner reads of the series
        self.good: FeedSeries | None = None
        self.fetched_utc_s: float | None = None
        self.fetches = 0
        self.failures: Counter[str] = Counter()  # by kind: unavailable, malformed, not_covering
        self.stale = 0  # stretches in which the planner asked and the last good series did not cover
        self.last_error: str | None = None  # None while the feed is up
        self._down = False
        self._stale_now = False
        self._thread: asyncio.Future[FeedSeries] | None = None  # a fetch still running past its timeout
        cached = cache.load(self.name, self.of)
        if cached is not None and (missing := self._missing(cached[0])):
            log.warning("feed cache without the feed's columns, ignored", feed=self.name, missing=missing)
        elif cached is not None:
            self.good, self.fetched_utc_s = cached

    def _missing(self, series: FeedSeries) -> list[str]:
        return [c for c in self.columns if c not in series.columns]

    async def run(self) -> None:
        """Refresh until cancelled: at once (unless the cache is fresh), then on the cadence."""
        # a fetch time ahead of the clock (a clock set back, a crafted file) is not fresh: fetched now
        age_s = None if self.fetched_utc_s is None else self.clock() - self.fetched_utc_s
        if age_s is not None and 0 <= age_s < self.refresh_s:
            await asyncio.sleep(self.refresh_s - age_s)
        while True:
            checkpoint()  # a stop a library swallowed (ems/model/cancel_guard)
            try:
                ok = await self.refresh()
            except Exception as exc:  # a bug of ours past the fetch: the feed waits, the planner goes on
                log.exception("feed refresh failed", feed=self.name, error=str(exc))
                ok = False
            await asyncio.sleep(self.refresh_s if ok else self.retry_s)

    async def refresh(self) -> bool:
        """One fetch; True when it gave a good series (now the one in force)."""
        now = self.clock()
        self.fetches += 1
        try:
            if self._thread is not None and not self._thread.done():
                raise FeedUnavailable(f"{self.name}: the previous fetch is still running")
            self._thread = asyncio.ensure_future(asyncio.to_thread(
                self.feed.fetch, now - self.keep_s, now + self.fetch_ahead_s))
            # a fetch given up on may still fail later: its error is read here, not left unretrieved
            self._thread.add_done_callback(lambda f: f.cancelled() or f.exception())
            try:
                series = await asyncio.wait_for(asyncio.shield(self._thread), self.timeout_s)
            except TimeoutError:
                raise FeedUnavailable(f"{self.name}: no answer within {self.timeout_s:g} s") from None
            if missing := self._missing(series):
                raise FeedMalformed(f"{self.name}: the answer has no {', '.join(missing)}")
            if not series.covers(now, now + self.min_ahead_s):
                raise FeedNotCovering(f"{self.name}: the series ends {(series.end_utc_s - now) / 3600:.1f} h "
                                      f"from now, {self.min_ahead_s / 3600:g} h needed")
        except FeedError as exc:
            self._failed(exc)
            return False
        except Exception as exc:  # a client's own bug must not end the feed's task: counted as malformed
            self._failed(FeedMalformed(f"{self.name}: {type(exc).__name__}: {exc}"))
            return False
        self.good = series.merged(self.good, now - self.keep_s)
        self.fetched_utc_s = now
        await asyncio.to_thread(self.cache.save, self.name, self.good, now, self.of)  # an fsync: off the event loop
        if self._down:
            log.info("feed back", feed=self.name, failures=sum(self.failures.values()))
        self._down, self.last_error = False, None
        return True

    def _failed(self, exc: FeedError) -> None:
        self.failures[exc.kind] += 1
        self.last_error = exc.kind
        if not self._down:  # once per outage
            log.warning("feed failed, the last good series stays", feed=self.name, kind=exc.kind, error=str(exc))
        self._down = True

    def series(self, start_utc_s: float, end_utc_s: float) -> FeedSeries | None:
        """The last good series if it covers [start, start + min_ahead_s] (and as far towards `end`
        as it reaches); None when there is none or it went stale."""
        g = self.good
        if g is not None and g.covers(start_utc_s, min(end_utc_s, start_utc_s + self.min_ahead_s)):
            self._stale_now = False
            return g
        if not self._stale_now:
            self.stale += 1
            log.warning("feed series does not cover the plan's window: not used", feed=self.name,
                        ends_in_h=None if g is None else round((g.end_utc_s - start_utc_s) / 3600, 1))
        self._stale_now = True
        return None

    def summary(self) -> dict[str, object]:
        return {"fetches": self.fetches, "failures": dict(self.failures), "stale": self.stale,
                "error": self.last_error, "fetched_utc_s": self.fetched_utc_s,
                "ends_utc_s": None if self.good is None else self.good.end_utc_s}
