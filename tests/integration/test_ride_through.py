"""Grid disturbances on the simulated site, over real sockets on loopback: a dip inside the
ride-through curve keeps the site connected and its battery steady; one beyond it islands
(the failover path), and the site reconnects once the grid is back in band."""

from __future__ import annotations

import asyncio

import pytest

from ems.clock import ScaledClock
from ems.model.reasons import Reason
from tests.conftest import running_controller, running_site, wait_for
from tests.integration.test_failover import _armed, _cfg, _no_damage

pytestmark = pytest.mark.integration


async def test_a_dip_inside_the_curve_is_ridden_through(broker, make_site) -> None:
    cfg = _cfg(make_site, broker.url)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await _armed(ctl)
        plant = site.plant
        before_w = plant.battery_power_w
        # from the site clock's now: plant.now_s is the last step's time, behind it by however
        # late the step loop runs on a loaded machine, and the dip would be that much shorter
        plant.grid.disturb(site.clock.monotonic(), 0.70, 1.0, 1.5)  # 0.7 pu: 3.4 s allowed
        await wait_for(lambda: ctl.failover.riding_through == "voltage", timeout_s=2)
        await wait_for(lambda: ctl.last.step.reason is Reason.RIDE_THROUGH, timeout_s=2)
        assert abs(plant.battery_power_w - before_w) < 0.1 * abs(before_w) + 20_000  # held, not chasing
        await wait_for(lambda: ctl.failover.riding_through is None, timeout_s=3)
        assert not ctl.failover.fired.is_set() and not ctl.failover.islanded
        assert plant.grid.dips[-1].site_islanded is False and not plant.grid.islanded
        start, end = ctl.events.query(kind="ride_through"), ctl.events.query(kind="ride_through_end")
        assert start[0].reason == "RIDE_THROUGH" and start[0].data["cause"] == "voltage"
        assert end[0].data["outcome"] == "back_in_band" and end[0].data["duration_s"] == pytest.approx(1.5, abs=0.2)
        assert end[0].data["worst_voltage_pu"] == pytest.approx(0.70, abs=0.02)
        await wait_for(lambda: ctl.last.step.reason is not Reason.RIDE_THROUGH, timeout_s=2)
        _no_damage(site)


@pytest.mark.parametrize(("voltage_pu", "rode_s"), [(0.20, None), (0.50, 0.32)])
async def test_a_dip_beyond_the_curve_islands_and_the_site_reconnects(broker, make_site, voltage_pu, rode_s) -> None:
    cfg = _cfg(make_site, broker.url)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await _armed(ctl)
        plant = site.plant
        plant.grid.disturb(site.clock.monotonic(), voltage_pu, 1.0, 1.0)
        await asyncio.wait_for(ctl.failover.fired.wait(), 3)
        await wait_for(lambda: ctl.events.query(kind="failover"), timeout_s=1)
        assert ctl.events.query(kind="failover")[0].data["cause"] == "voltage"
        assert plant.grid.dips[-1].site_islanded and plant.grid.islanded
        ended = ctl.events.query(kind="ride_through_end")
        if rode_s is None:  # 0.2 pu is in no region of category II: at once
            assert ended == []
        else:  # 0.5 pu: ridden for 0.32 s, then beyond the curve
            assert ended[0].data["outcome"] == "beyond_curve"
            # never before the curve's 0.32 s (the region below allows 0.16 s); after it, by the
            # debounce's samples (2 ms apart idle), which a loaded 2-core machine delays by tens of
            # ms (0.38 s seen): 0.15 s of room, still far from the dip's end (1 s) or 0.65 pu's 3 s
            assert rode_s <= ended[0].data["duration_s"] < rode_s + 0.15
        # the grid is back in band after 1 s; 1 s of stable grid later the site reconnects
        await wait_for(lambda: not plant.grid.islanded, timeout_s=6)
        _no_damage(site)
