"""What operators see of the grid connection's limits, on the real-time HIL site with a ramp
limit (75 kW in 60 s, the demo's), an oscillation limit and the fast smoothing loop.

The site of tests/browser/test_dashboard_hil.py, its site file given the limits and
`policies.smoothing`, its racks training in step at 0.3-1 Hz. Once the controller has run
for a while, the page must draw the import the ramp limit allows as a band under the grid
trace (with the meter's average import, which is what the limit holds), the band RMS of the
grid against the site's without the battery and the limit, and the codes in force with what
they mean; while a disturbance is ridden through, a banner says so. A screenshot is taken;
with EMS_DASHBOARD_SCREENSHOTS=docs it is written as docs/dashboard-smoothing.png
(`make screenshots`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import MISSING, full_page_screenshot, hil_site, js, layout_problems, shown_problems, wait

if MISSING:
    pytest.skip(MISSING, allow_module_level=True)

from selenium.webdriver.common.by import By

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

LIMIT_W = 75_000.0
CODES = ("RIDE_THROUGH", "RAMP_LIMITED", "JOB_RAMP", "GPU_SMOOTHING", "FILLER_LOAD", "SMOOTHING_CLIPPED",
         "SMOOTHING_ACTIVE")


def _samples(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url + "api/history", timeout=5) as r:
        return list(json.load(r)["samples"])


def _smoothing(cfg: dict[str, Any]) -> None:
    cfg["meter"]["average_s"] = 1.0  # the meter's 1 s average: what the ramp limit holds
    cfg["grid_connection"].update(ramp_limit_w=LIMIT_W, ramp_window_s=60, oscillation_limit_w_rms=20_000)
    cfg["policies"]["smoothing"] = {"rate_hz": 20, "tau_s": 10.0, "gpu": False}
    cfg["simulation"]["racks"].update(swing_hz_min=0.3, swing_hz_max=1.0, mean_job_s=1e6, checkpoint_every_s=1e6)


@pytest.fixture(scope="module")
def smoothing_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with hil_site(tmp_path_factory.mktemp("hil-smoothing"), _smoothing) as url:
        yield url


def test_the_ramp_envelope_and_the_band_rms_render_from_the_live_site(smoothing_url: str, browser: Any,
                                                                     tmp_path: Path) -> None:
    url = smoothing_url
    deadline = time.monotonic() + 60
    while sum(s["ramp_lo_w"] is not None and s["grid_rms_w"] is not None for s in _samples(url)) < 40:
        assert time.monotonic() < deadline, "no samples with the ramp's range and the band RMS"
        time.sleep(0.5)
    browser.set_window_size(1600, 1400)
    browser.get(url + "?range=300")
    wait(browser, lambda d: all(js(d, f"window.ems.charts.{c} && window.ems.charts.{c}.drawn") > 0
                                for c in ("grid", "racks", "batt", "soc", "rms")), 10, "charts not drawn")
    assert shown_problems(browser) == []
    for width in (1280, 1920, 1600):
        browser.set_window_size(width, 1400)
        wait(browser, lambda d, w=width: js(d, "document.documentElement.clientWidth") <= w, 5)
        time.sleep(0.3)  # a frame or two for the charts to redraw
        assert layout_problems(browser) == [], width

    # --- the grid chart: the import the ramp limit allows, as a band under the grid ---------------
    envelope = "ramp envelope: the import the limit allows (75.0 kW in 60 s)"
    assert envelope in browser.find_element(By.ID, "l-grid").text
    assert browser.find_element(By.ID, "h-grid").text == "Grid import vs cap and ramp envelope"
    assert "grid import, the meter's average" in browser.find_element(By.ID, "l-grid").text
    view = js(browser, "window.ems.view()")
    ranged = [s for s in view if s["ramp_lo_w"] is not None]
    assert len(ranged) >= 20
    # what the limit allows in a period is never wider than the limit either side of one grid value, nor empty
    assert all(0 < s["ramp_hi_w"] - s["ramp_lo_w"] <= 2 * LIMIT_W for s in ranged if s["periods"] == 1)
    wait(browser, lambda d: js(d, f"window.ems.charts.grid.bands[{json.dumps(envelope)}]") >= 20, 5,
         "the envelope is not drawn")
    axes = js(browser, "window.ems.charts.grid.axes")  # the band is inside the axis, not cut off
    assert axes["lo"] <= min(s["ramp_lo_w"] for s in ranged) and axes["hi"] >= max(s["ramp_hi_w"] for s in ranged)

    # --- the band RMS: the grid against the site without the battery, and the limit ---------------
    assert browser.find_element(By.ID, "panel-rms").is_displayed()
    legend = browser.find_element(By.ID, "l-rms").text
    assert all(x in legend for x in ("grid, with the battery", "site without the battery", "oscillation limit"))
    rms = js(browser, "window.ems.charts.rms.axes")
    assert rms["lo"] == 0 and rms["y"][0] == "0 kW"
    assert rms["hi"] >= max(s["load_rms_w"] for s in view if s["load_rms_w"] is not None)
    last = next(s for s in reversed(view) if s["grid_rms_w"] is not None)
    assert last["rms_limit_w"] == 20_000 and last["grid_rms_w"] < last["load_rms_w"]  # the battery takes the swing

    # --- the codes in force, named and explained; the ramp's range now; the RMS in figures ------------
    tile = browser.find_element(By.ID, "tile-smoothing")
    assert tile.is_displayed()
    # the fast loop moving the battery (or the ramp holding it), named, and what it means
    wait(browser, lambda d: d.find_element(By.ID, "t-smooth").text.split(" · ")[0] in CODES, 10,
         "no smoothing or ramp code shown")
    assert browser.find_element(By.ID, "t-smooth-why").text
    ramp = browser.find_element(By.ID, "t-ramp").text
    assert ramp.startswith("ramp limit 75.0 kW in 60 s · ") and " allowed now · metered" in ramp, ramp
    assert browser.find_element(By.ID, "t-rms").text.startswith("band RMS ")
    shot = full_page_screenshot(browser, tmp_path / "dashboard-smoothing.png")

    # --- a ride-through under way: the banner, and RIDE_THROUGH first among the codes -----------------
    banner = browser.find_element(By.ID, "ride-banner")
    assert not banner.is_displayed()
    # the status a period riding through a voltage dip publishes (the sim makes no dip on its own)
    # (read in the same script: the next live status may come at any moment)
    shown, text, first = browser.execute_script("""const s = window.ems.status;
        onStatus({...s, reason: "RIDE_THROUGH", decided_by: "ride_through",
                  failover: {...(s.failover || {}), riding_through: "voltage"}});
        const b = document.getElementById("ride-banner");
        return [!b.classList.contains("hidden"), b.textContent, document.getElementById("t-smooth").textContent];""")
    assert shown and "voltage disturbance (RIDE_THROUGH)" in text, text
    assert first.startswith("RIDE_THROUGH"), first
    # the next period's status, with the dip over: the banner goes
    wait(browser, lambda d: not banner.is_displayed(), 10, "the ride-through banner stays after the dip")
    assert shown_problems(browser) == []

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    if (keep := os.environ.get("EMS_DASHBOARD_SCREENSHOTS")):
        shutil.copy(shot, Path(keep) / shot.name)
