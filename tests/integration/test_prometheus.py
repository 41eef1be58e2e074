"""The alerting rules (docs/prometheus/ems-alerts.yml) with the real Prometheus: promtool checks
and unit-tests them, lints a running controller's /metrics, and a Prometheus server scrapes that
controller with the rules loaded: every rule evaluates without error on the real series, and a
lost device makes its alert pending.

Prometheus and promtool come from Debian's `prometheus` package (.ci/run extracts them; on
PATH, or in $EMS_PROMETHEUS_BIN); without them these tests are skipped, saying why."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from ems.broker import free_port
from ems.clock import ScaledClock
from ems.config import HttpConfig
from ems.operator.auth import Tokens
from ems.operator.server import serve
from tests.conftest import running_controller, running_site, shaving_site, wait_for

pytestmark = pytest.mark.integration

RULES_DIR = Path(__file__).resolve().parents[2] / "docs" / "prometheus"
RULES = RULES_DIR / "ems-alerts.yml"
N_RULES = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])


def _tool(name: str) -> str:
    where = os.environ.get("EMS_PROMETHEUS_BIN")
    found = str(Path(where) / name) if where and (Path(where) / name).exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed (Debian's prometheus package; .ci/run extracts it)")
    return found


def _run(*cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, cwd=RULES_DIR)


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    promtool = _tool("promtool")
    check = _run(promtool, "check", "rules", str(RULES))
    assert check.returncode == 0 and f"SUCCESS: {N_RULES} rules found" in check.stdout, check.stdout + check.stderr
    unit = _run(promtool, "test", "rules", "ems-alerts.test.yml")
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def test_the_rules_ask_only_for_metrics_ems_exports() -> None:
    # the names the code defines (some only on some sites: a VEN, HA, off-grid), with their suffixes
    root = RULES_DIR.parents[1] / "ems"
    code = "".join(p.read_text() for p in (root / "operator" / "metrics.py", root / "microgrid_kpis.py"))
    defined = set(re.findall(r'"(ems_[a-z_]+)"', code))
    asked = set(re.findall(r"\b(ems_[a-z_]+)", RULES.read_text()))
    unknown = {n for n in asked if not any(n == d or n in {d + s for s in ("_total", "_bucket", "_count", "_sum")}
                                           for d in defined)}
    assert asked and unknown == set()


@contextlib.asynccontextmanager
async def prometheus(target_port: int, tmp: Path) -> AsyncIterator[str]:
    """A Prometheus server on loopback scraping `target_port` every second with the rules; its URL."""
    port = free_port()
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n"
        f"  - job_name: ems\n    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n")
    proc = subprocess.Popen(
        [_tool("prometheus"), f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def _api(http: aiohttp.ClientSession, url: str, **params: str) -> Any:
    try:
        async with http.get(url, params=params) as r:
            return (await r.json())["data"] if r.status == 200 else None
    except aiohttp.ClientError:
        return None  # not up yet


async def test_prometheus_scrapes_a_controller_and_its_rules_evaluate(broker, make_site, tmp_path: Path) -> None:
    cfg = shaving_site(make_site, broker.url)
    clock = ScaledClock(1.0)
    async with (running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl,
                serve(ctl, HttpConfig(enabled=True, port=0), Tokens({})) as server, aiohttp.ClientSession() as http):
        await wait_for(lambda: ctl.last is not None)
        async with http.get(f"{server.url}metrics") as r:
            lint = _run(_tool("promtool"), "check", "metrics", stdin=await r.text())
        assert lint.returncode == 0, lint.stdout + lint.stderr  # the exposition as Prometheus would have it
        async with prometheus(server.port, tmp_path) as prom:
            state: dict[str, Any] = {}

            async def poll(what: str, **params: str) -> bool:
                state[what] = await _api(http, f"{prom}/api/v1/{what}", **params)
                return state[what] is not None

            async def scraped() -> bool:
                return await poll("targets") and any(t["health"] == "up" for t in state["targets"]["activeTargets"])

            async def evaluated() -> bool:
                if not await poll("rules"):
                    return False
                rules = [r for g in state["rules"]["groups"] for r in g["rules"]]
                return len(rules) == N_RULES and all(r["lastEvaluation"][:4] != "0001" for r in rules)

            await _until(scraped, 30.0)
            await wait_for(lambda: ctl.stats.periods > 5)
            await _until(evaluated, 30.0)
            rules = [r for g in state["rules"]["groups"] for r in g["rules"]]
            assert [r["name"] for r in rules if r["health"] != "ok"] == [], rules
            assert await poll("query", query="ems_unit_available")
            assert {s["metric"]["unit"]: s["value"][1] for s in state["query"]["result"]} == {
                "bess-1": "1", "bess-2": "1"}
            # a BMS stops answering: the controller counts it down, Prometheus sees it, the alert is pending
            await site.device("bess-2.bms").stop()

            async def pending() -> bool:
                return await poll("alerts") and any(a["labels"]["alertname"] == "EmsDeviceDown"
                                                    for a in state["alerts"]["alerts"])

            await _until(pending, 30.0)
            [down] = [a for a in state["alerts"]["alerts"] if a["labels"]["alertname"] == "EmsDeviceDown"]
            assert down["state"] == "pending" and down["labels"]["job"] == "ems"  # for: 30 s


async def _until(check: Any, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.25)
