"""The operator API against a real controller and the simulated site, over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from ems.clock import ScaledClock
from ems.config import HttpConfig
from ems.operator.auth import Tokens
from ems.operator.server import redact, serve
from tests.conftest import SHAVING_CAP_W, running_controller, running_site, shaving_site, wait_for

pytestmark = pytest.mark.integration

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CAP_W = SHAVING_CAP_W
CAP = "policies.peak_shaving.grid_import_cap_w"


@asynccontextmanager
async def operated(cfg, tokens: Tokens | None = None) -> AsyncIterator[tuple]:
    tokens = Tokens({"operator": TOKEN}) if tokens is None else tokens
    clock = ScaledClock(1.0)
    http = HttpConfig(enabled=True, port=0, stream_interval_s=0.1)
    async with (running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl,
                serve(ctl, http, tokens) as server, aiohttp.ClientSession(server.url) as client):
        await wait_for(lambda: ctl.last is not None)
        yield site, ctl, client


async def test_reads_report_the_running_controller(broker, make_site) -> None:
    cfg = shaving_site(make_site, broker.url)
    async with operated(cfg) as (site, ctl, client):
        await wait_for(lambda: site.plant.battery_power_w > 300_000)  # shaving
        async with client.get("/api/status") as r:
            assert r.status == 200
            status = await r.json()
        assert status["site"] == "test-site" and status["grid_import_cap_w"] == CAP_W
        assert status["policies"]["peak_shaving"] in ("PEAK_SHAVING_ACTIVE", "CAP_UNREACHABLE")
        assert set(status["units"]) == {"bess-1", "bess-2"} and status["actions_enabled"] is True
        assert status["month_peak"]["peak_import_w"] > CAP_W  # before the battery caught the step
        async with client.get("/api/snapshot") as r:
            snap = await r.json()
        assert len(snap["racks"]) == 32 and snap["meter"]["grid_power_w"] > 0
        assert {u["unit"] for u in snap["units"]} == {"bess-1", "bess-2"}
        assert all(u["bms"]["soc"] > 0.5 for u in snap["units"])
        async with client.get("/api/setpoints") as r:
            sp = await r.json()
        assert sp["decisions"][0]["policy"] == "battery_limits"
        assert sum(sp["unit_setpoints_w"].values()) == pytest.approx(sp["arbitration"]["setpoint_w"])
        async with client.get("/api/history") as r:
            hist = await r.json()
        assert hist["samples"] and hist["samples"][-1]["units"]["bess-1"]["soc"] is not None
        # no ramp limit and no smoothing here: no such section, nothing of it in the samples
        assert status["smoothing"] is None and hist["samples"][-1]["ramp_lo_w"] is None
        async with client.get("/api/history", params={"range_s": "3600", "points": "10"}) as r:
            window = await r.json()
        assert 1 <= len(window["samples"]) <= 10 and window["seq"] >= hist["seq"]
        async with client.get("/api/history", params={"since": "0", "points": "10"}) as r:
            assert r.status == 400  # a resume point and a window are two different questions
        assert status["time_zone"] == "UTC" and status["month_peak"]["interval_s"] == 900
        async with client.get("/api/events", params={"kind": "controller_started", "limit": "1"}) as r:
            page = await r.json()
        assert page["events"][0]["kind"] == "controller_started"
        async with client.get("/api/params") as r:
            params = {p["name"]: p for p in (await r.json())["params"]}
        assert params[CAP]["value"] == CAP_W and params[CAP]["schema"]["exclusiveMinimum"] == 0
        async with client.get("/api/openapi.json") as r:
            spec = await r.json()
        assert spec["openapi"].startswith("3.1") and CAP in spec["components"]["schemas"]["SetParam"][
            "properties"]["param"]["enum"]
        async with client.get("/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            metrics = await r.text()
        assert 'ems_unit_soc_ratio{unit="bess-1"}' in metrics
        assert "ems_grid_power_watts " in metrics and "ems_period_duration_seconds_count" in metrics
        count = next(float(line.split()[-1]) for line in metrics.splitlines()
                     if line.startswith("ems_period_duration_seconds_count"))
        assert 3 <= count <= ctl.stats.periods  # every period since the server attached
        assert 'ems_policy_decisions_total{policy="peak_shaving"' in metrics
        # the example Grafana dashboard asks only for metrics the controller exports
        grafana = (Path(__file__).resolve().parents[2] / "docs" / "grafana" / "ems-dashboard.json").read_text()
        suffixes = {"counter": ("", "_total"), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
        exported = {name + suffix for _, _, name, kind in (line.split() for line in metrics.splitlines()
                                                           if line.startswith("# TYPE ems_"))
                    for suffix in suffixes[kind]}
        assert set(re.findall(r"ems_[a-z_]+", grafana)) - exported == set()
        async with client.get("/") as r:
            assert r.status == 200 and "<canvas" in await r.text()


async def test_authenticated_change_applies_at_the_next_period_and_is_audited(broker, make_site) -> None:
    cfg = shaving_site(make_site, broker.url)
    async with operated(cfg) as (site, ctl, client):
        await wait_for(lambda: site.plant.battery_power_w > 300_000)
        body = {"param": CAP, "value": 1_200_000.0, "reason": "raise the cap for the test"}
        async with client.post("/api/actions/set-param", json=body, headers=AUTH) as r:
            assert r.status == 200, await r.text()
            event = (await r.json())["event"]
        periods = ctl.stats.periods
        await wait_for(lambda: ctl.stats.periods > periods + 1)
        p = ctl.controls.step_params
        assert p.peak is not None and p.peak.grid_import_cap_w == 1_200_000.0
        assert ctl.last is not None and ctl.last.step.cap_w == 1_200_000.0
        # 1.44 MW of load: the battery now covers ~240 kW instead of ~440 kW
        await wait_for(lambda: site.plant.battery_power_w == pytest.approx(240_000, rel=0.1), timeout_s=5)
        async with client.get("/api/events", params={"kind": "operator_action"}) as r:
            logged = (await r.json())["events"][0]
        assert logged["id"] == event["id"]
        assert logged["data"]["by"] == "operator" and logged["data"]["why"] == "raise the cap for the test"
        assert logged["data"]["value"] == 1_200_000.0 and logged["data"]["previous"] == CAP_W
        # and back to the site file's value
        async with client.post("/api/actions/reset-param", json={"param": CAP, "reason": "test over"},
                               headers=AUTH) as r:
            assert r.status == 200
        await wait_for(lambda: ctl.last is not None and ctl.last.step.cap_w == CAP_W)


async def test_refusals_are_clear_and_change_nothing(broker, make_site) -> None:
    cfg = shaving_site(make_site, broker.url)
    async with operated(cfg) as (_, ctl, client):
        before = ctl.controls.step_params
        ok = {"param": CAP, "value": 9e5, "reason": "test"}
        cases = [
            ({}, ok, 401, "missing or wrong operator token"),
            ({"Authorization": "Bearer wrong-token-0123456789"}, ok, 401, "missing or wrong operator token"),
            (AUTH, {**ok, "value": -1.0}, 422, "greater than 0"),
            (AUTH, {**ok, "value": 5e5}, 422, "recharge_below_w must not exceed grid_import_cap_w"),
            (AUTH, {**ok, "value": "9e5"}, 400, "value"),
            (AUTH, {**ok, "extra": 1}, 400, "extra"),
            (AUTH, {"param": CAP, "value": 9e5}, 400, "reason"),
            (AUTH, {**ok, "param": "control.period_s"}, 404, "not a tunable parameter"),
        ]
        for headers, body, status, message in cases:
            async with client.post("/api/actions/set-param", json=body, headers=headers) as r:
                assert r.status == status, (body, await r.text())
                err = await r.json()
                assert message in err["error"] + " ".join(err["detail"]), err
                if status == 401:
                    assert r.headers["WWW-Authenticate"].startswith("Bearer")
        async with client.post("/api/actions/set-param", data=b"{not json", headers=AUTH) as r:
            assert r.status == 400
        async with client.get("/api/events", params={"limit": "lots"}) as r:
            assert r.status == 400 and "limit" in (await r.json())["error"]
        assert ctl.controls.step_params is before and ctl.events.count("operator_action") == 0
        # every refused attempt is audited: who (when known), from where, why
        refused = ctl.events.query(limit=20, kind="operator_refused")[::-1]
        assert [e.data["status"] for e in refused] == [status for _, _, status, _ in cases] + [400]
        assert refused[0].data["by"] is None and refused[2].data["by"] == "operator"
        assert refused[2].data["error"].startswith("refused:")  # the 422 keeps the model's message
        assert all(e.data["action"] == "/api/actions/set-param" and e.data["peer"] for e in refused)


async def test_actions_are_disabled_without_a_token(broker, make_site) -> None:
    cfg = shaving_site(make_site, broker.url)
    async with operated(cfg, Tokens({})) as (_, _ctl, client):
        body = {"param": CAP, "value": 9e5, "reason": "test"}
        async with client.post("/api/actions/set-param", json=body, headers=AUTH) as r:
            assert r.status == 503 and "EMS_HTTP_TOKEN" in (await r.json())["error"]


async def test_maintenance_and_forced_mode_drive_the_plant(broker, make_site) -> None:
    cfg = shaving_site(make_site, broker.url)
    async with operated(cfg) as (site, ctl, client):
        plant = site.plant
        await wait_for(lambda: plant.battery_power_w > 300_000)
        body = {"unit": "bess-2", "in_maintenance": True, "reason": "inverter inspection"}
        async with client.post("/api/actions/maintenance", json=body, headers=AUTH) as r:
            assert r.status == 200
        await wait_for(lambda: plant.units["bess-2"].power_w == 0.0, timeout_s=3)
        await wait_for(lambda: plant.units["bess-1"].power_w > 400_000, timeout_s=3)  # takes the whole share
        async with client.get("/api/status") as r:
            unit2 = (await r.json())["units"]["bess-2"]
        assert unit2["reason"] == "UNIT_MAINTENANCE" and unit2["available"] is False
        async with client.post("/api/actions/maintenance", json=body, headers=AUTH) as r:
            assert r.status == 409  # already in maintenance

        # more than the one unit in service can do: refused, with what the site can do now
        body = {"mode": "setpoint", "setpoint_w": 5e6, "timeout_s": 60, "reason": "capacity test"}
        async with client.post("/api/actions/force-mode", json=body, headers=AUTH) as r:
            answer = await r.json()
            assert r.status == 422 and "at most 0.500 MW now (1 of 2 units available)" in answer["error"]
        # within it: taken, and the status says what the units were given
        body = {"mode": "setpoint", "setpoint_w": -400_000, "timeout_s": 1.0, "reason": "charge test"}
        async with client.post("/api/actions/force-mode", json=body, headers=AUTH) as r:
            assert r.status == 200
        await wait_for(lambda: ctl.last is not None and ctl.last.status["forced"] is not None, timeout_s=3)
        assert ctl.last is not None and ctl.last.status["forced"] == {
            "asked_w": -400_000.0, "written_w": -400_000.0, "held_by": None}
        await wait_for(lambda: ctl.controls.force is None, timeout_s=3)
        body = {"mode": "zero", "timeout_s": 1.5, "reason": "PCS firmware check"}
        async with client.post("/api/actions/force-mode", json=body, headers=AUTH) as r:
            assert r.status == 200
        await wait_for(lambda: abs(plant.battery_power_w) < 1_000, timeout_s=3)
        assert ctl.last is not None and ctl.last.step.reason.code == "OPERATOR_FORCED"
        # the timeout hands control back to peak shaving; ending a forced mode that is over conflicts
        await wait_for(lambda: ctl.controls.force is None, timeout_s=3)
        async with client.post("/api/actions/force-mode", json={"mode": "auto", "reason": "done"},
                               headers=AUTH) as r:
            assert r.status == 409 and "no forced mode" in (await r.json())["error"]
        await wait_for(lambda: plant.battery_power_w > 300_000, timeout_s=3)
        kinds = [e.kind for e in ctl.events.query(limit=20) if e.kind in ("operator_action", "operator_revert")]
        assert kinds[:1] == ["operator_revert"]
        async with client.get("/metrics") as r:
            metrics = await r.text()
        assert 'ems_unit_in_maintenance{unit="bess-2"} 1.0' in metrics
        assert 'ems_operator_actions_total{action="force_mode",kind="operator_revert"} 2.0' in metrics  # two ran out


async def test_stream_pushes_samples_status_and_events(broker, make_site) -> None:
    cfg = shaving_site(make_site, broker.url)
    async with operated(cfg) as (_, _ctl, client), client.get("/api/stream") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        seen: dict[str, list] = {"samples": [], "status": [], "event": []}

        async def read_until_event() -> None:
            kind = None
            async for raw in stream.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind is not None:
                    seen[kind].append(json.loads(line[6:]))
                    if kind == "samples" and len(seen["samples"]) == 2:
                        body = {"param": CAP, "value": 1.1e6, "reason": "stream test"}
                        async with client.post("/api/actions/set-param", json=body, headers=AUTH) as r:
                            assert r.status == 200
                    if kind == "event" and seen["event"][-1]["kind"] == "operator_action":
                        return

        await asyncio.wait_for(read_until_event(), 10)
        assert seen["status"] and seen["samples"][0][0]["grid_w"] is not None
        assert seen["event"][-1]["data"]["value"] == 1.1e6


def test_config_secrets_are_redacted() -> None:
    doc = {"mqtt": {"url": "mqtts://ems:hunter2@broker:8883", "password": "hunter2"},
           "http": {"token_env": "EMS_HTTP_TOKEN", "token_file": "/etc/ems/tokens"}, "api_key": "k"}
    assert redact(doc) == {"mqtt": {"url": "mqtts://***@broker:8883", "password": "***"},
                           "http": {"token_env": "EMS_HTTP_TOKEN", "token_file": "/etc/ems/tokens"},
                           "api_key": "***"}


async def test_a_token_that_is_not_utf8_is_refused_and_recorded(broker, make_site) -> None:
    """Raw bytes a browser would never send: 401 and an audit entry, not a 500 and a traceback."""
    cfg = shaving_site(make_site, broker.url)
    async with operated(cfg) as (_, ctl, client):
        url = client._base_url
        assert url is not None
        body = b'{"param": "policies.peak_shaving.grid_import_cap_w", "value": 900000.0, "reason": "test"}'
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(b"POST /api/actions/set-param HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer \xff\xfe\xe9t\xe9" + b"x" * 20 + b"\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        await wait_for(lambda: ctl.events.count("operator_refused") >= 1)
        assert ctl.events.query(kind="operator_refused")[0].data["status"] == 401


async def test_a_ramp_limit_is_in_the_status_and_its_allowed_range_in_the_samples(broker, make_site) -> None:
    # the racks step from 800 kW to 1.44 MW; the connection lets the grid move 100 kW in any 3 s
    limit_w = 100_000.0
    cfg = shaving_site(make_site, broker.url, grid_connection={"ramp_limit_w": limit_w, "ramp_window_s": 3.0})
    async with operated(cfg) as (site, _ctl, client):
        await wait_for(lambda: site.plant.battery_power_w > 300_000, timeout_s=10)  # the battery took the step
        await asyncio.sleep(1.0)
        async with client.get("/api/status") as r:
            sm = (await r.json())["smoothing"]
        async with client.get("/api/history") as r:
            samples = (await r.json())["samples"]
    # no fast loop on this site: its figures are null, the ramp's are there
    assert (sm["reason"], sm["swing_w"], sm["ticks"], sm["grid_band_rms_w"], sm["load_band_rms_w"]) == (
        None, None, 0, None, None)
    lo_w, hi_w = sm["ramp"]["allowed_w"]
    assert sm["ramp"]["limit_w"] == limit_w and sm["ramp"]["window_s"] == 3.0 and 0 <= hi_w - lo_w <= 2 * limit_w
    # the samples: the range the limit allowed around the grid before the step, then the grid held at its top
    before_w = samples[0]["grid_w"]
    held = [s for s in samples if s["reason"] == "RAMP_LIMITED"]
    assert held and held[0]["ramp_hi_w"] == pytest.approx(before_w + limit_w, abs=2_000)
    last = samples[-1]
    assert last["reason"] == "RAMP_LIMITED" and last["ramp_hi_w"] - last["ramp_lo_w"] <= 2 * limit_w
    assert last["grid_w"] <= last["ramp_hi_w"] + 2_000 < last["site_load_w"] - 300_000  # the battery holds the rest
    assert all(s["grid_rms_w"] is None and s["riding_through"] is None for s in samples)
