"""Price feeds: day-ahead from ENTSO-E (entsoe-py), Nord Pool (nordpool), CAISO OASIS (a US ISO);
real-time (known sooner than day-ahead, for the intervals they cover) from ENTSO-E's intraday
auctions and CAISO's real-time markets (ems/feeds/planner_inputs.py lays them over the day-ahead).

Each adapter is synchronous (the source runs it in a worker thread with a timeout,
ems/feeds/source.py; nordpool's client that takes an HTTP client is async, so it runs on a loop
of its own in that thread) and returns `price_per_mwh` (the market's currency per MWh, as
the markets publish it) on the market's own step. The clients' errors become FeedErrors here,
where they enter. The clients make their own requests, so each is handed a session of ours that
reads every answer with the bound the other feeds have (ems/feeds/answer.py).
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from ems.feeds.answer import bounded_body, bounded_session, checked_zip
from ems.feeds.series import FeedMalformed, FeedNotCovering, FeedSeries, FeedUnavailable, regular_series

PRICE = "price_per_mwh"
# past any market's price cap in any currency it is published in (EU day-ahead +-4000 EUR/MWh,
# ~46 000 SEK; CAISO's bid cap 2000 $/MWh): a price beyond is a broken answer, not a market
PRICE_RANGE = {PRICE: (-1e6, 1e6)}


def _series_from_pandas(s: Any, source: str, step_s: float | None = None) -> FeedSeries:
    """A pandas Series of prices on a tz-aware index as a FeedSeries (`step_s`: the market's, where known)."""
    import pandas as pd

    if not isinstance(s, pd.Series) or s.empty:
        raise FeedNotCovering(f"{source}: no prices for the window")
    s = s.sort_index()
    s = s[~s.index.duplicated(keep="last")]
    idx = s.index
    if not isinstance(idx, pd.DatetimeIndex) or idx.tz is None:
        raise FeedMalformed(f"{source}: the prices are not on a time index with a zone")
    times = idx.tz_convert("UTC").as_unit("ns").asi8 / 1e9  # pandas 3 may hold them in us or s
    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    return regular_series(times, {PRICE: values}, source, PRICE_RANGE, step_s)


class EntsoePrices:
    """ENTSO-E Transparency Platform day-ahead prices (document A44) for a bidding zone,
    through entsoe-py's EntsoePandasClient."""

    name = "entsoe"

    def __init__(self, bidding_zone: str, token: str, timeout_s: float) -> None:
        self.bidding_zone = bidding_zone
        self.token = token
        self.timeout_s = timeout_s
        self.of = bidding_zone  # what the cached series is of (ems/feeds/cache.py)

    def fetch(self, start_utc_s: float, end_utc_s: float) -> FeedSeries:
        with bounded_session("entsoe") as session:
            s = _entsoe_query(_entsoe_client(session, self.token, self.timeout_s).query_day_ahead_prices,
                              self.bidding_zone, start_utc_s, end_utc_s, "entsoe", "day-ahead prices")
        if s is None:
            raise FeedNotCovering(f"entsoe: no day-ahead prices for {self.bidding_zone} in the window")
        return _series_from_pandas(s, "entsoe")


def _entsoe_client(session: Any, token: str, timeout_s: float) -> Any:
    """entsoe-py's pandas client on a bounded session, making one try per query (the source
    retries at its next refresh, never inside a planning period)."""
    from bs4 import XMLParsedAsHTMLWarning
    from entsoe.entsoe import EntsoePandasClient

    # entsoe-py reads its XML with bs4's HTML parser on purpose (tag names lower-cased)
    warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)
    return EntsoePandasClient(api_key=token, session=session, retry_count=1, retry_delay=0,
                              timeout=max(1, round(timeout_s)))


def _entsoe_query(query: Any, zone: str, start_utc_s: float, end_utc_s: float, source: str, what: str,
                  **kwargs: Any) -> Any:
    """One of entsoe-py's queries for [start, end); None when the platform has no data for it.
    The client's errors become FeedErrors."""
    import pandas as pd
    import requests
    from entsoe.exceptions import NoMatchingDataError

    try:
        return query(zone, start=pd.Timestamp(start_utc_s, unit="s", tz="UTC"),
                     end=pd.Timestamp(end_utc_s, unit="s", tz="UTC"), **kwargs)
    except NoMatchingDataError:
        return None
    except (requests.RequestException, OSError) as exc:
        raise FeedUnavailable(f"{source}: {type(exc).__name__}: {exc}") from None
    except (ValueError, KeyError, AttributeError, TypeError, NotImplementedError) as exc:
        raise FeedMalformed(f"{source}: cannot parse the {what}: {type(exc).__name__}: {exc}") from None


