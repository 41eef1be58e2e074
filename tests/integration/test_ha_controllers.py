"""Two controllers in one process on one simulated site under one lease (real Modbus, MQTT and
NATS): the standby reads and decides and writes nothing, not even on a grid loss; a clean
stop of the active hands over at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ems.broker import Broker
from ems.clock import ScaledClock
from ems.config import SiteConfig
from ems.control_loop import Controller
from ems.ha.attach import attach
from ems.ha.role import HaRole
from ems.ha.settings import HaConfig
from ems.operator.metrics import ControllerMetrics
from ems.published import PeriodResult
from tests.conftest import failover_site, running_site, shaving_site, wait_for
from tests.nats_peer import shared_nats_or_skip, unique

pytestmark = pytest.mark.integration


class Run:
    def __init__(self, ctl: Controller, role: HaRole) -> None:
        self.ctl, self.role = ctl, role
        self.results: list[PeriodResult] = []
        ctl.observers.append(self.results.append)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(ctl.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 10)


@contextlib.asynccontextmanager
async def pair(cfg: SiteConfig, clock: ScaledClock) -> AsyncIterator[Callable[[str], Run]]:
    runs: list[Run] = []
    ha = HaConfig(nats_url=shared_nats_or_skip(), bucket=unique("ctl"))

    def start(holder: str) -> Run:
        ctl = Controller(cfg, clock)
        run = Run(ctl, attach(ctl, ha, holder))
        runs.append(run)
        return run

    try:
        yield start
    finally:
        # the standby first: a standby promoted at the active's stop while the site is islanded has
        # been seen to take over 10 s to stop (not yet understood: docs/reliability.md, known issues)
        for r in reversed(runs):
            await r.close()


async def test_the_standby_writes_nothing_and_takes_over_at_a_clean_stop(make_site: Any, broker: Broker) -> None:
    cfg = shaving_site(make_site, broker.url)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, pair(cfg, clock) as start:
        a = start("a")
        await wait_for(lambda: a.role.role == "active" and any(r.writes for r in a.results))
        b = start("b")
        await wait_for(lambda: len(b.results) >= 20)
        assert b.role.role == "standby"
        assert all(r.writes == 0 for r in b.results)  # it decides every period and writes nothing
        # one broker, one site file: each its own MQTT client id, so neither knocks the other off
        assert a.ctl.events.count("broker_lost") == 0 and b.ctl.events.count("broker_lost") == 0
        assert b.results[-1].status["ha"]["role"] == "standby"
        # the metrics say which one writes: summed by site over the pair, exactly one
        writing = [f'ems_ha_writing{{site="{cfg.site}"}} {v}' in ControllerMetrics(c.ctl.published).render().decode()
                   for c, v in ((a, "1.0"), (b, "0.0"))]
        assert writing == [True, True]
        assert b.results[-1].step.unit_setpoints_w  # ... and has its own decision ready
        await a.close()  # a clean stop: units to 0 W, the lease released
        await wait_for(lambda: b.role.role == "active" and b.results[-1].writes > 0, 5.0)
        assert site.plant.summary()["heartbeat_timeouts"] == 0


async def test_a_grid_loss_is_met_by_the_active_alone(make_site: Any, broker: Broker) -> None:
    cfg = failover_site(make_site, broker.url)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, pair(cfg, clock) as start:
        a = start("a")
        await wait_for(lambda: a.role.role == "active" and any(r.writes for r in a.results))
        b = start("b")
        await wait_for(lambda: all(c.failover is not None and c.failover.plan is not None for c in (a.ctl, b.ctl)))
        await asyncio.sleep(0.5)
        site.control("grid_loss")
        await wait_for(lambda: len(a.ctl.failover.firings) == 1 if a.ctl.failover else False, 5.0)
        await wait_for(lambda: b.ctl.events.count("failover_standby") == 1, 5.0)
        assert b.ctl.failover is not None and b.ctl.failover.firings == []
        # the firing's event is recorded on the control loop's thread, after the firing itself
        await wait_for(lambda: a.ctl.events.count("failover") == 1, 5.0)
        fired = a.ctl.events.query(kind="failover")
        assert fired and fired[0].data["ha_epoch"] == a.role.epoch  # every write it records carries its epoch
        assert all(r.writes == 0 for r in b.results)
        assert site.plant.summary()["lost_racks"] == 0


async def test_the_new_active_holds_the_old_ones_operator_decisions(make_site: Any, broker: Broker) -> None:
    cfg = shaving_site(make_site, broker.url)
    clock = ScaledClock(1.0)
    cap = "policies.peak_shaving.grid_import_cap_w"
    async with running_site(cfg, clock) as site, pair(cfg, clock) as start:
        a = start("a")
        await wait_for(lambda: a.role.role == "active" and any(r.writes for r in a.results))
        b = start("b")
        await wait_for(lambda: len(b.results) >= 5)
        # an operator (through the action queue, as the API does) takes bess-2 out and lowers the cap
        done = a.ctl.actions.submit(lambda c: c.set_maintenance("bess-2", True, "op", "inverter inspection"))
        a.ctl.actions.submit(lambda c: c.set_param(cap, 900_000.0, "op", "trial"))
        await asyncio.wrap_future(done)
        await wait_for(lambda: abs(site.plant.units["bess-2"].power_w) < 1.0 and site.plant.units["bess-1"].power_w > 0)
        await asyncio.sleep(0.5)  # a few renewals: the handover carries them
        assert b.ctl.controls.maintenance == {}  # the standby's own state had none

        await a.close()
        await wait_for(lambda: b.role.role == "active" and b.results[-1].writes > 0, 5.0)
        assert set(b.ctl.controls.maintenance) == {"bess-2"} and b.ctl.controls.params[cap].value == 900_000.0
        assert b.ctl.events.count("operator_state_taken_over") == 1
        await asyncio.sleep(1.0)
        assert abs(site.plant.units["bess-2"].power_w) < 1.0  # never re-energised by the new active
        assert site.plant.units["bess-1"].power_w > 0
        assert b.results[-1].step.cap_w == 900_000.0
