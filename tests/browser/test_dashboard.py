"""The dashboard as an operator uses it: `ems demo` (a 720x clock) running, headless Chromium
driving the page: live charts, tuning refused and applied, a failover timeline.

tests/browser/test_dashboard_hil.py opens it on the real-time HIL site (first paint, a
forced action, layout, range and CSV, the screenshots in docs/). Needs Debian's `chromium`
and `chromium-driver` (.ci/run installs them); skipped, saying so, when they are missing.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import MISSING, REPO, TOKEN, js, layout_problems, shown_problems, wait

if MISSING:
    pytest.skip(MISSING, allow_module_level=True)

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[str, list[str]]]:
    """`ems demo` with its dashboard, in a process group of its own; yields the dashboard URL and
    the lines it has printed so far (a list that grows)."""
    env = {**os.environ, "EMS_HTTP_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ems.cli", "demo", "--duration", "600", "--http-port", "0"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    found = threading.Event()

    def drain() -> None:  # read all output, so neither the demo nor its site ever blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "operator dashboard" in line:
                found.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert found.wait(60), "the demo did not print its dashboard URL:\n" + "".join(lines)
        url = next(ln for ln in lines if "operator dashboard" in ln).split("dashboard", 1)[1].split()[0]
        yield url, lines
    finally:
        proc.send_signal(signal.SIGINT)  # as Ctrl-C would: the demo stops its site and prints its summary
        try:
            proc.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
            reader.join(5)
    assert proc.returncode == 0, "".join(lines[-30:])
    assert "=== demo summary ===" in "".join(lines)


def submit_param(driver: Any, name: str, value: str, reason: str, token: str) -> str:
    """Fill the tuning form as a person would and return the message shown."""
    tok = driver.find_element(By.ID, "token")
    tok.clear()
    if token:
        tok.send_keys(token)
    Select(driver.find_element(By.ID, "p-name")).select_by_value(name)
    for field, text in (("p-value", value), ("p-reason", reason)):
        el = driver.find_element(By.ID, field)
        el.clear()
        el.send_keys(text)
    driver.execute_script("document.getElementById('msg').className = 'msg hidden';")
    driver.find_element(By.ID, "p-apply").click()
    msg = driver.find_element(By.ID, "msg")
    wait(driver, lambda d: "hidden" not in msg.get_attribute("class"), what="no message after submit")
    return str(msg.text)


def test_dashboard_is_live_and_tuning_is_authenticated_validated_and_audited(
        demo: tuple[str, list[str]], browser: Any) -> None:
    demo, console = demo
    browser.get(demo + "?range=all")
    # the page loads, and its charts keep receiving data
    wait(browser, lambda d: js(d, "window.ems.statusReceived") > 2 and js(d, "window.ems.samplesReceived") > 10,
         what="no live data")
    first = js(browser, "window.ems.samplesReceived")
    wait(browser, lambda d: js(d, "window.ems.samplesReceived") > first + 8, what="samples stopped")
    assert browser.find_element(By.ID, "t-grid").text.endswith("W")
    assert browser.find_element(By.ID, "site").text == "demo-gpu-site"
    assert js(browser, "Object.keys(window.ems.status.units).length") == 2
    policies = browser.find_element(By.ID, "policies").text
    assert "peak_shaving" in policies and "PEAK_SHAVING" in policies
    # every chart has drawn lines: some pixels are not the background
    for canvas in ("c-grid", "c-racks", "c-batt", "c-soc"):
        painted = js(browser, f"""(() => {{ const c = document.getElementById('{canvas}');
            const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++; return n; }})()""")
        assert painted > 1000, canvas
    # on an accelerated clock too: nothing waiting, no raw epoch seconds, axes readable, nothing sideways
    assert shown_problems(browser) == []
    assert layout_problems(browser) == []
    assert browser.find_element(By.CSS_SELECTOR, '#range button[aria-pressed="true"]').text == "all kept"
    # the demo's ramp limit (75 kW in 60 s) without the fast loop: its envelope drawn under the grid, the
    # meter's 20 s average with it; no band RMS (nothing measures it at 720x), so no RMS chart
    envelope = "ramp envelope: the import the limit allows (75.0 kW in 60 s)"
    assert envelope in browser.find_element(By.ID, "l-grid").text
    wait(browser, lambda d: js(d, f"window.ems.charts.grid.bands[{json.dumps(envelope)}]") > 10,
         what="the ramp envelope is not drawn")
    ramp = browser.find_element(By.ID, "t-ramp").text  # as of the period, even where a period outlasts the window
    assert ramp.startswith("ramp limit 75.0 kW in 60 s · ") and " allowed now · metered" in ramp, ramp
    assert browser.find_element(By.ID, "t-rms").text == "no fast loop: band RMS not measured"
    assert not browser.find_element(By.ID, "panel-rms").is_displayed() and js(browser, "window.ems.charts.rms") is None
    # the console's site time and the page's are one clock (the controller's, accelerated 720x, in UTC):
    # the page is at most a few site minutes past the console's latest line (printed every 5 real s)
    wait(browser, lambda d: any(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC \|", ln) for ln in console), 15)
    printed = [ln for ln in console if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC \|", ln)][-1]
    page = browser.find_element(By.ID, "site-time").text
    ahead_s = (calendar.timegm(time.strptime(page, "%Y-%m-%d %H:%M:%S"))
               - calendar.timegm(time.strptime(printed[:16], "%Y-%m-%d %H:%M")))
    assert 0 <= ahead_s <= 3 * 3600, (printed, page)

    cap = "policies.peak_shaving.grid_import_cap_w"
    # no token: refused, with the reason on the page
    msg = submit_param(browser, cap, "900000", "no token", token="")
    assert "Refused (401)" in msg and "token" in msg
    # out of bounds: refused with the site model's message
    msg = submit_param(browser, "policies.battery.soc_min", "1.5", "too high", token=TOKEN)
    assert "Refused (422)" in msg and "less than or equal to 1" in msg
    assert js(browser, "window.ems.status.grid_import_cap_w") == 1_050_000

    # authenticated and in bounds: applied by the running controller, and in the event log
    msg = submit_param(browser, cap, "1200000", "browser test: evening tariff", token=TOKEN)
    assert msg.startswith("Applied"), msg
    wait(browser, lambda d: js(d, "window.ems.status.grid_import_cap_w") == 1_200_000,
         what="the controller did not take the new cap")
    wait(browser, lambda d: "1.20 MW" in d.find_element(By.ID, "t-cap").text, what="cap tile not updated")
    events = browser.find_element(By.ID, "events")
    wait(browser, lambda d: "browser test: evening tariff" in events.text, what="event not listed")
    with urllib.request.urlopen(demo + "api/events?kind=operator_action&limit=5") as r:
        logged = json.load(r)["events"]
    wanted = {"param": cap, "value": 1_200_000.0, "by": "operator", "why": "browser test: evening tariff"}
    assert wanted.items() <= logged[0]["data"].items()
    assert len(logged) == 1  # the refused attempts changed nothing

    # a failover event (the shape ems/failover records) renders its latency timeline as bars
    failover = {"id": 10**6, "wall_s": 1.8e9, "kind": "failover", "reason": "FAILOVER_SHED", "data": {
        "cause": "voltage", "last_ack_ms": 7.9, "timeline": [
            {"device": "bess-1.pcs", "action": "grid_forming", "sent_ms": 0.2, "ack_ms": 4.1, "error": None},
            {"device": "row02", "action": "caps", "sent_ms": 0.3, "ack_ms": 7.9, "error": None},
            {"device": "genset", "action": "start", "sent_ms": 0.4, "ack_ms": None, "error": "DeviceTimeout: genset"}]}}
    browser.execute_script("addEvents([arguments[0]], {prepend: true});", failover)
    item = browser.find_element(By.CSS_SELECTOR, f'#events li[data-id="{failover["id"]}"]')
    rows = item.find_elements(By.CSS_SELECTOR, ".timeline .row")
    assert [r.text.split("\n")[0] for r in rows] == ["bess-1.pcs grid_forming", "row02 caps", "genset start"]
    assert "7.90 ms" in rows[1].text and "error" in rows[2].text
    assert "last_ack_ms 7.9" in item.text and "FAILOVER_SHED" in item.text
