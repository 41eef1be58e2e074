"""The dashboard on the real-time hardware-in-the-loop site, as an operator meets it.

`ems broker`, `ems sim` and `ems run` as the README runs them, on a copy of
config/hil-site.yaml with the operator server on and every port a free one (so that it
never meets tests/integration/test_readme_hil.py on the fixed ports), a period a second.
Once the controller has run a few periods, headless Chromium opens the page: the first
paint must show the site (no placeholder, no raw epoch seconds, every chart drawn with
round, distinct axis labels), in one clock; nothing scrolls sideways from 1280 to 1920 px;
the range control and the CSV export work on the samples in view; then 0 W is forced for
60 s through the page's own form, and the banner, the status and the event say so, with
times as dates. Screenshots are taken after the first paint and after the forced action;
with EMS_DASHBOARD_SCREENSHOTS=docs they are written as docs/dashboard.png and
docs/dashboard-forced.png (`make screenshots`).
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import (
    MISSING,
    TOKEN,
    full_page_screenshot,
    hil_site,
    js,
    layout_problems,
    shown_problems,
    wait,
)

if MISSING:
    pytest.skip(MISSING, allow_module_level=True)

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(90)]

WARM_UP_SAMPLES = 30  # periods (s) of history before the page opens: enough to draw, and quick
FIRST_PAINT_MS = 3000  # from navigation to the page painted from data


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def hil_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Broker, simulated site and controller in processes of their own; yields the dashboard URL."""
    with hil_site(tmp_path_factory.mktemp("hil")) as url:
        yield url


