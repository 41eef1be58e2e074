"""BESS units added to and removed from the site file while the controller runs: no restart,
no setpoint outside the envelope, events recorded, the month's demand kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from ems.clock import ScaledClock
from ems.config import SiteConfig
from ems.model.readings import PcsMode
from ems.published import PeriodResult
from tests.conftest import running_controller, running_site, shaving_site, wait_for

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
    data["bess_units"][0]["pcs"]["port"] += 1000
    site_file.write_text(yaml.safe_dump(data))
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock), running_controller(cfg, clock) as ctl:
        ok, why = ctl.reload_config(site_file)
        assert not ok and "bess-1 changed" in why
