"""An off-grid site whose genset misbehaves without saying so (never `failed`), over real
Modbus and MQTT on loopback. Settings as in test_offgrid.py (120x site clock, 2 x 100 kWh)."""

from __future__ import annotations

from typing import Any

import pytest

from ems.clock import ScaledClock
from ems.model.readings import GensetState
from ems.model.reasons import Reason
from tests.conftest import running_controller, running_site, wait_for
from tests.integration.test_offgrid import SPEED, _cfg, _no_damage, _soc

pytestmark = pytest.mark.integration


async def test_a_genset_that_ignores_its_start_is_replaced_by_the_next(broker: Any, make_site: Any) -> None:
    # gen-1 answers its start command and does nothing: it reports stopped. Before: the dispatch
    # believed it running after its start delay and warm-up, sent it a start every period, never
    # staged gen-2 in; the battery ran empty, both PCS tripped, all 32 racks were lost
    cfg = _cfg(make_site, broker.url, soc=0.32, start_hour=22.0, second=True)
    clock = ScaledClock(SPEED)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        plant = site.plant
        site.device("genset").write_value = lambda name, value: None
        gen2 = plant.gensets["gen-2"]
        await wait_for(lambda: ctl.events.count("genset_failed") == 1, timeout_s=30)
        failed = ctl.events.query(kind="genset_failed")[0]
        assert failed.data["genset"] == "gen-1" and failed.reason == Reason.GENSET_START_FAILED.code
        await wait_for(lambda: gen2.state is GensetState.RUNNING and gen2.power_w > 600_000, timeout_s=10)
        low = _soc(site)
        await wait_for(lambda: _soc(site) > low + 0.02, timeout_s=20)  # gen-2 recharges the battery
        sent = ctl.events.count("genset_command")
        periods = ctl.last.period
        await wait_for(lambda: ctl.last.period >= periods + 20, timeout_s=10)
        assert ctl.events.count("genset_command") == sent  # gen-1 no longer told to start each period
        assert ctl.events.count("genset_failed") == 1 and plant.genset.state is GensetState.STOPPED
        _no_damage(site)


async def test_a_genset_that_stops_on_its_own_is_replaced_by_the_next(broker: Any, make_site: Any) -> None:
    # gen-1 runs and carries the island, then stops by itself and says stopped, not failed
    cfg = _cfg(make_site, broker.url, soc=0.29, start_hour=2.0, second=True)
    clock = ScaledClock(SPEED)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        plant = site.plant
        gen1, gen2 = plant.genset, plant.gensets["gen-2"]
        await wait_for(lambda: gen1.state is GensetState.RUNNING and gen1.power_w > 600_000, timeout_s=10)
        site.device("genset").write_value = lambda name, value: None  # and ignores commands from now on
        gen1.state, gen1.power_w = GensetState.STOPPED, 0.0
        await wait_for(lambda: ctl.events.count("genset_failed") == 1, timeout_s=5)
        tripped = ctl.events.query(kind="genset_failed")[0]
        assert tripped.data["genset"] == "gen-1" and tripped.reason == Reason.GENSET_TRIPPED.code
        await wait_for(lambda: gen2.state is GensetState.RUNNING and gen2.power_w > 600_000, timeout_s=10)
        _no_damage(site)
