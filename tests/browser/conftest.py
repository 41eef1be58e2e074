"""Headless Chromium for the dashboard tests, and what they check on every page they load.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them); the tests here are
skipped, saying so, when they are missing.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ems.broker import free_port
from tests.hil_config import hil_site_on_free_ports

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TOKEN = "browser-test-token-0123456789"
REPO = Path(__file__).resolve().parents[2]

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the test modules skip, saying why
    webdriver = None

# why the browser tests cannot run here (None: they can); each test module skips with it
MISSING = ("selenium is not installed (pip install -e .[dev])" if webdriver is None
           else None if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()
           else "headless Chromium is not installed: apt-get install chromium chromium-driver")

# what the page must never show once it has data
PLACEHOLDERS = ("connecting", "loading", "waiting for", "no samples")
EPOCH = re.compile(r"(?<![\d.])\d{10}(?:\.\d+)?(?!\d)")  # 10-digit numbers: epoch seconds shown raw


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="ems-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={profile}",
                "--window-size=1600,1400", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: Any, cond: Callable[[Any], Any], timeout_s: float = 20.0, what: str = "") -> Any:
    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(cond, message=what)


def js(driver: Any, expr: str) -> Any:
    return driver.execute_script(f"return {expr};")


def shown_problems(driver: Any) -> list[str]:
    """What a person would call wrong on the page as shown: placeholder text, a raw epoch
    number (anywhere in the page's text, hidden parts included), an empty or dash-only
    tile, a chart not drawn, an axis label twice or a negative axis under a quantity that
    is never negative."""
    problems = []
    shown = str(js(driver, "document.body.innerText"))
    for p in PLACEHOLDERS:
        if p in shown.lower():
            problems.append(f"placeholder shown: {p!r}")
    everything = str(js(driver, "document.body.textContent"))
    problems += [f"raw epoch seconds: {m.group(0)!r} in …{everything[max(0, m.start() - 60):m.end() + 20]!r}"
                 for m in EPOCH.finditer(everything)]
    for tile_id, text in js(driver, """[...document.querySelectorAll('.tile:not(.hidden) .big')]
            .map(e => [e.id, e.innerText.trim()])"""):
        if text in ("", "—"):
            problems.append(f"tile {tile_id} shows {text!r}")
    charts = js(driver, """Object.fromEntries(Object.entries(window.ems.charts).map(([k, c]) =>
            [k, {drawn: c.drawn, axes: c.axes}]))""")
    for name, c in charts.items():
        if not c["drawn"] or not c["axes"]:
            problems.append(f"chart {name} not drawn")
            continue
        for axis in ("x", "y"):
            labels = c["axes"][axis]
            if len(set(labels)) != len(labels) or len(labels) < 2:
                problems.append(f"chart {name}: {axis} labels {labels}")
    racks = charts["racks"]["axes"]
    if racks and racks["lo"] < 0:
        problems.append(f"rack load axis from {racks['lo']} W")
    return problems


def full_page_screenshot(driver: Any, path: Path) -> Path:
    """The whole page at the window's width, as laid out in the window (nothing resized)."""
    width, height = js(driver, "[document.documentElement.clientWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def layout_problems(driver: Any) -> list[str]:
    """Anything wider than the window, or scrolling sideways inside a panel, or a button of
    the units table not fully inside its panel."""
    return list(js(driver, """(() => {
        const out = [], de = document.documentElement;
        if (de.scrollWidth > de.clientWidth) out.push(`page ${de.scrollWidth} px wide in ${de.clientWidth}`);
        for (const p of document.querySelectorAll('.panel, .tile')) {
          const name = p.querySelector('h2,h3').innerText;
          if (p.scrollWidth > p.clientWidth + 1) out.push(`${name}: ${p.scrollWidth} px wide in ${p.clientWidth}`);
        }
        for (const b of document.querySelectorAll('#units button')) {
          const r = b.getBoundingClientRect(), pr = b.closest('.panel').getBoundingClientRect();
          if (r.left < pr.left || r.right > pr.right) out.push(`units button ${b.dataset.unit} clipped`);
        }
        return out; })()"""))


@dataclass
class Proc:
    """A command in a process group of its own, its output read as it comes (so that it never
    blocks on a full pipe)."""

    name: str
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @classmethod
    def start(cls, name: str, argv: list[str], **kw: Any) -> Proc:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, **kw)
        p = cls(name, proc)
        p.reader = threading.Thread(target=p._drain, daemon=True)
        p.reader.start()
        return p

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout_s: float) -> str:
        """The first line holding `needle`, waiting for it up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if needle in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no {needle!r} within {timeout_s} s:\n{self.text()[-3000:]}")

    def stop(self, timeout_s: float = 20) -> int | None:
        """SIGINT, as Ctrl-C; whatever is left of its group is killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            if self.reader is not None:
                self.reader.join(5)
        return self.proc.returncode


@contextlib.contextmanager
def hil_site(tmp: Path, adjust: Callable[[dict[str, Any]], None] | None = None) -> Iterator[str]:
    """`ems broker`, `ems sim` and `ems run` as the README runs them, each in a process of its
    own, on a copy of config/hil-site.yaml (changed by `adjust`) with the operator server on
    and every port a free one; yields the dashboard URL. The controller must exit 0."""
    cfg, broker_port = hil_site_on_free_ports()
    cfg["http"] = {"enabled": True, "port": free_port()}
    cfg["state"]["dir"] = str(tmp / "state")
    if adjust is not None:
        adjust(cfg)
    site = tmp / "hil-site.yaml"
    site.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "EMS_HTTP_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    ems = [sys.executable, "-m", "ems.cli"]
    procs: list[Proc] = []
    try:
        procs.append(Proc.start("ems broker", [*ems, "broker", "--port", str(broker_port)], cwd=tmp, env=env))
        procs[-1].wait_for("ems broker:", 15)
        procs.append(Proc.start("ems sim", [*ems, "sim", "--config", str(site)], cwd=tmp, env=env))
        procs[-1].wait_for("simulated site up", 20)
        procs.append(Proc.start("ems run", [*ems, "run", "--config", str(site)], cwd=tmp, env=env))
        line = procs[-1].wait_for("operator server up", 20)
        url = re.search(r"url=(\S+)", line).group(1)  # type: ignore[union-attr]
        procs[-1].wait_for("first period", 20)
        yield url
    finally:
        codes = {p.name: p.stop() for p in reversed(procs)}  # the controller first, then the site, the broker
    run = procs[2].text() if len(procs) > 2 else ""
    assert codes.get("ems run") == 0 and "Traceback" not in run, run[-3000:]