class EntsoeIntradayPrices:
    """ENTSO-E intraday auction prices (SIDC IDA1, IDA2, IDA3: document A44, contract type A07)
    for a bidding zone, through entsoe-py's `query_intraday_prices`, one query per auction.

    The auctions clear after the day-ahead for the same quarter hours: IDA1 at 15:00 and IDA2
    at 22:00 (CET) the day before, IDA3 at 10:00 for 12:00-24:00. A later auction's price
    replaces an earlier one's; a quarter hour none of them priced (a day not auctioned yet)
    stays a gap, where the planner keeps the day-ahead price."""

    name = "entsoe_intraday"

    def __init__(self, bidding_zone: str, token: str, timeout_s: float, auctions: tuple[int, ...] = (1, 2, 3)) -> None:
        self.bidding_zone = bidding_zone
        self.token = token
        self.timeout_s = timeout_s
        self.auctions = tuple(sorted(auctions))  # the later auction last: its prices win
        self.of = f"{bidding_zone} IDA{','.join(map(str, self.auctions))}"

    def fetch(self, start_utc_s: float, end_utc_s: float) -> FeedSeries:
        parts: list[FeedSeries] = []
        with bounded_session(self.name) as session:
            client = _entsoe_client(session, self.token, self.timeout_s)
            for seq in self.auctions:
                s = _entsoe_query(client.query_intraday_prices, self.bidding_zone, start_utc_s, end_utc_s,
                                  self.name, f"IDA{seq} prices", sequence=seq)
                if s is not None:  # None: not held yet (IDA3 before 10:00), or not published for the zone
                    # entsoe-py gives the auctions' quarter hours (its '15min' series): one row is one too
                    parts.append(_series_from_pandas(s, f"{self.name} IDA{seq}", 900.0))
        if not parts:
            raise FeedNotCovering(f"{self.name}: no intraday auction prices for {self.bidding_zone} in the window")
        return overlaid(parts, self.name)


def overlaid(parts: list[FeedSeries], source: str) -> FeedSeries:
    """The series laid one over the other, a later one's value winning, on one grid from the
    first start to the last end; a step none of them has is NaN (a gap: not a price)."""
    step = parts[0].step_s
    if any(p.step_s != step or (p.start_utc_s - parts[0].start_utc_s) % step for p in parts):
        raise FeedMalformed(f"{source}: the auctions' prices are not on one grid "
                            f"(steps {sorted({p.step_s for p in parts})} s)")
    start = min(p.start_utc_s for p in parts)
    n = round((max(p.end_utc_s for p in parts) - start) / step)
    values = np.full(n, np.nan)
    for p in parts:
        k = round((p.start_utc_s - start) / step)
        values[k:k + p.n_steps] = p.columns[PRICE]
    return FeedSeries(start, step, {PRICE: values})


# OASIS's query per CAISO market, the column its price is in (as gridstatus asks and reads
# them: `lmp_day_ahead_hourly`, `lmp_real_time_15_min`, `lmp_real_time_5_min`) and its step
OASIS_QUERIES = {
    "DAM": ("PRC_LMP", 12, "MW", 3600.0),  # the day-ahead market, hourly
    "RTPD": ("PRC_RTPD_LMP", 3, "PRC", 900.0),  # the 15-minute market (FMM), run ~37 min before its interval
    "RTM": ("PRC_INTVL_LMP", 3, "VALUE", 300.0),  # the 5-minute real-time dispatch
}