def test_first_paint_and_a_forced_action_on_the_real_time_hil_site(hil_url: str, browser: Any,
                                                                    tmp_path: Path) -> None:
    url = hil_url
    # a few periods of history, so that the first paint has something to draw
    deadline = time.monotonic() + 40
    while len(_get(url + "api/history")["samples"]) < WARM_UP_SAMPLES:
        assert time.monotonic() < deadline, "the controller publishes no samples"
        time.sleep(0.5)
    browser.set_window_size(1600, 1400)
    browser.get(url + "?range=3600")

    # --- the first paint: data at once, nothing waiting, one clock -------------------------
    wait(browser, lambda d: js(d, "window.ems.firstPaintMs") is not None, 10, "no first paint")
    assert js(browser, "window.ems.firstPaintMs") < FIRST_PAINT_MS
    wait(browser, lambda d: all(js(d, f"window.ems.charts.{c}.drawn") > 0 for c in ("grid", "racks", "batt", "soc")),
         5, "charts not drawn")
    assert shown_problems(browser) == []
    first_shot = full_page_screenshot(browser, tmp_path / "dashboard.png")

    status = js(browser, "window.ems.status")
    assert status["site"] == "hil-gpu-site" and status["time_zone"] == "UTC"
    clock = browser.find_element(By.ID, "site-time").text
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", clock), clock
    assert browser.find_element(By.ID, "site-zone").text == "UTC"
    # the page's clock is the controller's: within a few periods of the status it was drawn from
    shown = calendar.timegm(time.strptime(clock, "%Y-%m-%d %H:%M:%S"))
    assert abs(shown - js(browser, "window.ems.status.ts")) < 5
    # the month's peak: the billing demand and the highest instant import, each named
    peak = browser.find_element(By.ID, "tile-peak").text
    assert "15-min billing demand" in peak and "highest instant import" in peak, peak
    # units drawn apart: their own colour and dash, each in the legend
    units = js(browser, """window.ems.charts.batt.series.filter(s => s.label.startsWith('bess'))
                             .map(s => [s.label, s.color, JSON.stringify(s.dash || [])])""")
    assert [u[0] for u in units] == ["bess-1", "bess-2"]
    assert units[0][1:] != units[1][1:] and units[0][2] != units[1][2]
    legend = browser.find_element(By.ID, "l-batt").text
    assert "bess-1" in legend and "bess-2" in legend
    # no ramp limit and no smoothing on this site: no envelope drawn or named, no smoothing tile or RMS chart
    assert "ramp envelope" not in browser.find_element(By.ID, "l-grid").text
    assert js(browser, "window.ems.charts.grid.series.some(s => !s.key)") is False
    assert not browser.find_element(By.ID, "tile-smoothing").is_displayed()
    assert not browser.find_element(By.ID, "panel-rms").is_displayed() and js(browser, "window.ems.charts.rms") is None
    # rack load: an axis from near its lowest value, never below 0
    racks = js(browser, "window.ems.charts.racks.axes")
    low = min(s["racks_min_w"] for s in js(browser, "window.ems.view()") if s["racks_min_w"] is not None)
    assert 0 <= racks["lo"] <= low and low - racks["lo"] < 0.5 * (racks["hi"] - racks["lo"]), (racks, low)

    # --- nothing scrolls sideways, 1280 to 1920 px ------------------------------------------
    for width in (1280, 1600, 1920):
        browser.set_window_size(width, 1400)
        wait(browser, lambda d, w=width: js(d, "document.documentElement.clientWidth") <= w, 5)
        time.sleep(0.3)  # a frame or two for the charts to redraw
        assert layout_problems(browser) == [], width
        assert shown_problems(browser) == [], width
    browser.set_window_size(1600, 1400)

    # --- the range control, and the CSV of what is in view -----------------------------------
    browser.find_element(By.CSS_SELECTOR, '#range button[data-range="300"]').click()
    wait(browser, lambda d: js(d, "window.ems.rangeS") == 300, 5)
    pressed = browser.find_element(By.CSS_SELECTOR, '#range button[aria-pressed="true"]')
    assert pressed.text == "5 min"
    wait(browser, lambda d: len(js(d, "window.ems.view()")) >= WARM_UP_SAMPLES, 10, "no samples in view")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    view = js(browser, "window.ems.view()")
    browser.find_element(By.ID, "csv").click()
    wait(browser, lambda d: [p for p in downloads.glob("*.csv")], 10, "no CSV downloaded")
    path = next(downloads.glob("*.csv"))
    wait(browser, lambda d: path.stat().st_size > 0, 5)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert path.name.startswith("hil-gpu-site_") and len(rows) >= len(view) - 2
    wanted = {"time_utc", "site_time (UTC)", "grid_import_w", "rack_load_w", "bess-1_power_w", "bess-2_soc"}
    assert wanted <= set(rows[0]), rows[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rows[0]["time_utc"]), rows[0]
    assert rows[-1]["time_utc"] >= rows[0]["time_utc"]
    assert not any(re.fullmatch(r"\d{10}(\.\d+)?", v or "") for r in rows for v in r.values())
    browser.find_element(By.CSS_SELECTOR, '#range button[data-range="3600"]').click()
    wait(browser, lambda d: js(d, "window.ems.rangeS") == 3600, 5)

    # --- force 0 W for 60 s through the page's own form ------------------------------------
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    Select(browser.find_element(By.ID, "f-mode")).select_by_value("zero")
    timeout = browser.find_element(By.ID, "f-timeout")
    timeout.clear()
    timeout.send_keys("60")
    browser.find_element(By.ID, "f-reason").send_keys("browser test: hold the battery")
    browser.find_element(By.ID, "f-apply").click()
    msg = browser.find_element(By.ID, "msg")
    wait(browser, lambda d: "hidden" not in msg.get_attribute("class"), 10, "no answer to the force")
    assert msg.text.startswith("Applied"), msg.text
    banner = browser.find_element(By.ID, "force-banner")
    wait(browser, lambda d: banner.is_displayed() and "Forced mode: battery at 0 W" in banner.text, 10, "no banner")
    assert "browser test: hold the battery" in banner.text and re.search(r"until \d\d:\d\d:\d\d UTC", banner.text)
    wait(browser, lambda d: js(d, "window.ems.status.reason") == "OPERATOR_FORCED"
         and js(d, "window.ems.status.battery_setpoint_w") == 0, 10, "the controller did not hold 0 W")
    event = next(li for li in browser.find_elements(By.CSS_SELECTOR, "#events li") if "force_mode" in li.text)
    assert "operator_action" in event.text and "browser test: hold the battery" in event.text
    until = js(browser, "window.ems.status.operator.force.until_wall_s")
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(until)) in event.text  # a date, not epoch seconds
    # a few periods at 0 W on the charts
    since = js(browser, "window.ems.samplesReceived")
    wait(browser, lambda d: js(d, "window.ems.samplesReceived") >= since + 6, 15, "samples stopped")
    assert shown_problems(browser) == []
    assert layout_problems(browser) == []
    forced_shot = full_page_screenshot(browser, tmp_path / "dashboard-forced.png")

    for shot in (first_shot, forced_shot):
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    if (keep := os.environ.get("EMS_DASHBOARD_SCREENSHOTS")):
        for shot in (first_shot, forced_shot):
            shutil.copy(shot, Path(keep) / shot.name)

