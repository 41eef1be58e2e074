"""The load-target channel end to end: an aggregator's signed `grid.loadtarget.set` over MQTT
and an operator's through the HTTP API, the real controller on the simulated site, the
site's answers (status, breach alert) back over MQTT."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import aiomqtt
import pytest

from ems.clock import ScaledClock
from ems.config import HttpConfig
from ems.load_target import jws_sign
from ems.operator.auth import Tokens
from ems.operator.server import serve
from tests.conftest import running_controller, running_site, wait_for

pytestmark = pytest.mark.integration

SECRET = "aggregator-shared-secret-0123"
TOKEN = "test-token-0123456789abcdef"


def _site(make_site, url: str):
    return make_site(
        url, rows=2, racks_per_row=4, period_s=0.2, units=1,
        # steady racks capped to their floor make a meter reading that never moves: not a frozen meter here
        control={"meter_frozen_s": 0.0},
        policies={"battery": {"soc_min": 0.1, "soc_max": 0.95},
                  "demand_response": {"flex_tiers": {"row01": 1, "row02": 4}, "precharge_s": 0.0,
                                      "load_target": {"secret_env": "EMS_TEST_LT_SECRET", "status_every_s": 1.0}}},
        simulation={"seed": 3, "speed": 1.0, "pue": 1.25,
                    "bess": [{"capacity_wh": 100_000, "rated_power_w": 20_000, "initial_soc": 0.6,
                              "ramp_w_per_s": 1_000_000, "heartbeat_timeout_s": 2.0}],
                    "racks": {"model": "steady", "steady_fraction": 0.6, "telemetry_period_s": 0.2,
                              "cap_response_s": 0.05}})


def request(target_w: float | None, start: datetime, duration_s: float, correlation: str,
            secret: str | None = SECRET) -> dict[str, Any]:
    data: dict[str, Any] = {"target": None if target_w is None else {"value": target_w / 1e3, "unit": "kW"},
                            "start": start.isoformat(), "duration_s": duration_s, "priority": 5}
    return {"specversion": "1.0.2", "id": str(uuid.uuid4()), "source": "//grid/v1/isv/test-aggregator",
            "type": "grid.loadtarget.set.v1", "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json", "subject": "loadtarget", "correlationid": correlation,
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "data": data if secret is None else jws_sign(data, secret.encode())}


async def _answers(client: aiomqtt.Client, into: list[dict[str, Any]]) -> None:
    with contextlib.suppress(aiomqtt.MqttError):  # the client closes at the test's end
        async for m in client.messages:
            body = json.loads(m.payload if isinstance(m.payload, bytes) else b"{}")
            into.append({"topic": str(m.topic), **body})


@pytest.mark.timeout(180)
async def test_a_signed_load_target_is_held_answered_and_alerted(broker, make_site, monkeypatch) -> None:
    monkeypatch.setenv("EMS_TEST_LT_SECRET", SECRET)
    cfg = _site(make_site, broker.url)
    prefix = cfg.mqtt.topic_prefix
    clock = ScaledClock(1.0)
    http = HttpConfig(enabled=True, port=0)
    answers: list[dict[str, Any]] = []
    async with (running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl,
                serve(ctl, http, Tokens({"operator": TOKEN})) as server,
                aiohttp.ClientSession(server.url) as web,
                aiomqtt.Client(hostname="127.0.0.1", port=broker.port, identifier="test-aggregator") as agg):
        await agg.subscribe([(f"{prefix}/grid/loadtarget/status", 1), (f"{prefix}/grid/powerbreach/alert", 1)])
        listener = asyncio.create_task(_answers(agg, answers))
        await wait_for(lambda: ctl.last is not None)
        before_w = site.plant.meter.grid_power_w  # 8 racks x 40 kW x 0.6 x 1.25 = 240 kW
        # an unsigned request and garbage: rejected, counted, answered
        await agg.publish(f"{prefix}/grid/loadtarget/set",
                          json.dumps(request(150e3, datetime.now(UTC), 30, str(uuid.uuid4()), secret=None)), qos=1)
        await agg.publish(f"{prefix}/grid/loadtarget/set", b"\x00not json", qos=1)
        # a signed one: 200 kW from now for 70 s; the battery (20 kW) and row02 (tier 4) can reach it
        corr = str(uuid.uuid4())
        start = datetime.now(UTC) + timedelta(seconds=1)
        raw = request(200e3, start, 70, corr)
        await agg.publish(f"{prefix}/grid/loadtarget/set", json.dumps(raw), qos=1)
        await wait_for(lambda: any(a.get("correlationid") == corr and a["data"]["state"] == "accepted"
                                   for a in answers), timeout_s=5)
        channel = ctl.load_target_channel
        assert channel is not None and channel.rejected == 2 and channel.accepted == 1
        assert [a["data"]["state"] for a in answers if a.get("correlationid") is None] == ["rejected", "rejected"]
        # the same request again (a replay) is refused, also through the operator API
        async with web.post("/api/actions/load-target", json=raw, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 422 and "replay" in (await r.json())["error"]
        await wait_for(lambda: site.plant.meter.grid_power_w <= 200e3, timeout_s=30)
        await wait_for(lambda: any(a.get("correlationid") == corr and a["data"]["state"] == "active"
                                   for a in answers), timeout_s=5)
        async with web.get("/api/dr") as r:
            dr = (await r.json())["dr"]
        assert dr["phase"] == "active" and dr["event_id"] == corr and dr["rows"]["row02"]["budget_w"] is not None
        assert dr["rows"]["row01"]["flex_tier"] == 1
        # the operator lowers the target to what the site cannot reach (tier 1 gives 10 %): a breach alert
        # after its first minute
        corr2 = str(uuid.uuid4())
        low = request(20e3, datetime.now(UTC), 65, corr2, secret=SECRET)
        low["data"] = jws_sign({"target": {"value": 20, "unit": "kW"}, "start": datetime.now(UTC).isoformat(),
                                "duration_s": 65, "priority": 9}, SECRET.encode())
        async with web.post("/api/actions/load-target", json=low, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200, await r.text()
        await wait_for(lambda: ctl.last is not None and ctl.last.step.dr is not None
                       and ctl.last.step.dr.event_id == corr2, timeout_s=5)  # the higher priority is in force
        await wait_for(lambda: any(a["topic"].endswith("/powerbreach/alert") for a in answers), timeout_s=80)
        [alert] = [a for a in answers if a["topic"].endswith("/powerbreach/alert")][:1]
        assert alert["type"] == "grid.powerbreach.alert.v1" and alert["data"]["event_id"] == corr2
        assert ctl.last.status["dr"]["gpu"] == "DR_TARGET_UNREACHABLE"
        # cancelled by the aggregator: the caps go, the import comes back
        cancel = request(None, start, 70, corr2)
        await agg.publish(f"{prefix}/grid/loadtarget/set", json.dumps(cancel), qos=1)
        await agg.publish(f"{prefix}/grid/loadtarget/set", json.dumps(request(None, start, 70, corr)), qos=1)
        await wait_for(lambda: site.plant.meter.grid_power_w > 0.9 * before_w, timeout_s=10)
        # the first event was cut short by the second (its figures so far), the second ran to its end
        await wait_for(lambda: len(ctl.dr.results) >= 2, timeout_s=5)
        assert [r["event_id"] for r in ctl.dr.results][:2] == [corr, corr2]
        assert ctl.dr.results[1]["minutes"] >= 1 and ctl.dr.results[1]["minutes_at_target"] == 0
        listener.cancel()
