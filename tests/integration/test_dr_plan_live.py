"""The planner plans for a demand-response event under the live controller: an event posted on
the operator API reaches the DR book, makes a re-plan due at once, and the plan the site runs
names it. The controller starts on a day of load history a previous run saved (planning needs
a day of it)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from ems.clock import ManualClock, ScaledClock
from ems.config import HttpConfig, SiteConfig
from ems.control_loop import Controller
from ems.operator.auth import Tokens
from ems.operator.server import serve
from ems.tariff.calendar import local_seconds
from tests.conftest import running_controller, running_site, wait_for
from tests.unit.test_tariff_signals import URDB

pytestmark = pytest.mark.integration

TOKEN = "test-token-0123456789abcdef"


def _a_day_of_history_saved(cfg: SiteConfig) -> None:
    """What a previous run of this site left in its state dir: 26 h of load ending now."""
    clock = ManualClock(epoch_wall=time.time() - 26 * 3600.0)
    ctl = Controller(cfg, clock)
    assert ctl.planner is not None
    for _ in range(26 * 60):
        clock.advance(60.0)
        ctl.planner.runner.observe(local_seconds(clock.wall(), ctl.planner.zone), 60.0, 30_000.0, None)
    ctl.persisted.save(ctl)
    ctl.persisted.store.close()
    ctl.events.close()


@pytest.mark.timeout(120)
async def test_an_event_posted_live_is_planned_for(broker: Any, make_site: Any, tmp_path: Any) -> None:
    if not URDB.exists():
        pytest.skip("shared data not present")
    cfg = make_site(
        broker.url, rows=2, racks_per_row=4, period_s=0.2, units=1, control={"meter_frozen_s": 0.0},
        state={"dir": str(tmp_path)},
        policies={"battery": {"soc_min": 0.1, "soc_max": 0.95},
                  "arbitrage": {"tariff": str(URDB)},
                  "demand_response": {"flex_tiers": {"row01": 0, "row02": 4}, "precharge_s": 0.0,
                                      "penalty_per_kwh": 5.0, "load_target": {"mqtt": False}}},
        simulation={"seed": 3, "speed": 1.0, "pue": 1.25,
                    "bess": [{"capacity_wh": 100_000, "rated_power_w": 20_000, "initial_soc": 0.3,
                              "heartbeat_timeout_s": 2.0}],
                    "racks": {"model": "steady", "steady_fraction": 0.6, "telemetry_period_s": 0.2}})
    _a_day_of_history_saved(cfg)
    clock = ScaledClock(1.0)
    async with (running_site(cfg, clock), running_controller(cfg, clock) as ctl,
                serve(ctl, HttpConfig(enabled=True, port=0), Tokens({"operator": TOKEN})) as server,
                aiohttp.ClientSession(server.url) as web):
        assert ctl.planner is not None
        def planned() -> list[str] | None:
            plan = None if ctl.last is None else (ctl.last.status.get("plan") or {}).get("plan")
            return None if plan is None else list(plan["dr_events"])

        await wait_for(lambda: planned() is not None, timeout_s=30)  # planning at once, on the saved history
        assert planned() == []
        event_id = str(uuid.uuid4())
        start = datetime.now(UTC) + timedelta(minutes=45)  # on the plan's later 15-min steps
        body = {"specversion": "1.0", "id": event_id, "source": "//grid/v1/isv/test",
                "time": datetime.now(UTC).isoformat(), "type": "grid.loadtarget.set.v1",
                "data": {"target": {"value": 50, "unit": "kW"}, "start": start.isoformat(), "duration_s": 3600}}
        async with web.post("/api/actions/load-target", json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200, await r.text()
        # a new event makes a re-plan due at once: the plan in force names it
        await wait_for(lambda: bool(planned()), timeout_s=30)
        assert planned() == [ctl.last.status["dr"]["pending"][0]["event_id"]]
