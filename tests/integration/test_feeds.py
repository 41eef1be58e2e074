"""Price and weather feeds on recorded responses, served by an HTTP server on loopback.

The third-party clients (entsoe-py, nordpool) are pointed at the server through their own URL
constants; the CAISO OASIS and Open-Meteo adapters take the URL from the site file. The
bodies are in tests/data/feeds/ (README there says where each comes from). Each test reads
the values it expects from the fixture itself, never a number typed in here.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import gzip
import io
import json
import math
import tracemalloc
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from ems.broker import free_port
from ems.feeds.cache import FeedCache
from ems.feeds.planner_inputs import PlannerFeeds, PriceFeedUse, planner_feeds
from ems.feeds.prices import PRICE, CaisoOasisPrices, EntsoeIntradayPrices, EntsoePrices, NordPoolPrices
from ems.feeds.series import FeedMalformed, FeedSeries
from ems.feeds.settings import (
    CaisoFeedConfig,
    CaisoRealtimeFeedConfig,
    EntsoeFeedConfig,
    NordPoolFeedConfig,
    WeatherFeedConfig,
)
from ems.feeds.source import FeedSource
from ems.feeds.weather import GHI, GTI, TEMPERATURE, OpenMeteoWeather
from ems.load_model import LoadModel
from ems.planning.builder import PlanBuilder, PlannerSettings
from ems.tariff.calendar import tariff_seconds
from ems.tariff.model import Tariff

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "feeds"
ENTSOE_XML = DATA / "entsoe_a44_de_lu_2026-01-15.xml"
ENTSOE_NO_DATA = DATA / "entsoe_acknowledgement_no_data.xml"
NORDPOOL_JSON = DATA / "nordpool_fi_2025-05-07_60min.json"
CAISO_ZIP = DATA / "caiso_oasis_prc_lmp_dam_2026-07-15.zip"
CAISO_NO_DATA = DATA / "caiso_oasis_no_data.zip"
ENTSOE_IDA = {"1": DATA / "entsoe_a44_ida1_de_lu_2026-01-15.xml", "3": DATA / "entsoe_a44_ida3_de_lu_2026-01-15.xml"}
CAISO_RT_ZIP = {"RTPD": DATA / "caiso_oasis_prc_rtpd_lmp_2026-07-15.zip",
                "RTM": DATA / "caiso_oasis_prc_intvl_lmp_2026-07-15.zip"}
OPEN_METEO_JSON = DATA / "open_meteo_forecast_berlin_2026-06-15.json"
FLOOD_CAP_BYTES = 256 << 20  # the most a flooding answer sends: 32 times the bound, never reached while it holds


def utc_s(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@dataclass
class Served:
    """What the server answers per source: the recorded body, or a failure set by a test."""

    base: str = ""
    override: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)  # source -> (status, body, type)
    queries: list[dict[str, str]] = field(default_factory=list)
    hang_s: float = 0.0  # answer this late
    flood: dict[str, str] = field(default_factory=dict)  # "endless" | "declared" | "gzip" | "drip" | "drip-declared"
    flooded_bytes: int = 0  # what a flood got into the connection before the client hung up
    hung_up: bool = False  # the client closed the connection while the flood was still coming

    async def flooded(self, request: web.Request, mode: str) -> web.StreamResponse:
        """An answer that never ends (chunked, no length), that declares 64 GiB and sends for
        ever, a small gzip that decodes past the bound, or a byte every 50 ms (for a minute:
        never a read's timeout)."""
        if mode == "gzip":
            return web.Response(body=gzip_bomb(), headers={"Content-Encoding": "gzip"},
                                content_type="application/octet-stream")
        resp = web.StreamResponse()
        if mode in ("declared", "drip-declared"):
            resp.content_length = 64 << 30 if mode == "declared" else 1200
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        if mode.startswith("drip"):
            try:
                for _ in range(1200):
                    await resp.write(b"0")
                    await asyncio.sleep(0.05)
            except ConnectionError:
                self.hung_up = True
            return resp
        chunk = b"0" * (64 << 10)
        try:
            while self.flooded_bytes < FLOOD_CAP_BYTES:
                await resp.write(chunk)
                self.flooded_bytes += len(chunk)
        except ConnectionError:
            self.hung_up = True
        return resp

    def answer(self, source: str, status: int, body: bytes, content_type: str) -> web.Response:
        status, body, content_type = self.override.get(source, (status, body, content_type))
        return web.Response(status=status, body=body, content_type=content_type)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    s = Served()

    async def entsoe(request: web.Request) -> web.StreamResponse:
        s.queries.append(dict(request.query))
        # contract type A07: an intraday auction's prices (its number in classificationSequence)
        name = "entsoe_intraday" if request.query.get("contract_MarketAgreement.type") == "A07" else "entsoe"
        if name in s.flood:
            return await s.flooded(request, s.flood[name])
        if request.query.get("offset", "0") != "0":  # entsoe-py pages by 100 documents until "no data"
            return web.Response(status=200, body=ENTSOE_NO_DATA.read_bytes(), content_type="application/xml")
        if name == "entsoe_intraday":
            ida = ENTSOE_IDA.get(request.query.get("classificationSequence_AttributeInstanceComponent.position", ""))
            body = ENTSOE_NO_DATA if ida is None else ida  # IDA2 not recorded: "no data", as the platform says
            return s.answer(name, 200, body.read_bytes(), "application/xml")
        return s.answer("entsoe", 200, ENTSOE_XML.read_bytes(), "application/xml")

    async def nordpool(request: web.Request) -> web.StreamResponse:
        s.queries.append(dict(request.query))
        if "nordpool" in s.flood:
            return await s.flooded(request, s.flood["nordpool"])
        if request.query.get("date") != "2025-05-07":  # the one day recorded: others not published
            return s.answer("nordpool", 204, b"", "application/json")
        return s.answer("nordpool", 200, NORDPOOL_JSON.read_bytes(), "application/json")

    async def caiso(request: web.Request) -> web.StreamResponse:
        s.queries.append(dict(request.query))
        market = request.query.get("market_run_id", "DAM")
        if market != "DAM" and "caiso_rt" in s.flood:
            return await s.flooded(request, s.flood["caiso_rt"])
        if market == "DAM":
            resp = s.answer("caiso", 200, CAISO_ZIP.read_bytes(), "application/x-zip-compressed")
        else:  # the real-time markets' answers, failed together by a test ("caiso_rt")
            resp = s.answer("caiso_rt", 200, CAISO_RT_ZIP[market].read_bytes(), "application/x-zip-compressed")
        resp.headers["Content-Disposition"] = f"inline; filename=20260715_20260717_{market}_LMP.csv.zip;"
        return resp

    async def open_meteo(request: web.Request) -> web.Response:
        s.queries.append(dict(request.query))
        await asyncio.sleep(s.hang_s)
        return s.answer("open_meteo", 200, OPEN_METEO_JSON.read_bytes(), "application/json")

    app = web.Application()
    app.router.add_get("/entsoe/api", entsoe)
    app.router.add_get("/nordpool/api/DayAheadPriceIndices", nordpool)
    app.router.add_get("/caiso/SingleZip", caiso)
    app.router.add_get("/open-meteo/v1/forecast", open_meteo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    s.base = f"http://127.0.0.1:{port}"
    try:
        yield s
    finally:
        await runner.cleanup()


@pytest.fixture
def clients_on_loopback(served: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """entsoe-py and nordpool read their endpoint from a module constant: point it at the server."""
    import entsoe.entsoe
    from nordpool import elspot

    monkeypatch.setattr(entsoe.entsoe, "URL", f"{served.base}/entsoe/api")
    monkeypatch.setattr(elspot.Prices, "API_URL", f"{served.base}/nordpool/api")
    return served


@functools.cache
def gzip_bomb() -> bytes:
    from ems.feeds.answer import MAX_ANSWER_BYTES

    return gzip.compress(b"0" * (4 * MAX_ANSWER_BYTES), compresslevel=9)


def source(feed: Any, cache: FeedCache, now: list[float], min_ahead_h: float = 10.0) -> FeedSource:
    return FeedSource(feed, cache, refresh_s=3600.0, timeout_s=10.0, min_ahead_s=min_ahead_h * 3600.0,
                      fetch_ahead_s=2 * 86_400.0, keep_s=2 * 86_400.0, clock=lambda: now[0])


def entsoe_points(path: Path = ENTSOE_XML) -> list[tuple[float, float]]:
    """(UTC s, EUR/MWh) of every 15-minute step in a recorded document, A03 gaps repeated."""
    ns = {"m": "urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3"}
    out: list[tuple[float, float]] = []
    for period in ET.parse(path).getroot().iterfind(".//m:Period", ns):
        start = datetime.fromisoformat(period.findtext("m:timeInterval/m:start", namespaces=ns) or "").timestamp()
        end = datetime.fromisoformat(period.findtext("m:timeInterval/m:end", namespaces=ns) or "").timestamp()
        pts = {int(p.findtext("m:position", namespaces=ns) or 0): float(p.findtext("m:price.amount", namespaces=ns)
                                                                         or "nan")
               for p in period.iterfind("m:Point", ns)}
        value = math.nan
        for pos in range(1, round((end - start) / 900.0) + 1):
            value = pts.get(pos, value)
            out.append((start + (pos - 1) * 900.0, value))
    return out


# --- a good fetch from each source --------------------------------------------------------------

async def test_entsoe_day_ahead_prices_through_entsoe_py(clients_on_loopback: Served, tmp_path: Path) -> None:
    now = [utc_s(2026, 1, 15, 12)]
    src = source(EntsoePrices("DE_LU", "test-token", 10.0), FeedCache(tmp_path), now)
    assert await src.refresh()
    assert [q["offset"] for q in clients_on_loopback.queries] == ["0", "100"]  # one page, then "no data"
    q = clients_on_loopback.queries[0]
    assert q["documentType"] == "A44" and q["in_Domain"] == "10Y1001A1001A82H" and q["securityToken"] == "test-token"
    g = src.series(now[0], now[0] + 86_400.0)
    assert g is not None and g.step_s == 900.0
    expected = entsoe_points()
    assert g.start_utc_s == expected[0][0] and g.n_steps == len(expected)
    np.testing.assert_allclose(g.columns[PRICE], [v for _, v in expected])
    assert src.failures == {} and src.last_error is None


async def test_nordpool_day_ahead_prices_on_its_recorded_answer(clients_on_loopback: Served, tmp_path: Path) -> None:
    now = [utc_s(2025, 5, 7, 6)]
    src = source(NordPoolPrices("FI", "EUR", 60, 10.0), FeedCache(tmp_path), now)
    assert await src.refresh()
    rec = json.loads(NORDPOOL_JSON.read_text())["multiIndexEntries"]
    g = src.good
    assert g is not None and g.step_s == 3600.0
    assert g.start_utc_s == datetime.fromisoformat(rec[0]["deliveryStart"]).timestamp()
    np.testing.assert_allclose(g.columns[PRICE], [e["entryPerArea"]["FI"] for e in rec])
    asked = {q["date"] for q in clients_on_loopback.queries}
    assert "2025-05-07" in asked and all(q["indexNames"] == "FI" for q in clients_on_loopback.queries)


async def test_caiso_day_ahead_lmp_from_oasis(served: Served, tmp_path: Path) -> None:
    now = [utc_s(2026, 7, 15, 14)]
    src = source(CaisoOasisPrices("TH_NP15_GEN-APND", 10.0, f"{served.base}/caiso/SingleZip"), FeedCache(tmp_path), now)
    assert await src.refresh()
    q = served.queries[-1]
    assert q["queryname"] == "PRC_LMP" and q["market_run_id"] == "DAM" and q["node"] == "TH_NP15_GEN-APND"
    with zipfile.ZipFile(CAISO_ZIP) as z:
        rows = list(csv.DictReader(io.TextIOWrapper(z.open(z.namelist()[0]), encoding="utf-8")))
    lmp = [float(r["MW"]) for r in rows if r["LMP_TYPE"] == "LMP"]  # not the energy, congestion, loss parts
    g = src.good
    assert g is not None and g.step_s == 3600.0
    np.testing.assert_allclose(g.columns[PRICE], lmp)


async def test_open_meteo_temperature_and_irradiance(served: Served, tmp_path: Path) -> None:
    now = [utc_s(2026, 6, 15, 9)]
    feed = OpenMeteoWeather(52.52, 13.41, tilt_deg=30.0, azimuth_deg=0.0, past_days=14, forecast_days=3,
                            url=f"{served.base}/open-meteo/v1/forecast", timeout_s=10.0)
    src = FeedSource(feed, FeedCache(tmp_path), refresh_s=3600.0, timeout_s=10.0, min_ahead_s=24 * 3600.0,
                     fetch_ahead_s=3 * 86_400.0, keep_s=70 * 86_400.0, clock=lambda: now[0])
    assert await src.refresh()
    q = served.queries[-1]
    assert q["hourly"] == "temperature_2m,shortwave_radiation,global_tilted_irradiance" and q["tilt"] == "30.0"
    rec = json.loads(OPEN_METEO_JSON.read_text())["hourly"]
    g = src.good
    assert g is not None and g.start_utc_s == rec["time"][0] and g.n_steps == len(rec["time"]) - 1
    np.testing.assert_allclose(g.columns[TEMPERATURE], rec["temperature_2m"][:-1])
    # Open-Meteo's radiation is the hour before its time: it holds for the step one earlier here
    np.testing.assert_allclose(g.columns[GHI], rec["shortwave_radiation"][1:])
    np.testing.assert_allclose(g.columns[GTI], rec["global_tilted_irradiance"][1:])


# --- failures: counted, logged once, the last good series stays ---------------------------------

async def test_a_failing_feed_falls_back_to_the_last_good_series(clients_on_loopback: Served, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    now = [utc_s(2026, 1, 15, 12)]
    src = source(EntsoePrices("DE_LU", "test-token", 10.0), FeedCache(tmp_path), now)
    assert await src.refresh()
    good = src.good
    clients_on_loopback.override["entsoe"] = (503, b"<html>Service Unavailable</html>", "text/html")
    for _ in range(3):
        now[0] += 3600.0
        assert not await src.refresh()
    assert src.failures == {"unavailable": 3} and src.last_error == "unavailable"
    assert src.series(now[0], now[0] + 86_400.0) is good  # still covering: in force
    assert capsys.readouterr().out.count("feed failed") == 1  # once per outage
    clients_on_loopback.override.clear()
    now[0] += 3600.0
    assert await src.refresh() and src.last_error is None
    assert "feed back" in capsys.readouterr().out


async def test_a_source_that_hangs_is_cut_off_by_the_timeout(served: Served, tmp_path: Path) -> None:
    served.hang_s = 1.0  # the server answers after 1 s; the source waits 0.2 s
    feed = OpenMeteoWeather(52.52, 13.41, url=f"{served.base}/open-meteo/v1/forecast", timeout_s=10.0)
    src = FeedSource(feed, FeedCache(tmp_path), refresh_s=3600.0, timeout_s=0.2, min_ahead_s=0.0,
                     fetch_ahead_s=0.0, keep_s=0.0, clock=lambda: utc_s(2026, 6, 15, 9))
    assert not await src.refresh()
    assert src.failures == {"unavailable": 1} and src.last_error == "unavailable"
    assert not await src.refresh()  # the stuck fetch still runs: no second one on top of it
    assert src.failures == {"unavailable": 2} and len(served.queries) == 1
    await asyncio.sleep(1.2)  # the stuck one ends (its thread cannot be killed): then fetches go on
    served.hang_s = 0.0
    assert await src.refresh() and src.good is not None


@pytest.mark.parametrize(("field_name", "bad"), [
    ("temperature_2m", None), ("shortwave_radiation", "NaN"),  # not a number
    ("temperature_2m", 1e30), ("shortwave_radiation", -5000.0),  # a value no sky gives
])
async def test_a_weather_answer_that_is_no_weather_is_refused_and_counted(served: Served, tmp_path: Path,
                                                                          field_name: str, bad: Any) -> None:
    now = [utc_s(2026, 6, 15, 9)]
    doc = json.loads(OPEN_METEO_JSON.read_text())
    doc["hourly"][field_name][200] = bad
    served.override["open_meteo"] = (200, json.dumps(doc).encode(), "application/json")
    feed = OpenMeteoWeather(52.52, 13.41, url=f"{served.base}/open-meteo/v1/forecast", timeout_s=10.0)
    src = source(feed, FeedCache(tmp_path), now)
    assert not await src.refresh()
    assert src.failures == {"malformed": 1} and src.good is None


async def test_oasis_stamps_without_an_offset_are_gmt_not_the_machines_zone(served: Served, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "America/Los_Angeles")  # the machine's zone, which the stamps must not take
    time.tzset()
    try:
        with zipfile.ZipFile(CAISO_ZIP) as z:
            text = z.read(z.namelist()[0]).replace(b"-00:00", b"")
        served.override["caiso"] = (200, _zip_of(text), "application/x-zip-compressed")
        feed = CaisoOasisPrices("TH_NP15_GEN-APND", 10.0, f"{served.base}/caiso/SingleZip")
        g = await asyncio.to_thread(feed.fetch, utc_s(2026, 7, 15, 0), utc_s(2026, 7, 17, 0))
        assert g.start_utc_s == utc_s(2026, 7, 15, 7)  # OASIS's first hour: 07:00 GMT (midnight in California)
    finally:
        monkeypatch.undo()  # the zone as it was, for the tests after this one
        time.tzset()


async def test_a_price_past_any_market_cap_is_refused(served: Served, tmp_path: Path) -> None:
    # a finite 1e300 $/MWh would reach the planner's LP as a price
    with zipfile.ZipFile(CAISO_ZIP) as z:
        name = z.namelist()[0]
        rows = list(csv.DictReader(io.TextIOWrapper(z.open(name), encoding="utf-8")))
    first = next(r for r in rows if r["LMP_TYPE"] == "LMP")
    first["MW"] = "1e300"
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    served.override["caiso"] = (200, _zip_of(text.getvalue().encode()), "application/x-zip-compressed")
    src = source(CaisoOasisPrices("TH_NP15_GEN-APND", 10.0, f"{served.base}/caiso/SingleZip"), FeedCache(tmp_path),
                 [utc_s(2026, 7, 15, 14)])
    assert not await src.refresh()
    assert src.failures == {"malformed": 1} and src.good is None


@pytest.mark.parametrize("body", [
    b"<Publication_MarketDocument><TimeSeries><curveType>A01</curveType></TimeSeries>",
    ENTSOE_XML.read_bytes().replace(b"<price.amount>", b"<price.amount>x", 1),
])
async def test_a_malformed_price_document_is_refused_and_counted(clients_on_loopback: Served, tmp_path: Path,
                                                                 body: bytes) -> None:
    now = [utc_s(2026, 1, 15, 12)]
    clients_on_loopback.override["entsoe"] = (200, body, "application/xml")
    src = source(EntsoePrices("DE_LU", "test-token", 10.0), FeedCache(tmp_path), now)
    assert not await src.refresh()
    assert sum(src.failures.values()) == 1 and src.failures["malformed"] + src.failures["not_covering"] == 1
    assert src.good is None


async def test_entsoe_no_data_is_not_covering(clients_on_loopback: Served, tmp_path: Path) -> None:
    clients_on_loopback.override["entsoe"] = (200, ENTSOE_NO_DATA.read_bytes(), "application/xml")
    src = source(EntsoePrices("DE_LU", "test-token", 10.0), FeedCache(tmp_path), [utc_s(2026, 1, 15, 12)])
    assert not await src.refresh()
    assert src.failures == {"not_covering": 1}


async def test_oasis_no_data_is_not_covering(served: Served, tmp_path: Path) -> None:
    served.override["caiso"] = (200, CAISO_NO_DATA.read_bytes(), "application/x-zip-compressed")
    src = source(CaisoOasisPrices("TH_NP15_GEN-APND", 10.0, f"{served.base}/caiso/SingleZip"), FeedCache(tmp_path),
                 [utc_s(2026, 7, 15, 14)])
    assert not await src.refresh()
    assert src.failures == {"not_covering": 1}


async def test_a_series_that_does_not_reach_far_enough_is_refused(clients_on_loopback: Served,
                                                                  tmp_path: Path) -> None:
    # at 14:00 UTC on the 16th the recorded prices reach 9 h ahead: less than the 10 h asked
    now = [utc_s(2026, 1, 16, 14)]
    src = source(EntsoePrices("DE_LU", "test-token", 10.0), FeedCache(tmp_path), now)
    assert not await src.refresh()
    assert src.failures == {"not_covering": 1} and src.good is None


async def test_a_stale_series_is_not_used_and_the_planner_takes_the_tariff(clients_on_loopback: Served,
                                                                           tmp_path: Path) -> None:
    now = [utc_s(2026, 1, 15, 12)]
    src = source(EntsoePrices("DE_LU", "test-token", 10.0), FeedCache(tmp_path), now)
    assert await src.refresh()
    cfg = EntsoeFeedConfig(source="entsoe", bidding_zone="DE_LU", adder_per_kwh=0.1)
    feeds = PlannerFeeds("Europe/Berlin", PriceFeedUse(src, cfg), None)
    b = builder()
    base = b.tariff
    feeds.apply(b, local_s(now[0], "Europe/Berlin"))
    assert b.tariff is not base and b.tariff.dynamic_prices is not None
    # the feed goes down for 26 h: the last good series no longer reaches 10 h ahead (9 h)
    clients_on_loopback.override["entsoe"] = (500, b"", "text/plain")
    now[0] += 26 * 3600.0
    assert not await src.refresh()
    feeds.apply(b, local_s(now[0], "Europe/Berlin"))
    feeds.apply(b, local_s(now[0] + 900.0, "Europe/Berlin"))
    assert b.tariff is base and src.stale == 1  # counted once for the stretch


# --- the planner's inputs -----------------------------------------------------------------------

def local_s(utc: float, zone: str) -> float:
    from zoneinfo import ZoneInfo

    return tariff_seconds(datetime.fromtimestamp(utc, UTC).astimezone(ZoneInfo(zone)).replace(tzinfo=None))


def builder(forecast_model: str = "profile") -> PlanBuilder:
    tariff = Tariff.model_validate({"name": "flat", "energy_periods": [{"tiers": [{"rate_per_kwh": 0.2}]}]})
    return PlanBuilder(tariff, PlannerSettings(step_s=900.0, horizon_steps=96, soc_min=0.1, soc_max=0.9,
                                               reserve_soc=0.0, charge_efficiency=0.95, discharge_efficiency=0.95,
                                               wear_cost_per_kwh=0.0, forecast_model=forecast_model))


def test_a_cached_series_without_the_feeds_column_leaves_the_plan_on_the_sites_tariff(tmp_path: Path) -> None:
    # a cache file crafted (or left) with another column: read back, it is a series, but not of prices;
    # applied, it raised KeyError inside the control period, which stops the controller
    now = utc_s(2026, 1, 15, 12, 5)
    doc = {"of": "DE_LU", "start_utc_s": now - 86_400.0, "step_s": 3600.0, "fetched_utc_s": now,
           "columns": {"temperature_c": [5.0] * 96}}
    (tmp_path / "entsoe.json").write_text(json.dumps(doc))
    src = source(EntsoePrices("DE_LU", "test-token", 10.0), FeedCache(tmp_path), [now])
    assert src.good is not None
    feeds = PlannerFeeds("Europe/Berlin", PriceFeedUse(src, EntsoeFeedConfig(source="entsoe", bidding_zone="DE_LU")),
                         None)
    b = builder()
    site_tariff = b.tariff
    feeds.apply(b, local_s(now, "Europe/Berlin"))
    assert b.tariff is site_tariff and feeds.apply_errors == 1 and feeds.priced_plans == 0


async def test_the_planner_prices_on_the_feed_in_local_time(clients_on_loopback: Served, tmp_path: Path) -> None:
    now = [utc_s(2026, 1, 15, 12, 5)]
    src = source(EntsoePrices("DE_LU", "test-token", 10.0), FeedCache(tmp_path), now)
    assert await src.refresh()
    cfg = EntsoeFeedConfig(source="entsoe", bidding_zone="DE_LU", adder_per_kwh=0.1, export_at_price=True)
    feeds = PlannerFeeds("Europe/Berlin", PriceFeedUse(src, cfg), None)
    b = builder()
    feeds.apply(b, local_s(now[0], "Europe/Berlin"))
    dyn = b.tariff.dynamic_prices
    assert dyn is not None and dyn.mode == "replace" and dyn.step_s == 900 and len(dyn.buy_per_kwh) == 96
    assert dyn.start == datetime(2026, 1, 15, 13, 0)  # the plan's first step: 12:00 UTC is 13:00 in Berlin
    prices = dict(entsoe_points())
    t0 = utc_s(2026, 1, 15, 12)
    for k in (0, 40, 95):
        t = t0 + k * 900.0
        # past the recorded end (23:00 UTC on the 16th) the last published day repeats
        want = prices[t] if t in prices else prices[t - 86_400.0]
        assert dyn.buy_per_kwh[k] == pytest.approx(want / 1000.0 + 0.1)
    assert dyn.sell_per_kwh == dyn.buy_per_kwh and feeds.priced_plans == 1


async def test_the_weather_feeds_the_load_model_and_the_pv_sky(served: Served, tmp_path: Path) -> None:
    now = [utc_s(2026, 6, 15, 9)]
    cfg = WeatherFeedConfig(tilt_deg=30.0, url=f"{served.base}/open-meteo/v1/forecast")
    feeds = planner_feeds(None, cfg, "Europe/Berlin", tmp_path, (52.52, 13.41))
    assert feeds is not None and feeds.weather is not None
    feeds.weather.clock = lambda: now[0]
    assert await feeds.weather.refresh()
    b = builder("learned")
    assert isinstance(b.model, LoadModel)
    feeds.apply(b, local_s(now[0], "Europe/Berlin"))
    rec = json.loads(OPEN_METEO_JSON.read_text())["hourly"]
    temp = b.model.temperature
    assert temp is not None
    # 11:00 in Berlin on the 15th is 09:00 UTC: the recorded temperature of that hour
    k = rec["time"].index(int(now[0]))
    assert temp.at(np.array([local_s(now[0], "Europe/Berlin")]))[0] == pytest.approx(rec["temperature_2m"][k])
    assert b.sky is not None
    sky = b.sky(local_s(now[0], "Europe/Berlin"), 900.0, 4)  # the plane's irradiance of the hour from 09:00 UTC
    np.testing.assert_allclose(sky, rec["global_tilted_irradiance"][k + 1])
    assert (tmp_path / "feeds" / "open_meteo.json").exists()


async def test_the_cache_survives_a_restart(clients_on_loopback: Served, tmp_path: Path) -> None:
    now = [utc_s(2026, 1, 15, 12)]
    first = source(EntsoePrices("DE_LU", "test-token", 10.0), FeedCache(tmp_path), now)
    assert await first.refresh()
    # restarted while the source is down: the series from disk is in force at once
    clients_on_loopback.override["entsoe"] = (500, b"", "text/plain")
    again = source(EntsoePrices("DE_LU", "test-token", 10.0), FeedCache(tmp_path), now)
    assert again.fetched_utc_s == now[0] and again.fetches == 0
    g = again.series(now[0] + 3600.0, now[0] + 86_400.0)
    assert g is not None and first.good is not None
    np.testing.assert_array_equal(g.columns[PRICE], first.good.columns[PRICE])
    assert g.start_utc_s == first.good.start_utc_s and g.step_s == first.good.step_s
    assert not await again.refresh() and again.series(now[0], now[0] + 86_400.0) is g


async def test_a_cache_of_another_zone_is_not_served_after_a_restart(clients_on_loopback: Served,
                                                                      tmp_path: Path) -> None:
    """The cache file is named after the source only: a site file moved to another bidding zone
    (or a state dir copied from another site) used to serve the old zone's prices as fresh at
    start, fetching nothing for refresh_s, and for as long as they covered while the source was down."""
    now = [utc_s(2026, 1, 15, 12)]
    first = source(EntsoePrices("DE_LU", "test-token", 10.0), FeedCache(tmp_path), now)
    assert await first.refresh()
    clients_on_loopback.override["entsoe"] = (500, b"", "text/plain")
    other = source(EntsoePrices("FR", "test-token", 10.0), FeedCache(tmp_path), now)
    assert other.good is None and other.fetched_utc_s is None  # fetched at once, not served DE_LU's
    assert other.series(now[0] + 3600.0, now[0] + 86_400.0) is None
    again = source(EntsoePrices("DE_LU", "test-token", 10.0), FeedCache(tmp_path), now)
    assert again.good is not None and again.fetched_utc_s == now[0]  # its own zone's still is


def test_an_unreadable_cache_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "entsoe.json").write_text("{not json")
    assert FeedCache(tmp_path).load("entsoe") is None
    (tmp_path / "entsoe.json").write_text("[" * 200_000)  # nested past the parser's depth: RecursionError
    assert FeedCache(tmp_path).load("entsoe") is None


@pytest.mark.parametrize("bad", [{"step_s": 1e-300}, {"step_s": float("inf")}, {"step_s": float("nan")},
                                 {"start_utc_s": float("nan")}, {"fetched_utc_s": float("inf")},
                                 {"columns": {PRICE: [1.0, None]}}, {"columns": {PRICE: [1.0, float("inf"), 2.0]}},
                                 {"columns": {PRICE: []}}])
def test_a_cache_file_that_is_no_series_of_ours_is_ignored(tmp_path: Path, bad: dict[str, Any]) -> None:
    doc = {"start_utc_s": 1.7e9, "step_s": 3600.0, "fetched_utc_s": 1.7e9, "columns": {PRICE: [1.0, 2.0]}}
    (tmp_path / "entsoe.json").write_text(json.dumps(doc))
    assert FeedCache(tmp_path).load("entsoe") is not None
    (tmp_path / "entsoe.json").write_text(json.dumps(doc | bad))  # json writes NaN and Infinity
    assert FeedCache(tmp_path).load("entsoe") is None


async def test_a_cache_fetched_in_the_future_does_not_put_the_feed_to_sleep(served: Served, tmp_path: Path) -> None:
    now = [utc_s(2026, 6, 15, 9)]
    feed = OpenMeteoWeather(52.52, 13.41, url=f"{served.base}/open-meteo/v1/forecast", timeout_s=10.0)
    first = source(feed, FeedCache(tmp_path), now)
    assert await first.refresh() and first.good is not None
    FeedCache(tmp_path).save(feed.name, first.good, now[0] + 365 * 86_400.0)  # a clock set back a year since
    again = source(feed, FeedCache(tmp_path), now)
    task = asyncio.create_task(again.run())
    try:
        for _ in range(500):  # fetched at once (not after a year's sleep)
            if again.fetches:
                break
            await asyncio.sleep(0.01)
        assert again.fetches >= 1
    finally:
        task.cancel()


async def test_the_live_planner_runs_the_feeds_beside_its_worker(served: Served, tmp_path: Path) -> None:
    from ems.planning.live import LivePlanner
    from ems.planning.runner import PlanningRunner

    cfg = CaisoFeedConfig(source="caiso", node="TH_NP15_GEN-APND", url=f"{served.base}/caiso/SingleZip",
                          refresh_s=60.0, min_ahead_h=0.0)
    feeds = planner_feeds(cfg, None, "America/Los_Angeles", tmp_path, None)
    assert feeds is not None and feeds.price is not None

    class Peaks:
        def peak_kw(self, key: Any) -> float:
            return 0.0

        def tou_peak_kw(self, key: Any) -> float:
            return 0.0

        def past_peaks_kw(self) -> dict[Any, float]:
            return {}

    live = LivePlanner(PlanningRunner(builder(), 900.0, Peaks()), UTC, feeds)
    task = asyncio.create_task(live.run())
    try:
        for _ in range(200):
            if feeds.price.source.fetches:
                break
            await asyncio.sleep(0.02)
        assert feeds.price.source.fetches >= 1  # fetched in its own task, not on a control period
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_nordpool_config_names_the_area_field() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="area 'XX'"):
        NordPoolFeedConfig(source="nordpool", area="XX")


async def test_the_controller_runs_the_weather_feed_and_reports_it(served: Served, broker: Any, make_site: Any,
                                                                   tmp_path: Path) -> None:
    """`ems run`'s controller with a weather feed: fetched in its own task, cached under the state
    dir, its counts in the site status. The recorded forecast is served with its hours moved to
    now (the values as recorded)."""
    from ems.clock import ScaledClock
    from tests.conftest import running_controller, running_site, wait_for
    from tests.unit.test_tariff_signals import URDB

    if not URDB.exists():
        pytest.skip("shared data not present")
    doc = json.loads(OPEN_METEO_JSON.read_text())
    shift = 3600 * (int(datetime.now(UTC).timestamp()) // 3600) - doc["hourly"]["time"][14 * 24]
    doc["hourly"]["time"] = [t + shift for t in doc["hourly"]["time"]]
    served.override["open_meteo"] = (200, json.dumps(doc).encode(), "application/json")
    cfg = make_site(broker.url, state={"dir": str(tmp_path)}, policies={
        "battery": {"soc_min": 0.1, "soc_max": 0.95},
        "arbitrage": {"tariff": str(URDB), "pv_location": {"latitude_deg": 52.52, "longitude_deg": 13.41},
                      "weather_feed": {"url": f"{served.base}/open-meteo/v1/forecast", "tilt_deg": 30}}})
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock), running_controller(cfg, clock) as ctl:
        assert ctl.planner is not None and ctl.planner.feeds is not None
        await wait_for(lambda: ctl.last is not None and "feeds" in (ctl.last.status.get("plan") or {})
                       and ctl.last.status["plan"]["feeds"]["open_meteo"]["fetches"] >= 1, timeout_s=15)
        status = ctl.last.status["plan"]["feeds"]["open_meteo"]
        assert status["failures"] == {} and status["error"] is None
    cached = json.loads((tmp_path / "feeds" / "open_meteo.json").read_text())
    assert cached["columns"]["temperature_c"][-1] == doc["hourly"]["temperature_2m"][-2]


def _zip_of(member: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("PRC_LMP_DAM.csv", member)
    return buf.getvalue()


async def test_a_zip_bomb_or_an_oversized_answer_is_refused_before_it_is_read(served: Served) -> None:
    from ems.feeds.answer import MAX_ANSWER_BYTES, MAX_UNZIPPED_BYTES

    feed = CaisoOasisPrices("TH_NP15_GEN-APND", 10.0, f"{served.base}/caiso/SingleZip")
    window = (utc_s(2026, 7, 15, 0), utc_s(2026, 7, 17, 0))
    bomb = _zip_of(b"INTERVALSTARTTIME_GMT,NODE,LMP_TYPE,MW\n" + b"0" * MAX_UNZIPPED_BYTES)
    assert len(bomb) < 100_000  # a small answer that would unpack past the bound
    served.override["caiso"] = (200, bomb, "application/x-zip-compressed")
    with pytest.raises(FeedMalformed, match="caiso: the zip would unpack to"):
        await asyncio.to_thread(feed.fetch, *window)
    served.override["caiso"] = (200, b"\0" * (MAX_ANSWER_BYTES + 1), "application/x-zip-compressed")
    with pytest.raises(FeedMalformed, match="caiso: the answer is larger than"):
        await asyncio.to_thread(feed.fetch, *window)
    weather = OpenMeteoWeather(52.52, 13.41, url=f"{served.base}/open-meteo/v1/forecast", timeout_s=10.0)
    served.override["open_meteo"] = (200, b" " * (MAX_ANSWER_BYTES + 1), "application/json")
    with pytest.raises(FeedMalformed, match="open_meteo: the answer is larger than"):
        await asyncio.to_thread(weather.fetch, *window)


@pytest.mark.parametrize("mode", ["endless", "declared", "gzip"])
@pytest.mark.parametrize("name", ["entsoe", "entsoe_intraday", "nordpool"])
async def test_the_price_clients_answers_are_refused_past_the_bound_unread(clients_on_loopback: Served,
                                                                           tmp_path: Path, name: str,
                                                                           mode: str) -> None:
    """entsoe-py (day-ahead and intraday) and nordpool make their own requests: through the
    bounded session we hand them, an answer that never ends, that declares 64 GiB, or that
    decodes past the bound is refused (malformed), the connection dropped, and never more than
    the bound held in memory."""
    from ems.feeds.answer import MAX_ANSWER_BYTES

    served = clients_on_loopback
    served.flood[name] = mode
    feed = {"entsoe": EntsoePrices("DE_LU", "test-token", 10.0),
            "entsoe_intraday": EntsoeIntradayPrices("DE_LU", "test-token", 10.0),
            "nordpool": NordPoolPrices("FI", "EUR", 60, 10.0)}[name]
    window = (utc_s(2025, 5, 7, 0), utc_s(2025, 5, 8, 0))
    gzip_bomb()  # built before memory is traced: the server's, not the client's
    tracemalloc.start()
    try:
        with pytest.raises(FeedMalformed, match=f"{name}: the answer is larger than {MAX_ANSWER_BYTES} bytes") as e:
            await asyncio.to_thread(feed.fetch, *window)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 3 * MAX_ANSWER_BYTES  # unbounded, the client would hold all of it
    assert ("declared" in str(e.value)) == (mode == "declared")  # a declared size: refused before a byte is read
    if mode != "gzip":
        for _ in range(200):  # the server sees the hang-up at its next write
            if served.hung_up:
                break
            await asyncio.sleep(0.05)
        assert served.hung_up and served.flooded_bytes < FLOOD_CAP_BYTES
    assert len(served.queries) == 1  # one try: refused, not retried
    src = source(feed, FeedCache(tmp_path), [window[0]])  # the feed source counts it like any malformed answer
    assert not await src.refresh()
    assert src.failures == {"malformed": 1} and src.last_error == "malformed" and src.good is None


async def test_a_nordpool_answer_that_is_no_json_is_malformed(clients_on_loopback: Served, tmp_path: Path) -> None:
    clients_on_loopback.override["nordpool"] = (200, b"<html>maintenance</html>", "text/html")
    src = source(NordPoolPrices("FI", "EUR", 60, 10.0), FeedCache(tmp_path), [utc_s(2025, 5, 7, 6)])
    assert not await src.refresh()
    assert src.failures == {"malformed": 1}


# --- real-time prices laid over the day-ahead -----------------------------------------------------

def oasis_lmp(path: Path, column: str) -> dict[float, float]:
    """UTC s -> $/MWh of the LMP rows (not its energy, congestion, loss, GHG parts) of a recorded answer."""
    with zipfile.ZipFile(path) as z:
        rows = list(csv.DictReader(io.TextIOWrapper(z.open(z.namelist()[0]), encoding="utf-8")))
    return {datetime.fromisoformat(r["INTERVALSTARTTIME_GMT"]).timestamp(): float(r[column])
            for r in rows if r["LMP_TYPE"] == "LMP"}


def realtime_source(feed: Any, cache: FeedCache, now: list[float]) -> FeedSource:
    """As planner_feeds makes one: nothing required ahead of now, six hours kept."""
    return FeedSource(feed, cache, refresh_s=900.0, timeout_s=10.0, min_ahead_s=0.0, fetch_ahead_s=86_400.0,
                      keep_s=6 * 3600.0, clock=lambda: now[0])


async def caiso_feeds(served: Served, tmp_path: Path, now: list[float], market: str
                      ) -> tuple[PlannerFeeds, FeedSource]:
    """CAISO's day-ahead and its real-time `market` from the loopback OASIS, both fetched once,
    as the planner meets them; and the real-time source."""
    cache = FeedCache(tmp_path)
    url = f"{served.base}/caiso/SingleZip"
    day_ahead = source(CaisoOasisPrices("TH_NP15_GEN-APND", 10.0, url), cache, now)
    rt = realtime_source(CaisoOasisPrices("TH_NP15_GEN-APND", 10.0, url, market=market), cache, now)
    assert await day_ahead.refresh() and await rt.refresh()
    feeds = PlannerFeeds("America/Los_Angeles",
                         PriceFeedUse(day_ahead, CaisoFeedConfig(source="caiso", node="TH_NP15_GEN-APND")), None,
                         realtime=rt)
    return feeds, rt


async def test_entsoe_intraday_auctions_a_later_one_wins(clients_on_loopback: Served, tmp_path: Path) -> None:
    now = [utc_s(2026, 1, 15, 8, 5)]
    src = realtime_source(EntsoeIntradayPrices("DE_LU", "test-token", 10.0), FeedCache(tmp_path), now)
    assert await src.refresh()
    first_pages = [q for q in clients_on_loopback.queries if q["offset"] == "0"]
    assert {q["contract_MarketAgreement.type"] for q in first_pages} == {"A07"}
    assert [q["classificationSequence_AttributeInstanceComponent.position"] for q in first_pages] == ["1", "2", "3"]
    g = src.good
    assert g is not None and g.step_s == 900.0
    ida1, ida3 = dict(entsoe_points(ENTSOE_IDA["1"])), dict(entsoe_points(ENTSOE_IDA["3"]))
    assert g.end_utc_s == max(ida1) + 900.0
    ts = g.start_utc_s + np.arange(g.n_steps) * 900.0
    want = [ida3.get(t, ida1[t]) for t in ts]  # IDA3 (10:00 on the day) over IDA1 (15:00 the day before)
    np.testing.assert_allclose(g.at(PRICE, ts), want)
    assert any(t in ida3 and ida3[t] != ida1[t] for t in ts)  # the fixture tells the two apart
    assert src.failures == {} and (tmp_path / "entsoe_intraday.json").exists()


async def test_entsoe_intraday_without_any_auction_is_not_covering(clients_on_loopback: Served,
                                                                   tmp_path: Path) -> None:
    src = realtime_source(EntsoeIntradayPrices("DE_LU", "test-token", 10.0, auctions=(2,)), FeedCache(tmp_path),
                          [utc_s(2026, 1, 15, 8, 5)])
    assert not await src.refresh()
    assert src.failures == {"not_covering": 1} and src.good is None


@pytest.mark.parametrize(("market", "query", "column", "step_s"), [
    ("RTPD", "PRC_RTPD_LMP", "PRC", 900.0), ("RTM", "PRC_INTVL_LMP", "VALUE", 300.0)])
async def test_caiso_realtime_lmp_from_oasis(served: Served, tmp_path: Path, market: str, query: str, column: str,
                                             step_s: float) -> None:
    now = [utc_s(2026, 7, 15, 14, 5)]
    feed = CaisoOasisPrices("TH_NP15_GEN-APND", 10.0, f"{served.base}/caiso/SingleZip", market=market)
    src = realtime_source(feed, FeedCache(tmp_path), now)
    assert await src.refresh()
    q = served.queries[-1]
    assert q["queryname"] == query and q["market_run_id"] == market and q["version"] == "3"
    lmp = oasis_lmp(CAISO_RT_ZIP[market], column)
    g = src.good
    assert g is not None and g.step_s == step_s and g.start_utc_s == min(lmp)
    np.testing.assert_allclose(g.columns[PRICE], [lmp[t] for t in sorted(lmp)])
    assert feed.name == f"caiso_{market.lower()}" and (tmp_path / f"{feed.name}.json").exists()


async def test_the_planner_takes_the_intraday_price_where_there_is_one(clients_on_loopback: Served,
                                                                       tmp_path: Path) -> None:
    now = [utc_s(2026, 1, 15, 8, 5)]
    cache = FeedCache(tmp_path)
    day_ahead = source(EntsoePrices("DE_LU", "test-token", 10.0), cache, now)
    intraday = realtime_source(EntsoeIntradayPrices("DE_LU", "test-token", 10.0), cache, now)
    assert await day_ahead.refresh() and await intraday.refresh()
    cfg = EntsoeFeedConfig(source="entsoe", bidding_zone="DE_LU", adder_per_kwh=0.1)
    feeds = PlannerFeeds("Europe/Berlin", PriceFeedUse(day_ahead, cfg), None, realtime=intraday)
    b = builder()
    feeds.apply(b, local_s(now[0], "Europe/Berlin"))
    dyn = b.tariff.dynamic_prices
    assert dyn is not None and len(dyn.buy_per_kwh) == 96
    da = dict(entsoe_points())
    ida1, ida3 = dict(entsoe_points(ENTSOE_IDA["1"])), dict(entsoe_points(ENTSOE_IDA["3"]))
    t0 = utc_s(2026, 1, 15, 8)
    got = np.array(dyn.buy_per_kwh) * 1000.0 - 100.0
    want = [ida3.get(t, ida1.get(t, da[t])) for t in t0 + np.arange(96) * 900.0]
    np.testing.assert_allclose(got, want)
    # 08:00 to 23:00 UTC from the auctions (IDA3 from 11:00), the rest the next day's day-ahead
    assert feeds.realtime_steps == 60 and feeds.realtime_plans == 1 and feeds.priced_plans == 1
    assert set(feeds.summary()) >= {"entsoe", "entsoe_intraday", "realtime_plans"}


async def test_five_minute_prices_are_averaged_over_a_planning_step(served: Served, tmp_path: Path) -> None:
    now = [utc_s(2026, 7, 15, 14, 5)]
    feeds, _ = await caiso_feeds(served, tmp_path, now, "RTM")
    b = builder()
    feeds.apply(b, local_s(now[0], "America/Los_Angeles"))
    dyn = b.tariff.dynamic_prices
    assert dyn is not None
    five = oasis_lmp(CAISO_RT_ZIP["RTM"], "VALUE")
    dam = oasis_lmp(CAISO_ZIP, "MW")
    t0 = utc_s(2026, 7, 15, 14)
    got = np.array(dyn.buy_per_kwh) * 1000.0
    for k in range(4):  # 14:00 to 15:00: the mean of each quarter hour's three 5-minute prices
        assert got[k] == pytest.approx(np.mean([five[t0 + k * 900.0 + j * 300.0] for j in range(3)]))
    assert got[4] == pytest.approx(dam[t0 + 3600.0])  # past the real-time series: the day-ahead hour
    assert feeds.realtime_steps == 4


async def test_a_failing_realtime_feed_keeps_its_last_series_then_the_day_ahead(served: Served,
                                                                                tmp_path: Path) -> None:
    now = [utc_s(2026, 7, 15, 14, 5)]
    feeds, rtpd = await caiso_feeds(served, tmp_path, now, "RTPD")
    fifteen = oasis_lmp(CAISO_RT_ZIP["RTPD"], "PRC")
    dam = oasis_lmp(CAISO_ZIP, "MW")
    served.override["caiso_rt"] = (503, b"", "text/plain")
    now[0] = utc_s(2026, 7, 15, 14, 35)
    assert not await rtpd.refresh()
    assert rtpd.failures == {"unavailable": 1} and rtpd.last_error == "unavailable"
    b = builder()
    feeds.apply(b, local_s(now[0], "America/Los_Angeles"))
    dyn = b.tariff.dynamic_prices
    assert dyn is not None
    t = utc_s(2026, 7, 15, 14, 30)
    # the last good real-time series still has 14:30 and 14:45 (the spike among them)
    assert dyn.buy_per_kwh[:2] == pytest.approx([fifteen[t] / 1000.0, fifteen[t + 900.0] / 1000.0])
    assert dyn.buy_per_kwh[2] == pytest.approx(dam[t + 1800.0] / 1000.0)
    # past its end (15:00) the plan is priced on the day-ahead alone, the real-time counted stale once
    now[0] = utc_s(2026, 7, 15, 15, 5)
    feeds.apply(b, local_s(now[0], "America/Los_Angeles"))
    feeds.apply(b, local_s(now[0] + 900.0, "America/Los_Angeles"))
    dyn = b.tariff.dynamic_prices
    assert dyn is not None and dyn.buy_per_kwh[0] == pytest.approx(dam[utc_s(2026, 7, 15, 15)] / 1000.0)
    assert rtpd.stale == 1 and feeds.realtime_steps == 0 and feeds.realtime_plans == 1
    # after a restart the real-time series comes back from its own cache file, beside the day-ahead's
    url = f"{served.base}/caiso/SingleZip"
    again = realtime_source(CaisoOasisPrices("TH_NP15_GEN-APND", 10.0, url, market="RTPD"), FeedCache(tmp_path), now)
    assert again.good is not None and again.good.end_utc_s == max(fifteen) + 900.0
    assert {p.name for p in tmp_path.iterdir()} == {"caiso.json", "caiso_rtpd.json"}


def test_planner_feeds_makes_the_realtime_source_from_the_site_file(tmp_path: Path) -> None:
    feeds = planner_feeds(CaisoFeedConfig(source="caiso", node="TH_SP15_GEN-APND"), None, "America/Los_Angeles",
                          tmp_path, None, CaisoRealtimeFeedConfig(source="caiso", node="TH_SP15_GEN-APND",
                                                                  market="RTM", refresh_s=300))
    assert feeds is not None and feeds.realtime is not None
    rt = feeds.realtime
    assert rt.name == "caiso_rtm" and rt.refresh_s == 300 and rt.min_ahead_s == 0.0
    assert [s.name for s in feeds.sources] == ["caiso", "caiso_rtm"]


def _cache_file(path: Path, start_utc_s: float, hours: int, fetched_utc_s: float, column: str, value: float,
                of: str) -> None:
    doc = {"of": of, "start_utc_s": start_utc_s, "step_s": 3600.0, "fetched_utc_s": fetched_utc_s,
           "columns": {column: [value] * hours}}
    path.write_text(json.dumps(doc))


def test_a_realtime_cache_of_another_column_is_ignored_and_the_day_ahead_prices_stay(tmp_path: Path) -> None:
    """The real-time cache file held a temperature column: read back, its series raised inside
    `apply`, and the plan fell back to the site's tariff, day-ahead prices and all, until the
    real-time feed's next good fetch."""
    now = utc_s(2026, 7, 15, 14, 5)
    (tmp_path / "feeds").mkdir()
    _cache_file(tmp_path / "feeds" / "caiso.json", now - 3600.0, 72, now, PRICE, 42.0, "TH_SP15_GEN-APND DAM")
    _cache_file(tmp_path / "feeds" / "caiso_rtm.json", now - 3600.0, 6, now, TEMPERATURE, 30.0,
                "TH_SP15_GEN-APND RTM")
    feeds = planner_feeds(CaisoFeedConfig(source="caiso", node="TH_SP15_GEN-APND"), None, "America/Los_Angeles",
                          tmp_path, None, CaisoRealtimeFeedConfig(source="caiso", node="TH_SP15_GEN-APND",
                                                                  market="RTM"))
    assert feeds is not None and feeds.price is not None and feeds.realtime is not None
    assert feeds.price.source.good is not None and feeds.realtime.good is None  # not the feed's: ignored
    b = builder()
    feeds.apply(b, local_s(now, "America/Los_Angeles"))
    dyn = b.tariff.dynamic_prices
    assert feeds.apply_errors == 0 and feeds.priced_plans == 1 and feeds.realtime_steps == 0
    assert dyn is not None and dyn.buy_per_kwh[:4] == pytest.approx([0.042] * 4)


async def test_an_answer_without_the_feeds_column_is_malformed_and_the_last_good_series_stays(
        tmp_path: Path) -> None:
    now = [utc_s(2026, 7, 15, 14, 5)]

    @dataclass
    class WrongColumn:  # a client that answers with another series than the one asked for
        name: str = "caiso"
        column: str = TEMPERATURE

        def fetch(self, start_utc_s: float, end_utc_s: float) -> FeedSeries:
            n = round((end_utc_s - start_utc_s) / 3600.0)
            return FeedSeries(math.floor(start_utc_s / 3600.0) * 3600.0, 3600.0, {self.column: np.full(n, 5.0)})

    feed = WrongColumn(column=PRICE)
    src = FeedSource(feed, FeedCache(tmp_path), refresh_s=3600.0, timeout_s=10.0, min_ahead_s=3600.0,
                     fetch_ahead_s=86_400.0, keep_s=86_400.0, clock=lambda: now[0], columns=(PRICE,))
    assert await src.refresh()
    good = src.good
    feed.column = TEMPERATURE
    assert not await src.refresh()
    assert src.failures == {"malformed": 1} and src.good is good


def _rtm_answer(starts_utc_s: list[float], price: float) -> bytes:
    """An OASIS RTM answer with one LMP row at each interval start (its other columns as recorded)."""
    with zipfile.ZipFile(CAISO_RT_ZIP["RTM"]) as z:
        rows = list(csv.DictReader(io.TextIOWrapper(z.open(z.namelist()[0]), encoding="utf-8")))
    lmp = next(r for r in rows if r["LMP_TYPE"] == "LMP")
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=list(lmp))
    w.writeheader()
    for t in starts_utc_s:
        stamp = datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")
        w.writerow(lmp | {"INTERVALSTARTTIME_GMT": stamp, "VALUE": f"{price}"})
    return _zip_of(text.getvalue().encode())


async def test_a_realtime_answer_off_its_markets_step_is_not_stretched_over_the_plan(served: Served,
                                                                                     tmp_path: Path) -> None:
    """The step was read off the answer: one 5-minute row became an hour's price (a single row
    was taken as hourly), and rows 1/64 s apart made each plan step the mean of 57,600 samples,
    computed in the control period (half a second a plan)."""
    now = [utc_s(2026, 7, 15, 14, 5)]
    url = f"{served.base}/caiso/SingleZip"
    day_ahead = source(CaisoOasisPrices("TH_NP15_GEN-APND", 10.0, url), FeedCache(tmp_path), now)
    assert await day_ahead.refresh()
    dam = oasis_lmp(CAISO_ZIP, "MW")
    t0 = utc_s(2026, 7, 15, 14)
    # one 5-minute interval: the market's step, so it prices no whole 15-minute plan step
    served.override["caiso_rt"] = (200, _rtm_answer([t0], 900.0), "application/x-zip-compressed")
    rtm = realtime_source(CaisoOasisPrices("TH_NP15_GEN-APND", 10.0, url, market="RTM"), FeedCache(tmp_path), now)
    assert await rtm.refresh()
    assert rtm.good is not None and rtm.good.step_s == 300.0
    feeds = PlannerFeeds("America/Los_Angeles",
                         PriceFeedUse(day_ahead, CaisoFeedConfig(source="caiso", node="TH_NP15_GEN-APND")), None,
                         realtime=rtm)
    b = builder()
    feeds.apply(b, local_s(now[0], "America/Los_Angeles"))
    dyn = b.tariff.dynamic_prices
    assert dyn is not None and feeds.realtime_steps == 0
    assert dyn.buy_per_kwh[:4] == pytest.approx([dam[t0] / 1000.0] * 4)
    # rows an hour apart, or 1/64 s apart, are not the 5-minute market: malformed, the last good series kept
    for starts in ([t0 - 3600.0, t0], list(t0 + np.arange(19_200) / 64.0)):
        served.override["caiso_rt"] = (200, _rtm_answer(starts, 700.0), "application/x-zip-compressed")
        assert not await rtm.refresh()
        assert rtm.good is not None and rtm.good.step_s == 300.0
    assert rtm.failures == {"malformed": 2}


@pytest.mark.parametrize("mode", ["drip", "drip-declared"])  # chunked, or a Content-Length not yet reached
@pytest.mark.parametrize("name", ["entsoe_intraday", "caiso_rt"])
async def test_an_answer_dripped_under_each_reads_timeout_is_given_up_on(clients_on_loopback: Served,
                                                                         name: str, mode: str) -> None:
    """A byte every 50 ms never trips a read's timeout: the fetch's thread was held until the
    drip ended (a minute here; for ever from a hostile server), the feed refusing every refresh
    meanwhile ("the previous fetch is still running"), and a stopping controller (Python 3.11's
    asyncio.run) waiting on that thread. The answer's whole time is bounded by the timeout now."""
    from ems.feeds.series import FeedUnavailable

    served = clients_on_loopback
    served.flood[name] = mode
    feed: Any = (EntsoeIntradayPrices("DE_LU", "test-token", 1.0) if name == "entsoe_intraday" else
                 CaisoOasisPrices("TH_NP15_GEN-APND", 1.0, f"{served.base}/caiso/SingleZip", market="RTM"))
    with pytest.raises(FeedUnavailable, match="within 1 s"):
        await asyncio.to_thread(feed.fetch, utc_s(2026, 7, 15, 8), utc_s(2026, 7, 16, 8))
    for _ in range(40):  # the server sees the hang-up at its next byte
        if served.hung_up:
            break
        await asyncio.sleep(0.05)
    assert served.hung_up


async def test_an_intraday_auction_with_one_quarter_hour_in_the_window_is_a_quarter_hour(
        clients_on_loopback: Served) -> None:
    """IDA3 prices 12:00-24:00: each morning, from 05:30 to 05:45 in Berlin, the window kept (six
    hours back) holds only its last quarter hour. One row's step was taken as an hour: that
    price stretched over four (or, beside IDA1's quarter hours, the auctions "not on one grid")."""
    feed = EntsoeIntradayPrices("DE_LU", "test-token", 10.0)
    start = utc_s(2026, 1, 15, 22, 40)  # 23:40 in Berlin: IDA1's and IDA3's last quarter hour, 22:45 UTC
    g = await asyncio.to_thread(feed.fetch, start, start + 86_400.0)
    assert g.step_s == 900.0 and g.n_steps == 1 and g.start_utc_s == utc_s(2026, 1, 15, 22, 45)
    assert g.columns[PRICE][0] == pytest.approx(dict(entsoe_points(ENTSOE_IDA["3"]))[g.start_utc_s])
