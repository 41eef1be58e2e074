"""BESS units added to and removed from the site file while the controller runs: no restart,
no setpoint outside the envelope, events recorded, the month's demand kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from ems.broker import free_port
from ems.clock import ScaledClock
from ems.config import SiteConfig
from ems.model.readings import PcsMode
from ems.published import PeriodResult
from tests.conftest import failover_site, running_controller, running_site, shaving_site, training_site, wait_for

pytestmark = pytest.mark.integration


def _write(path: Path, cfg: SiteConfig, unit_ids: list[str]) -> SiteConfig:
    data = cfg.model_dump(mode="json")
    data["bess_units"] = [u for u in data["bess_units"] if u["id"] in unit_ids]
    path.write_text(yaml.safe_dump(data))
    return SiteConfig.model_validate(data)


async def test_a_unit_added_then_removed_while_running(broker, make_site, tmp_path) -> None:
    three = shaving_site(make_site, broker.url, step_at_s=0.3, units=3)  # the plant has three units
    site_file = tmp_path / "site.yaml"
    two = _write(site_file, three, ["bess-1", "bess-2"])
    clock = ScaledClock(1.0)
    outside: list[str] = []

    def check(result: PeriodResult) -> None:  # every setpoint written within its unit's bounds
        for uid, w in result.step.unit_setpoints_w.items():
            lo, hi = result.step.unit_bounds_w.get(uid, (0.0, 0.0))
            if not lo - 1.0 <= w <= hi + 1.0:
                outside.append(f"{uid}: {w} outside {lo}..{hi}")

    async with running_site(three, clock) as site, running_controller(two, clock) as ctl:
        ctl.observers.append(check)
        plant = site.plant
        await wait_for(lambda: plant.units["bess-1"].power_w > 100_000 and plant.units["bess-2"].power_w > 100_000)
        assert plant.units["bess-3"].mode is PcsMode.STANDBY  # not the controller's: standby at 0 W
        demand, events_before = ctl.demand, ctl.events.count()

        # added: probed, 0 W, then in dispatch
        _write(site_file, three, ["bess-1", "bess-2", "bess-3"])
        ok, why = ctl.reload_config(site_file)
        assert ok, why
        await wait_for(lambda: ctl.last is not None and "bess-3" in {u.unit_id for u in ctl.last.snapshot.units})
        await wait_for(lambda: plant.units["bess-3"].power_w > 50_000)
        assert plant.units["bess-3"].mode is PcsMode.GRID_FOLLOWING
        # the three share the excess over the cap
        await wait_for(lambda: all(u.power_w > 50_000 for u in plant.units.values()))

        # removed: 0 W and standby first, then out of the loop; the others take its share
        _write(site_file, three, ["bess-2", "bess-3"])
        ok, why = ctl.reload_config(site_file)
        assert ok, why
        await wait_for(lambda: ctl.last is not None and "bess-1" not in {u.unit_id for u in ctl.last.snapshot.units})
        assert plant.units["bess-1"].mode is PcsMode.STANDBY and plant.units["bess-1"].setpoint_w == 0.0
        await wait_for(lambda: abs(plant.units["bess-1"].power_w) < 1.0)
        await asyncio.sleep(0.5)
        assert plant.meter.grid_power_w <= 1_000_000 * 1.02  # still shaved, by two units
        assert [u.io.unit_id for u in ctl.actuators.units] == ["bess-2", "bess-3"]

        assert outside == []
        # no restart: the same demand meter (the month's peak), the event log carried on
        assert ctl.demand is demand
        assert ctl.events.count() > events_before
        assert ctl.events.count("controller_started") == 1
        added, removed = ctl.events.query(kind="unit_added"), ctl.events.query(kind="unit_removed")
        assert [e.data["unit"] for e in added] == ["bess-3"]
        assert [e.data["unit"] for e in removed] == ["bess-1"] and removed[0].data["told_standby"] is True


async def test_a_changed_unit_still_needs_a_restart(broker, make_site, tmp_path) -> None:
    cfg = shaving_site(make_site, broker.url, step_at_s=0.3)
    site_file = tmp_path / "site.yaml"
    data = cfg.model_dump(mode="json")
    data["bess_units"][0]["pcs"]["port"] = free_port()  # (+1000 could land on another device's port)
    site_file.write_text(yaml.safe_dump(data))
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock), running_controller(cfg, clock) as ctl:
        ok, why = ctl.reload_config(site_file)
        assert not ok and "bess-1 changed" in why


async def test_a_unit_removed_and_put_back_changed_before_the_next_period_still_needs_a_restart(
        broker, make_site, tmp_path) -> None:
    """Two reloads between periods: the first removes bess-2 (pending), the second puts it back
    on another port. The running bess-2 is the old one: the change is refused, never taken as
    applied while the controller goes on with the old endpoint."""
    cfg = shaving_site(make_site, broker.url, step_at_s=0.3)
    site_file = tmp_path / "site.yaml"
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock), running_controller(cfg, clock) as ctl:
        await wait_for(lambda: ctl.last is not None)
        _write(site_file, cfg, ["bess-1"])
        first = ctl.reload_config(site_file)  # both in one go: no period runs in between
        data = cfg.model_dump(mode="json")
        data["bess_units"][1]["pcs"]["port"] = free_port()
        site_file.write_text(yaml.safe_dump(data))
        ok, why = ctl.reload_config(site_file)
        assert first[0] and not ok and "bess-2 changed" in why
        await wait_for(lambda: ctl.last is not None and [u.unit_id for u in ctl.last.snapshot.units] == ["bess-1"])


async def test_with_failover_on_an_added_unit_joins_the_plan_and_forms_the_island(
        broker, make_site, tmp_path) -> None:
    three = failover_site(make_site, broker.url, units=3)
    site_file = tmp_path / "site.yaml"
    two = _write(site_file, three, ["bess-1", "bess-2"])
    clock = ScaledClock(1.0)
    async with running_site(three, clock) as site, running_controller(two, clock) as ctl:
        fo = ctl.failover
        assert fo is not None
        await wait_for(lambda: fo.plan is not None and set(fo.plan.units) == {"bess-1", "bess-2"})

        # the first unit's PCS is the grid sensor: it cannot go without a restart
        _write(site_file, three, ["bess-2"])
        ok, why = ctl.reload_config(site_file)
        assert not ok and "grid sensor" in why

        _write(site_file, three, ["bess-1", "bess-2", "bess-3"])
        ok, why = ctl.reload_config(site_file)
        assert ok, why
        await wait_for(lambda: fo.plan is not None and "bess-3" in fo.plan.units)  # at the next re-arm
        assert "bess-3" in fo.fast.pcs

        _write(site_file, three, ["bess-1", "bess-3"])  # bess-2 out: dropped from the fast path first
        ok, why = ctl.reload_config(site_file)
        assert ok, why
        await wait_for(lambda: fo.plan is not None and set(fo.plan.units) == {"bess-1", "bess-3"})
        assert set(fo.fast.pcs) == {"bess-1", "bess-3"}
        assert site.plant.units["bess-2"].mode is PcsMode.STANDBY

        site.control("grid_loss")
        await wait_for(lambda: len(fo.firings) == 1, 5.0)
        firing = fo.firings[0]
        formed = {e.device for e in firing.entries if e.action == "grid_forming" and e.error is None}
        assert formed == {"bess-1.pcs", "bess-3.pcs"}  # the added unit carries the island, the removed not
        await wait_for(lambda: site.plant.units["bess-3"].mode is PcsMode.GRID_FORMING)
        assert site.plant.summary()["lost_racks"] == 0


async def test_with_the_smoothing_loop_on_an_added_unit_is_written_by_its_ticks(broker, make_site, tmp_path) -> None:
    three = training_site(make_site, broker.url, units=3, gpu=False)  # three units of 1 MW in the plant
    site_file = tmp_path / "site.yaml"
    two = _write(site_file, three, ["bess-1", "bess-2"])
    clock = ScaledClock(1.0)
    async with running_site(three, clock) as site, running_controller(two, clock) as ctl:
        fast = ctl.smoother
        assert fast is not None
        await wait_for(lambda: fast.owns_setpoints and fast.ticks > 20, timeout_s=10)
        _write(site_file, three, ["bess-1", "bess-2", "bess-3"])
        ok, why = ctl.reload_config(site_file)
        assert ok, why
        # the ticks swing the new unit's setpoint with the others' (the fast loop owns setpoints again)
        await wait_for(lambda: "bess-3" in fast.written_w and fast.owns_setpoints, timeout_s=10)
        seen = set()
        for _ in range(40):
            seen.add(round(site.plant.units["bess-3"].setpoint_w))
            await asyncio.sleep(0.05)
        assert len(seen) > 3

        _write(site_file, three, ["bess-1", "bess-3"])
        ok, why = ctl.reload_config(site_file)
        assert ok, why
        await wait_for(lambda: "bess-2" not in fast.pcs and fast.owns_setpoints, timeout_s=10)
        await asyncio.sleep(1.0)  # ticks go on: none writes the retired unit
        assert site.plant.units["bess-2"].setpoint_w == 0.0 and site.plant.units["bess-2"].mode is PcsMode.STANDBY
        assert fast.write_failures == 0


async def test_the_operator_api_re_reads_the_site_file_and_a_unit_joins(broker, make_site, tmp_path) -> None:
    import aiohttp

    from ems.config import HttpConfig
    from ems.operator.auth import Tokens
    from ems.operator.server import serve

    three = shaving_site(make_site, broker.url, step_at_s=0.3, units=3)
    site_file = tmp_path / "site.yaml"
    two = _write(site_file, three, ["bess-1", "bess-2"])
    clock = ScaledClock(1.0)
    auth = {"Authorization": "Bearer test-token-0123456789abcdef"}
    http = HttpConfig(enabled=True, port=0, stream_interval_s=0.1)
    async with (running_site(three, clock) as site, running_controller(two, clock) as ctl,
                serve(ctl, http, Tokens({"operator": auth["Authorization"][7:]})) as server,
                aiohttp.ClientSession(server.url) as client):
        body = {"reason": "cabinet 3 commissioned"}
        async with client.post("/api/actions/reload-site-file", json=body) as r:
            assert r.status == 401  # an action needs the operator token
        async with client.post("/api/actions/reload-site-file", json=body, headers=auth) as r:
            assert r.status == 409  # no site file wired: said, not pretended
        ctl.controls.reload = lambda: ctl.reload_config(site_file)  # as `ems run FILE` wires it

        _write(site_file, three, ["bess-1", "bess-2", "bess-3"])
        async with client.post("/api/actions/reload-site-file", json=body, headers=auth) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
        assert answer["event"]["data"]["action"] == "reload_site_file"
        assert answer["event"]["data"]["by"] == "operator"
        await wait_for(lambda: site.plant.units["bess-3"].power_w > 50_000)
        # the new unit is the operator's like the others: maintenance on it is accepted
        async with client.post("/api/actions/maintenance", headers=auth,
                               json={"unit": "bess-3", "in_maintenance": True, "reason": "test"}) as r:
            assert r.status == 200, await r.text()

        data = yaml.safe_load(site_file.read_text())
        # an endpoint changed: needs a restart (a free port: +1000 could land on another device's)
        data["bess_units"][0]["pcs"]["port"] = free_port()
        site_file.write_text(yaml.safe_dump(data))
        async with client.post("/api/actions/reload-site-file", json=body, headers=auth) as r:
            assert r.status == 409
            assert "bess-1 changed" in (await r.json())["error"]
        assert ctl.events.count("config_rejected") == 1
        assert ctl.events.count("controller_started") == 1
