"""The scheduler's view: deploy/scheduler/dr_budget.py (what the Slurm and Kubernetes examples
run) against the operator API of the real controller on the simulated site, before and
during a demand-response event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from ems.clock import ScaledClock
from ems.config import HttpConfig, SiteConfig
from ems.control_loop import Controller
from ems.operator.auth import Tokens
from ems.operator.server import serve
from tests.conftest import free_port, running_controller, running_site, wait_for

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "scheduler" / "dr_budget.py"
TOKEN = "test-token-0123456789abcdef"


async def budget(url: str, row: str, ahead_s: float = 0.0) -> tuple[int, dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), "--url", url, "--row", row, "--ahead-s", str(ahead_s), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, json.loads(out) if out.strip() else {}


def two_row_dr_site(make_site: Callable[..., SiteConfig], broker_url: str) -> SiteConfig:
    """Two rows of four racks, row01 never throttled (tier 0), row02 tier 4; events through the
    operator API; a battery too small to meet a target alone."""
    return make_site(
        broker_url, rows=2, racks_per_row=4, period_s=0.2, units=1, control={"meter_frozen_s": 0.0},
        policies={"battery": {"soc_min": 0.1, "soc_max": 0.95},
                  "demand_response": {"flex_tiers": {"row01": 0, "row02": 4}, "precharge_s": 0.0,
                                      "load_target": {"mqtt": False}}},
        simulation={"seed": 3, "speed": 1.0, "pue": 1.25,
                    "bess": [{"capacity_wh": 100_000, "rated_power_w": 20_000, "initial_soc": 0.6,
                              "heartbeat_timeout_s": 2.0}],
                    "racks": {"model": "steady", "steady_fraction": 0.6, "telemetry_period_s": 0.2,
                              "cap_response_s": 0.05}})


@contextlib.asynccontextmanager
async def controlled_with_api(cfg: SiteConfig) -> AsyncIterator[tuple[Controller, str, aiohttp.ClientSession]]:
    """The simulated site under the controller, its operator API served: (controller, API url, a session)."""
    clock = ScaledClock(1.0)
    async with (running_site(cfg, clock), running_controller(cfg, clock) as ctl,
                serve(ctl, HttpConfig(enabled=True, port=0), Tokens({"operator": TOKEN})) as server,
                aiohttp.ClientSession(server.url) as web):
        await wait_for(lambda: ctl.last is not None)
        yield ctl, server.url.rstrip("/"), web


@pytest.mark.timeout(120)
async def test_the_budget_script_sees_an_event_coming_and_the_rows_it_caps(broker, make_site) -> None:
    async with controlled_with_api(two_row_dr_site(make_site, broker.url)) as (ctl, url, web):
        assert (await budget(url, "row02", ahead_s=600))[0] == 0  # nothing announced
        start = datetime.now(UTC) + timedelta(seconds=6)
        body = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "//grid/v1/isv/test", "time":
                datetime.now(UTC).isoformat(), "type": "grid.loadtarget.set.v1",
                "data": {"target": {"value": 150, "unit": "kW"}, "start": start.isoformat(), "duration_s": 30}}
        async with web.post("/api/actions/load-target", json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200, await r.text()
        await wait_for(lambda: bool(ctl.dr.pending()))
        await wait_for(lambda: bool((ctl.last.status.get("dr") or {}).get("pending")), timeout_s=5)
        # announced: a tier-4 row is warned ahead, a tier-0 row is not (it is never capped)
        code, view = await budget(url, "row02", ahead_s=600)
        assert code == 3 and view["due"] and view["budget_w"] is None
        assert (await budget(url, "row01", ahead_s=600))[0] == 0
        assert (await budget(url, "row02", ahead_s=0))[0] == 0  # not yet in force
        # in force: row02's racks are capped and its budget is their caps' sum
        await wait_for(lambda: ((ctl.last.status.get("dr") or {}).get("rows") or {}).get("row02", {}).get(
            "budget_w") is not None, timeout_s=20)
        code, view = await budget(url, "row02")
        assert code == 3 and view["phase"] == "active" and 0 <= float(view["budget_w"]) < 4 * 40_000  # type: ignore[arg-type]
        code, view = await budget(url, "row01")
        assert code == 0 and view["flex_tier"] == 0 and view["budget_w"] is None
    # ems cannot be asked: 2, the caller decides
    assert (await budget(f"http://127.0.0.1:{free_port()}", "row02"))[0] == 2
