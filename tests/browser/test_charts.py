"""The dashboard's chart and time code (ems/operator/static/charts.js, sitetime.js) on cases a
live site rarely shows on demand: a flat line at 0 W, a swing of a few hundred watts on a
megawatt, export only, a view across midnight, a series that is all gaps, zones with
offsets that are not whole hours. Run in headless Chromium on a blank page, no server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import MISSING, REPO, js

if MISSING:
    pytest.skip(MISSING, allow_module_level=True)

STATIC = REPO / "ems" / "operator" / "static"
DAY = 1_795_910_400.0  # 2026-11-29 00:00:00 UTC


@pytest.fixture(scope="module")
def page(browser: Any) -> Any:
    browser.get("data:text/html,<html><body style='margin:0'></body></html>")
    for name in ("sitetime.js", "charts.js"):
        browser.execute_script("const s = document.createElement('script'); s.textContent = arguments[0];"
                               "document.head.appendChild(s);", (STATIC / name).read_text())
    return browser


def axes(page: Any, values: list[float | None], *, t0: float = DAY - 600, dt: float = 10.0, axis: str = "watts",
         zone: str = "UTC", fixed: tuple[float, float] | None = None) -> Any:
    """Draw one series of `values` at `dt` apart on an 800 x 300 canvas; the axes drawn."""
    return page.execute_script("""
        const [values, t0, dt, axis, zone, fixed] = arguments;
        SiteTime.setZone(zone);
        document.body.innerHTML = '<canvas style="width:800px;height:300px;display:block"></canvas>';
        const c = new TimeChart(document.querySelector('canvas'), {axis, yMin: fixed ? fixed[0] : null,
          yMax: fixed ? fixed[1] : null, series: [{key: s => s.v, label: 'v', color: '#58a6ff'}]});
        const samples = values.map((v, i) => ({ts: t0 + i * dt, v}));
        c.setView(samples, samples[0].ts, samples[samples.length - 1].ts);
        c.draw();
        return c.axes;""", values, t0, dt, axis, zone, list(fixed) if fixed else None)


def distinct(labels: list[str]) -> bool:
    return len(labels) >= 2 and len(set(labels)) == len(labels)


def test_a_non_negative_quantity_gets_an_axis_from_near_its_lowest_value_never_below_zero(page: Any) -> None:
    a = axes(page, [530e3, 1.27e6, 800e3, 1.1e6, 640e3])
    assert 0 <= a["lo"] <= 530e3 and 530e3 - a["lo"] < 0.3 * (a["hi"] - a["lo"]), a
    assert distinct(a["y"]) and distinct(a["x"])
    a = axes(page, [0.0] * 20)  # the battery held at 0 W: a small axis above it, not a negative one
    assert a["lo"] == 0 and a["hi"] > 0 and distinct(a["y"]) and a["y"][0].startswith("0")
    a = axes(page, [-400e3, -5e3, -350e3])  # export only: the padding stops at 0
    assert a["hi"] == 0 and a["lo"] <= -400e3 and distinct(a["y"]), a
    a = axes(page, [-400e3, -300e3, -350e3])  # and the axis is near the values, as above
    assert -300e3 <= a["hi"] < 0 and a["lo"] <= -400e3 and distinct(a["y"]), a


def test_labels_stay_distinct_on_small_swings(page: Any) -> None:
    a = axes(page, [1_000_000, 1_000_400, 1_000_150])  # 400 W on a megawatt: in kW, one decimal
    assert distinct(a["y"]) and all(label.endswith(" kW") for label in a["y"]), a
    a = axes(page, [0.6, 0.6004, 0.6002], axis="percent")
    assert distinct(a["y"]), a
    a = axes(page, [0.6, 0.61], axis="percent", fixed=(0.0, 1.0))
    assert a["y"] == ["0 %", "20 %", "40 %", "60 %", "80 %", "100 %"]


def test_time_labels_are_round_site_times_and_say_the_day_across_midnight(page: Any) -> None:
    a = axes(page, [1.0e6] * 30, t0=DAY - 15, dt=1.0)  # 29 s: seconds
    assert distinct(a["x"]) and all(len(x) == 8 for x in a["x"]), a["x"]
    a = axes(page, [1.0e6] * 100, t0=DAY - 3 * 3600, dt=360.0)  # 10 h across midnight
    assert distinct(a["x"]) and any(x.startswith("29 Nov") for x in a["x"]), a["x"]
    a = axes(page, [1.0e6] * 100, t0=DAY - 3 * 3600, dt=360.0, zone="Asia/Kolkata")  # +05:30
    assert distinct(a["x"]) and all(x.endswith(":00") for x in a["x"]), a["x"]
    a = axes(page, [1.0e6] * 50, t0=DAY - 86400 * 4, dt=7200.0)  # 4 days: days
    assert distinct(a["x"]) and all("Nov" in x for x in a["x"]), a["x"]


def test_a_series_of_gaps_draws_no_axes_and_says_so(page: Any) -> None:
    assert axes(page, [None, None, None]) is None
    assert js(page, "SiteTime.setZone('Not/AZone')") == "UTC"  # an unknown zone: UTC, and the page says UTC
    assert js(page, "SiteTime.dateTime(1795930824.3)") == "2026-11-29 05:40:24"
    assert js(page, "SiteTime.setZone('America/New_York') && SiteTime.dateTime(1795930824.3)") == "2026-11-29 00:40:24"
