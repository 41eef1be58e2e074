"""The feeds' site-file sections: the example validates, a bad field is named, secrets are checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ems.config import load_config, parse_config
from ems.feeds.planner_inputs import planner_feeds
from ems.feeds.settings import EntsoeFeedConfig, WeatherFeedConfig
from ems.model.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "feeds-site.yaml"


def _example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_the_example_passes_check_config() -> None:
    cfg = load_config(EXAMPLE)
    a = cfg.policies.arbitrage
    assert a is not None and a.price_feed is not None and a.price_feed.source == "nordpool"
    assert a.weather_feed is not None and a.weather_feed.tilt_deg == 35
    out = subprocess.run([sys.executable, "-m", "ems.cli", "check-config", str(EXAMPLE)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout


@pytest.mark.parametrize(("change", "field"), [
    ({"source": "entsoe", "bidding_zone": "ATLANTIS"}, "policies.arbitrage.price_feed.entsoe"),
    ({"source": "nordpool", "area": "XX"}, "policies.arbitrage.price_feed.nordpool"),
    ({"source": "nordpool", "area": "SE3", "refresh_s": 5}, "policies.arbitrage.price_feed.nordpool.refresh_s"),
    ({"source": "caiso", "node": "A B"}, "policies.arbitrage.price_feed.caiso.node"),
    ({"source": "tibber"}, "policies.arbitrage.price_feed"),
    ({"source": "entsoe", "bidding_zone": "NL", "token_env": None}, "policies.arbitrage.price_feed.entsoe"),
    ({"source": "nordpool", "area": "SE3", "aera": "SE4"}, "policies.arbitrage.price_feed.nordpool.aera"),
    # day-ahead prices never reach 48 h ahead: such a feed would never be used
    ({"source": "nordpool", "area": "SE3", "min_ahead_h": 48}, "policies.arbitrage.price_feed.nordpool.min_ahead_h"),
    ({"source": "nordpool", "area": "SE3", "adder_per_kwh": 1e300},
     "policies.arbitrage.price_feed.nordpool.adder_per_kwh"),
])
def test_a_bad_price_feed_names_the_field(change: dict, field: str) -> None:
    data = _example()
    data["policies"]["arbitrage"]["price_feed"] = change
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config(data)


def test_a_weather_forecast_too_short_for_min_ahead_names_the_fields() -> None:
    data = _example()
    data["policies"]["arbitrage"]["weather_feed"] = {"forecast_days": 1}
    with pytest.raises(ConfigError, match=r"policies\.arbitrage\.weather_feed.*forecast_days 1 cannot reach"):
        parse_config(data)


def test_the_entsoe_token_comes_from_a_file_or_the_environment(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENTSOE_API_KEY", raising=False)
    cfg = EntsoeFeedConfig(source="entsoe", bidding_zone="NL")
    with pytest.raises(ConfigError, match=r"price_feed\.token_env: ENTSOE_API_KEY is not set"):
        cfg.token()
    monkeypatch.setenv("ENTSOE_API_KEY", "from-env")
    assert cfg.token() == "from-env"
    (tmp_path / "token").write_text("from-file\n")
    assert EntsoeFeedConfig(source="entsoe", bidding_zone="NL", token_file=tmp_path / "token").token() == "from-file"
    with pytest.raises(ConfigError, match=r"price_feed\.token_file"):
        EntsoeFeedConfig(source="entsoe", bidding_zone="NL", token_file=tmp_path / "missing").token()


@pytest.mark.parametrize("section", ["price_feed", "realtime_price_feed"])
def test_check_config_refuses_an_entsoe_feed_without_its_token(tmp_path: Path, section: str) -> None:
    data = _example()
    feed = {"source": "entsoe", "bidding_zone": "SE_3", "token_env": "EMS_TEST_NO_SUCH_TOKEN"}
    data["policies"]["arbitrage"][section] = feed
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    out = subprocess.run([sys.executable, "-m", "ems.cli", "check-config", str(path)],
                         capture_output=True, text=True, cwd=ROOT / "config", timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert f"{section}.token_env: EMS_TEST_NO_SUCH_TOKEN is not set" in out.stderr + out.stdout


def test_a_weather_feed_needs_a_place() -> None:
    with pytest.raises(ConfigError, match=r"weather_feed: latitude_deg and longitude_deg"):
        planner_feeds(None, WeatherFeedConfig(), "UTC", None, None)
    feeds = planner_feeds(None, WeatherFeedConfig(), "UTC", None, (59.3, 18.1))
    assert feeds is not None and feeds.weather is not None and feeds.weather.cache.dir is None


@pytest.mark.parametrize(("price_feed", "change", "field"), [
    ({"source": "caiso", "node": "TH_NP15_GEN-APND"}, {"source": "caiso", "node": "X", "market": "DAM"},
     r"policies\.arbitrage\.realtime_price_feed\.caiso\.market"),
    ({"source": "caiso", "node": "TH_NP15_GEN-APND"}, {"source": "caiso", "node": "X", "refresh_s": 10},
     r"policies\.arbitrage\.realtime_price_feed\.caiso\.refresh_s"),
    (None, {"source": "entsoe", "bidding_zone": "NL", "auctions": [4]},
     r"policies\.arbitrage\.realtime_price_feed\.entsoe\.auctions"),
    (None, {"source": "entsoe", "bidding_zone": "NL", "auctions": [1, 1]},
     r"policies\.arbitrage\.realtime_price_feed\.entsoe.*auctions \[1, 1\] names one twice"),
    (None, {"source": "entsoe", "bidding_zone": "ATLANTIS"}, r"policies\.arbitrage\.realtime_price_feed\.entsoe"),
    (None, {"source": "nordpool", "area": "SE3"}, r"policies\.arbitrage\.realtime_price_feed"),  # none offered
    # the example's day-ahead is Nord Pool in EUR: CAISO's real-time prices are in USD
    (None, {"source": "caiso", "node": "TH_NP15_GEN-APND"},
     r"policies\.arbitrage.*realtime_price_feed\.source caiso: prices in USD, the price_feed's \(nordpool\) in EUR"),
    ("none", {"source": "caiso", "node": "TH_NP15_GEN-APND"},
     r"policies\.arbitrage.*realtime_price_feed needs a price_feed"),
])
def test_a_bad_realtime_price_feed_names_the_field(price_feed: dict | str | None, change: dict, field: str) -> None:
    data = _example()
    a = data["policies"]["arbitrage"]
    if price_feed == "none":
        del a["price_feed"]
    elif price_feed is not None:
        a["price_feed"] = price_feed
    a["realtime_price_feed"] = change
    with pytest.raises(ConfigError, match=field):
        parse_config(data)


def test_a_realtime_feed_in_the_day_aheads_currency_passes() -> None:
    data = _example()
    a = data["policies"]["arbitrage"]
    a["price_feed"]["currency"] = "SEK"
    a["realtime_price_feed"] = {"source": "entsoe", "bidding_zone": "SE_3", "token_env": "ENTSOE_API_KEY"}
    with pytest.raises(ConfigError, match=r"prices in EUR, the price_feed's \(nordpool\) in SEK"):
        parse_config(data)
    a["price_feed"]["currency"] = "EUR"
    rt = parse_config(data).policies.arbitrage.realtime_price_feed  # type: ignore[union-attr]
    assert rt is not None and rt.source == "entsoe" and rt.auctions == (1, 2, 3) and rt.refresh_s == 900


@pytest.mark.parametrize(("price_feed", "realtime", "field"), [
    ({"source": "entsoe", "bidding_zone": "DE_LU"}, {"source": "entsoe", "bidding_zone": "FR"},
     r"realtime_price_feed\.bidding_zone FR: the price_feed's is DE_LU"),
    ({"source": "caiso", "node": "TH_NP15_GEN-APND"}, {"source": "caiso", "node": "TH_SP15_GEN-APND"},
     r"realtime_price_feed\.node TH_SP15_GEN-APND: the price_feed's is TH_NP15_GEN-APND"),
])
def test_a_realtime_feed_of_another_zone_or_node_is_refused(price_feed: dict, realtime: dict, field: str) -> None:
    """Both in one currency, they passed: another market's prices laid over some steps of the
    day-ahead make a spread between the steps that no one pays (the plan then arbitrages it)."""
    data = _example()
    a = data["policies"]["arbitrage"]
    a["price_feed"], a["realtime_price_feed"] = price_feed, realtime
    with pytest.raises(ConfigError, match=field):
        parse_config(data)
    a["realtime_price_feed"] = realtime | {k: price_feed[k] for k in ("bidding_zone", "node") if k in price_feed}
    assert parse_config(data).policies.arbitrage is not None