class CaisoOasisPrices:
    """CAISO LMP at one node or trading hub, from OASIS (the zipped CSV): the day-ahead market
    (DAM, hourly) or a real-time one (RTPD 15-minute, RTM 5-minute), the queries gridstatus makes
    for its `get_lmp`. gridstatus itself cannot be installed beside openleadr (see
    docs/feeds.md), so the query is made here."""

    OASIS_URL = "https://oasis.caiso.com/oasisapi/SingleZip"

    def __init__(self, node: str, timeout_s: float, url: str = OASIS_URL, market: str = "DAM") -> None:
        if market not in OASIS_QUERIES:
            raise ValueError(f"market {market!r} is not one of {', '.join(OASIS_QUERIES)}")
        self.node = node
        self.timeout_s = timeout_s
        self.url = url
        self.market = market
        # the cache file is named after the feed: the day-ahead keeps its name, the real-time its own
        self.name = "caiso" if market == "DAM" else f"caiso_{market.lower()}"
        self.of = f"{node} {market}"

    def fetch(self, start_utc_s: float, end_utc_s: float) -> FeedSeries:
        import csv
        import io
        import zipfile

        import requests

        def stamp(t: float) -> str:
            return datetime.fromtimestamp(3600 * (t // 3600), UTC).strftime("%Y%m%dT%H:%M-0000")

        queryname, version, price_column, step_s = OASIS_QUERIES[self.market]
        params: dict[str, str | int] = {
            "resultformat": 6, "queryname": queryname, "version": version, "market_run_id": self.market,
            "node": self.node, "startdatetime": stamp(start_utc_s), "enddatetime": stamp(end_utc_s + 3599)}
        try:
            r = requests.get(self.url, params=params, timeout=self.timeout_s, stream=True)
            r.raise_for_status()
            body = bounded_body(r, self.name, timeout_s=self.timeout_s)
        except requests.RequestException as exc:
            raise FeedUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from None
        try:
            z = zipfile.ZipFile(io.BytesIO(body))
            names = checked_zip(z, self.name)
            if any(n.endswith(".xml") for n in names):  # OASIS answers "no data" or an error as a zipped XML
                text = z.read(names[0]).decode("utf-8", "replace")
                code = text.split("<m:ERR_CODE>")[1].split("<")[0] if "<m:ERR_CODE>" in text else "?"
                raise FeedNotCovering(f"{self.name}: OASIS error {code} for {self.node}")
            rows = [row for n in names for row in csv.DictReader(io.TextIOWrapper(z.open(n), encoding="utf-8"))]
        except (zipfile.BadZipFile, UnicodeDecodeError, csv.Error, KeyError) as exc:
            raise FeedMalformed(f"{self.name}: the answer is not OASIS's zipped CSV: {exc}") from None
        times: list[float] = []
        values: list[float] = []
        try:
            for row in sorted((r for r in rows if r["LMP_TYPE"] == "LMP" and r["NODE"] == self.node),
                              key=lambda r: r["INTERVALSTARTTIME_GMT"]):
                start = datetime.fromisoformat(row["INTERVALSTARTTIME_GMT"])
                # the column is GMT by its name: a stamp without an offset is UTC, not this machine's zone
                times.append((start if start.tzinfo is not None else start.replace(tzinfo=UTC)).timestamp())
                values.append(float(row[price_column]))  # $/MWh, whatever OASIS names the column
        except (KeyError, ValueError) as exc:
            raise FeedMalformed(f"{self.name}: unexpected row: {type(exc).__name__}: {exc}") from None
        if not times:
            raise FeedNotCovering(f"{self.name}: no {self.market} LMP for {self.node} in the answer")
        return regular_series(times, {PRICE: values}, self.name, PRICE_RANGE, step_s)


class _SessionClient:
    """The HTTP client nordpool's AioPrices asks through (its sync `Prices` calls the module's
    `requests.get`, which takes no session): a bounded session, called in this worker thread."""

    def __init__(self, session: Any, timeout_s: float) -> None:
        self.session = session
        self.timeout_s = timeout_s

    async def get(self, url: str, params: dict[str, Any]) -> _Answer:
        import json

        r = self.session.get(url, params=params, timeout=self.timeout_s)
        r.raise_for_status()
        # 204: no prices that day, as the sync client takes it (AioPrices then finds no areas: None);
        # json.loads: a body that is no JSON is a ValueError (malformed), not requests' (unavailable)
        return _Answer({} if r.status_code == 204 else json.loads(r.content))


class _Answer:
    def __init__(self, doc: Any) -> None:
        self.doc = doc

    def json(self) -> Any:
        return self.doc


class NordPoolPrices:
    """Nord Pool day-ahead prices for one delivery area, through the `nordpool` package."""

    name = "nordpool"
    ZONE = ZoneInfo("Europe/Oslo")  # delivery days run on central European time

    def __init__(self, area: str, currency: str, resolution_min: int, timeout_s: float) -> None:
        self.area = area
        self.currency = currency
        self.resolution_min = resolution_min
        self.timeout_s = timeout_s
        self.of = f"{area} {currency} {resolution_min} min"

    def fetch(self, start_utc_s: float, end_utc_s: float) -> FeedSeries:
        import asyncio

        with bounded_session("nordpool") as session:
            return asyncio.run(self._fetch(_SessionClient(session, self.timeout_s), start_utc_s, end_utc_s))

    async def _fetch(self, http: _SessionClient, start_utc_s: float, end_utc_s: float) -> FeedSeries:
        import requests
        from nordpool import elspot

        client = elspot.AioPrices(self.currency, http)
        day = datetime.fromtimestamp(start_utc_s, UTC).astimezone(self.ZONE).date()
        last = datetime.fromtimestamp(end_utc_s, UTC).astimezone(self.ZONE).date()
        times: list[float] = []
        values: list[float] = []
        while day <= last:
            try:
                data = await client.fetch(end_date=day, areas=[self.area], resolution=self.resolution_min)
            except requests.RequestException as exc:
                raise FeedUnavailable(f"nordpool: {type(exc).__name__}: {exc}") from None
            except (ValueError, KeyError, TypeError, AttributeError) as exc:  # AttributeError: a document not an object
                raise FeedMalformed(f"nordpool: cannot parse the answer: {type(exc).__name__}: {exc}") from None
            if data is None:  # no prices that day: before the window's data, or not published yet
                if times:
                    break  # (tomorrow before noon): the days so far
                day += timedelta(days=1)
                continue
            try:
                for row in data["areas"][self.area]["values"]:
                    times.append(row["start"].timestamp())
                    values.append(float("nan") if row["value"] is None else float(row["value"]))
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                raise FeedMalformed(f"nordpool: unexpected answer: {type(exc).__name__}: {exc}") from None
            day += timedelta(days=1)
        if not times:
            raise FeedNotCovering(f"nordpool: no day-ahead prices for {self.area} in the window")
        return regular_series(times, {PRICE: values}, "nordpool", PRICE_RANGE)
