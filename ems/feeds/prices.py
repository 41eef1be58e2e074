"""Day-ahead price feeds: ENTSO-E (entsoe-py), Nord Pool (nordpool), CAISO OASIS (a US ISO).

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

from ems.feeds.answer import bounded_body, bounded_session, checked_zip
from ems.feeds.series import FeedMalformed, FeedNotCovering, FeedSeries, FeedUnavailable, regular_series

PRICE = "price_per_mwh"
# past any market's price cap in any currency it is published in (EU day-ahead +-4000 EUR/MWh,
# ~46 000 SEK; CAISO's bid cap 2000 $/MWh): a price beyond is a broken answer, not a market
PRICE_RANGE = {PRICE: (-1e6, 1e6)}


def _series_from_pandas(s: Any, source: str) -> FeedSeries:
    """A pandas Series of prices on a tz-aware index as a FeedSeries."""
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
    return regular_series(times, {PRICE: values}, source, PRICE_RANGE)


class EntsoePrices:
    """ENTSO-E Transparency Platform day-ahead prices (document A44) for a bidding zone,
    through entsoe-py's EntsoePandasClient."""

    name = "entsoe"

    def __init__(self, bidding_zone: str, token: str, timeout_s: float) -> None:
        self.bidding_zone = bidding_zone
        self.token = token
        self.timeout_s = timeout_s

    def fetch(self, start_utc_s: float, end_utc_s: float) -> FeedSeries:
        import pandas as pd
        import requests
        from bs4 import XMLParsedAsHTMLWarning
        from entsoe.entsoe import EntsoePandasClient
        from entsoe.exceptions import NoMatchingDataError

        # entsoe-py reads its XML with bs4's HTML parser on purpose (tag names lower-cased)
        warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)

        # one try: the source retries at its next refresh, never inside a planning period
        with bounded_session("entsoe") as session:
            client = EntsoePandasClient(api_key=self.token, session=session, retry_count=1, retry_delay=0,
                                        timeout=max(1, round(self.timeout_s)))
            try:
                s = client.query_day_ahead_prices(
                    self.bidding_zone, start=pd.Timestamp(start_utc_s, unit="s", tz="UTC"),
                    end=pd.Timestamp(end_utc_s, unit="s", tz="UTC"))
            except NoMatchingDataError:
                raise FeedNotCovering(f"entsoe: no day-ahead prices for {self.bidding_zone} in the window") from None
            except (requests.RequestException, OSError) as exc:
                raise FeedUnavailable(f"entsoe: {type(exc).__name__}: {exc}") from None
            except (ValueError, KeyError, AttributeError, TypeError, NotImplementedError) as exc:
                raise FeedMalformed(f"entsoe: cannot parse the answer: {type(exc).__name__}: {exc}") from None
        return _series_from_pandas(s, "entsoe")


class CaisoOasisPrices:
    """CAISO day-ahead hourly LMP at one node or trading hub, from OASIS (query PRC_LMP, the
    zipped CSV): the query gridstatus makes for its `lmp_day_ahead_hourly`. gridstatus itself
    cannot be installed beside openleadr (see docs/feeds.md), so the query is made here."""

    name = "caiso"
    OASIS_URL = "https://oasis.caiso.com/oasisapi/SingleZip"

    def __init__(self, node: str, timeout_s: float, url: str = OASIS_URL) -> None:
        self.node = node
        self.timeout_s = timeout_s
        self.url = url

    def fetch(self, start_utc_s: float, end_utc_s: float) -> FeedSeries:
        import csv
        import io
        import zipfile

        import requests

        def stamp(t: float) -> str:
            return datetime.fromtimestamp(3600 * (t // 3600), UTC).strftime("%Y%m%dT%H:%M-0000")

        params: dict[str, str | int] = {
            "resultformat": 6, "queryname": "PRC_LMP", "version": 12, "market_run_id": "DAM", "node": self.node,
            "startdatetime": stamp(start_utc_s), "enddatetime": stamp(end_utc_s + 3599)}
        try:
            r = requests.get(self.url, params=params, timeout=self.timeout_s, stream=True)
            r.raise_for_status()
            body = bounded_body(r, "caiso")
        except requests.RequestException as exc:
            raise FeedUnavailable(f"caiso: {type(exc).__name__}: {exc}") from None
        try:
            z = zipfile.ZipFile(io.BytesIO(body))
            names = checked_zip(z, "caiso")
            if any(n.endswith(".xml") for n in names):  # OASIS answers "no data" or an error as a zipped XML
                text = z.read(names[0]).decode("utf-8", "replace")
                code = text.split("<m:ERR_CODE>")[1].split("<")[0] if "<m:ERR_CODE>" in text else "?"
                raise FeedNotCovering(f"caiso: OASIS error {code} for {self.node}")
            rows = [row for n in names for row in csv.DictReader(io.TextIOWrapper(z.open(n), encoding="utf-8"))]
        except (zipfile.BadZipFile, UnicodeDecodeError, csv.Error, KeyError) as exc:
            raise FeedMalformed(f"caiso: the answer is not OASIS's zipped CSV: {exc}") from None
        times: list[float] = []
        values: list[float] = []
        try:
            for row in sorted((r for r in rows if r["LMP_TYPE"] == "LMP" and r["NODE"] == self.node),
                              key=lambda r: r["INTERVALSTARTTIME_GMT"]):
                start = datetime.fromisoformat(row["INTERVALSTARTTIME_GMT"])
                # the column is GMT by its name: a stamp without an offset is UTC, not this machine's zone
                times.append((start if start.tzinfo is not None else start.replace(tzinfo=UTC)).timestamp())
                values.append(float(row["MW"]))  # OASIS names the price column MW ($/MWh)
        except (KeyError, ValueError) as exc:
            raise FeedMalformed(f"caiso: unexpected row: {type(exc).__name__}: {exc}") from None
        if not times:
            raise FeedNotCovering(f"caiso: no day-ahead LMP for {self.node} in the answer")
        return regular_series(times, {PRICE: values}, "caiso", PRICE_RANGE)


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
