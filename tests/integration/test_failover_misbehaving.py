"""Failover against a misbehaving grid and devices on the simulated site (real sockets on loopback).

Times as in test_failover.py (reconnect after 1 s of stable grid, genset start 0.5 s).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from pymodbus.constants import ExcCodes
from structlog.testing import capture_logs

from ems.clock import ScaledClock
from ems.failover.watcher import MAX_GRID_EVENTS_PER_MIN
from ems.model.readings import GensetState, PcsMode
from ems.model.reasons import Reason
from tests.conftest import running_controller, running_site, wait_for
from tests.integration.test_failover import _armed, _cfg, _no_damage

pytestmark = pytest.mark.integration


async def _flap(plant, seconds: float, up_s: float, down_s: float) -> None:
    """The grid back for `up_s`, gone for `down_s`, again and again; bounded, ends with it back."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        plant.restore_grid()
        await asyncio.sleep(up_s)
        plant.lose_grid()
        await asyncio.sleep(down_s)
    plant.restore_grid()


async def test_losses_between_two_periods_restart_the_reconnect_wait(broker, make_site) -> None:
    # gone for ~6 ms in every 100 ms: a period (100 ms) samples the grid back nearly every time,
    # only the watcher (2 ms) sees each loss. Before: reconnected twice onto this grid in 3 s
    cfg = _cfg(make_site, broker.url, reconnect_stable_s=1.0)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await _armed(ctl)
        plant = site.plant
        plant.lose_grid()
        await asyncio.wait_for(ctl.failover.fired.wait(), 2)
        await asyncio.sleep(0.2)
        await _flap(plant, 3.0, 0.094, 0.006)
        plant.lose_grid()
        await asyncio.sleep(0.1)
        assert [o.reconnect_ns for o in plant.grid.outages] == [None]
        assert ctl.failover.islanded and len(ctl.failover.firings) == 1
        _no_damage(site)


async def test_a_flapping_grid_status_is_not_an_event_storm(broker, make_site) -> None:
    # the grid (PCS status and meter) flapping every ~5 ms while islanded. Before: ~140 durable
    # events and ~300 log lines in 2 s, one per flap
    cfg = _cfg(make_site, broker.url, reconnect_stable_s=5.0)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await _armed(ctl)
        plant = site.plant
        plant.lose_grid()
        await asyncio.wait_for(ctl.failover.fired.wait(), 2)
        await _flap(plant, 2.0, 0.005, 0.005)
        await wait_for(lambda: ctl.failover.grid_ok)
        await asyncio.sleep(0.2)
        recorded = ctl.events.count("grid_return") + ctl.events.count("grid_loss_while_islanded")
        assert recorded == MAX_GRID_EVENTS_PER_MIN
        status = ctl.failover.status()
        assert status["grid_events_not_recorded"] > 20  # counted, not lost
        assert ctl.failover.islanded and len(ctl.failover.firings) == 1
        _no_damage(site)


async def test_no_reconnection_while_the_meter_cannot_be_read(broker, make_site) -> None:
    # the grid comes back at 0.5 pu (the PCS sees a grid, the meter would show the dip) while
    # the meter answers every request with an exception. Before: the PCS alone counted as the
    # grid back in band and the site reconnected onto it after reconnect_stable_s
    cfg = _cfg(make_site, broker.url, reconnect_stable_s=1.0)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await _armed(ctl)
        plant = site.plant
        plant.lose_grid()
        await asyncio.wait_for(ctl.failover.fired.wait(), 2)
        meter = site.device("meter")
        meter.fail_with = ExcCodes.DEVICE_FAILURE
        plant.restore_grid()
        plant.grid.disturb(plant.now_s, 0.5, 1.0, 3600.0)
        await asyncio.sleep(2.5)
        assert not ctl.failover.grid_ok and ctl.failover.islanded
        assert [o.reconnect_ns for o in plant.grid.outages] == [None]
        meter.fail_with = None  # readable again: it shows the dip, still no reconnection
        await asyncio.sleep(0.5)
        assert not ctl.failover.grid_ok
        plant.grid.dip = None  # the grid in band: back, and reconnected after the wait
        await wait_for(lambda: plant.grid.outages[-1].reconnect_ns is not None, timeout_s=5)
        assert not ctl.failover.islanded
        _no_damage(site)


async def test_a_genset_running_without_output_does_not_release_the_caps(broker, make_site) -> None:
    # low SoC: the island needs the genset. It starts and reports running at its 1.2 MW rating
    # but delivers nothing (its breaker never closed: 1 kW here). Before: caps relaxed by the
    # rating, the 1.44 MW load fell on the 1 MW BESS and its PCS tripped
    cfg = _cfg(make_site, broker.url, soc=0.08, reserve_w=50_000.0)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await _armed(ctl)
        genset = site.plant.genset
        genset.cfg = genset.cfg.model_copy(update={"rated_power_w": 1_000.0})
        device = site.device("genset")
        read = device.read_values
        device.read_values = lambda: {**read(), "rated_power": 1_200.0}  # kW, as the profile says
        site.plant.lose_grid()
        await asyncio.wait_for(ctl.failover.fired.wait(), 2)
        await wait_for(lambda: genset.state is GensetState.RUNNING, timeout_s=5)
        await asyncio.sleep(3.0)  # past the PCS's 2 s overload allowance
        assert site.plant.battery_power_w < 1_000_000
        _no_damage(site)
        assert ctl.last.step.reason is Reason.ISLANDED


async def test_a_pcs_that_refused_grid_forming_is_told_again(broker, make_site) -> None:
    # no hardware transfer: the island forms on the grid-forming command. Both PCS refuse every
    # request at the loss (the fast path's command included) and answer again 50 ms later; the
    # racks' 2 s hold-up leaves time. Before: nothing sent the command again while islanded,
    # the island never formed and collapsed after 3 hold-ups (all racks lost)
    cfg = _cfg(make_site, broker.url, seamless=False, holdup_s=2.0)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await _armed(ctl)
        pcs = [site.device(f"{u}.pcs") for u in site.plant.units]
        for d in pcs:
            d.fail_with = ExcCodes.DEVICE_FAILURE
        site.plant.lose_grid()
        await asyncio.wait_for(ctl.failover.fired.wait(), 2)
        assert ctl.failover.firings[-1].timeline() and all(
            e["error"] for e in ctl.failover.firings[-1].timeline() if e["action"] == "grid_forming")
        await asyncio.sleep(0.05)
        for d in pcs:
            d.fail_with = None
        await wait_for(lambda: site.plant.grid.carried, timeout_s=1.5)
        await asyncio.sleep(0.5)
        assert all(u.mode is PcsMode.GRID_FORMING for u in site.plant.units.values())
        _no_damage(site)


async def test_back_to_back_outages_start_a_genset_reset_in_between(broker, make_site) -> None:
    # a delayed genset start. Outage 1: the genset trips while running; the grid returns, the site
    # reconnects, the genset is reset at its panel. Outage 2 must start it again
    cfg = _cfg(make_site, broker.url, reconnect_stable_s=0.5, genset={"start_after_s": 0.3})
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await _armed(ctl)
        plant, genset = site.plant, site.plant.genset
        plant.lose_grid()
        await wait_for(lambda: genset.state is GensetState.RUNNING, timeout_s=5)
        genset.trip(plant.now_s)
        plant.restore_grid()
        await wait_for(lambda: plant.grid.outages[-1].reconnect_ns is not None, timeout_s=5)
        await asyncio.sleep(0.3)
        genset.command_stop(plant.now_s)  # reset at its panel: stopped, ready to start
        starts = genset.starts
        plant.lose_grid()
        await wait_for(lambda: genset.starts > starts, timeout_s=3)
        await wait_for(lambda: genset.state is GensetState.RUNNING, timeout_s=5)
        _no_damage(site)


async def test_a_pcs_silent_past_the_deadline_counts_as_an_error(broker, make_site) -> None:
    # both PCS answer 0.4 s late at the loss (the fast path gives up after 10 x its 20 ms budget;
    # the hardware transfer forms the island). Before: the failover event said errors=0 and,
    # the rows and genset having answered in time, not over budget
    cfg = _cfg(make_site, broker.url)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await _armed(ctl)
        pcs = [site.device(f"{u}.pcs") for u in site.plant.units]
        for d in pcs:
            d.delay_s = 0.4
        site.plant.lose_grid()
        await asyncio.wait_for(ctl.failover.fired.wait(), 2)
        for d in pcs:
            d.delay_s = 0.0
        await wait_for(lambda: ctl.events.count("failover") == 1)
        event = ctl.events.query(kind="failover")[0]
        modes = [e for e in event.data["timeline"] if e["action"] == "grid_forming"]
        assert len(modes) == 2 and all(e["ack_ms"] is None and e["error"] for e in modes)
        assert event.data["errors"] == 2 and event.data["over_budget"]
        await asyncio.sleep(0.3)
        _no_damage(site)


async def test_caps_the_fast_path_sent_are_released_when_the_island_needs_none(broker, make_site) -> None:
    # back-to-back outages: the genset from the first still runs (its minimum run) when the grid
    # goes again. The fast path caps rows as armed; the island, with the genset carrying, needs
    # no cap from its first period
    cfg = _cfg(make_site, broker.url, reconnect_stable_s=0.5, genset={"min_run_s": 60.0})
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await _armed(ctl)
        plant, racks = site.plant, site.plant.racks
        plant.lose_grid()
        await wait_for(lambda: plant.genset.state is GensetState.RUNNING, timeout_s=5)
        plant.restore_grid()
        await wait_for(lambda: plant.grid.outages[-1].reconnect_ns is not None, timeout_s=5)
        await wait_for(lambda: not any(c == c for c in racks.cap_w), timeout_s=5)  # released
        await wait_for(lambda: ctl.failover.plan is not None and ctl.failover.plan.rack_caps_w, timeout_s=5)
        plant.lose_grid()
        await wait_for(lambda: len(ctl.failover.firings) == 2, timeout_s=2)
        assert ctl.failover.firings[-1].plan.rack_caps_w  # the fast path capped rows
        # Before: the loop's cap writer had never sent (or had released) those rows, so its
        # release was not worth a message: 24 racks kept the fast path's caps for good
        await asyncio.sleep(0.5)  # the racks' cap response is 0.1 s
        await wait_for(lambda: not any(c == c for c in racks.cap_w), timeout_s=3)  # NaN: no cap
        plant.restore_grid()
        await wait_for(lambda: plant.grid.outages[-1].reconnect_ns is not None, timeout_s=5)
        await asyncio.sleep(0.5)
        assert not any(c == c for c in racks.cap_w)
        _no_damage(site)


async def test_a_genset_start_that_failed_at_the_loss_is_sent_again(broker, make_site) -> None:
    # low SoC: the island needs the genset. Its device refuses every request at the loss (the fast
    # path's start included) and answers again 50 ms later. Before: the start counted as sent,
    # nothing sent it again, the genset stayed stopped and the island ran on the battery alone
    cfg = _cfg(make_site, broker.url, soc=0.08, reserve_w=50_000.0)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await _armed(ctl)
        device = site.device("genset")
        device.fail_with = ExcCodes.DEVICE_FAILURE
        site.plant.lose_grid()
        await asyncio.wait_for(ctl.failover.fired.wait(), 2)
        assert [e["error"] for e in ctl.failover.firings[-1].timeline() if e["device"] == "genset"] != [None]
        await asyncio.sleep(0.05)
        device.fail_with = None
        await wait_for(lambda: site.plant.genset.state is GensetState.RUNNING, timeout_s=6)
        await wait_for(lambda: site.plant.genset.power_w > 300_000, timeout_s=3)
        _no_damage(site)


async def test_a_pcs_refusing_the_reconnection_is_counted_and_logged(broker, make_site) -> None:
    # bess-2's PCS refuses the grid-following command at the reconnection (only that). Before:
    # the refusal was swallowed (not counted, the device not marked) and the log said every
    # unit reconnected
    cfg = _cfg(make_site, broker.url, reconnect_stable_s=0.5)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await _armed(ctl)
        plant = site.plant
        plant.lose_grid()
        await asyncio.wait_for(ctl.failover.fired.wait(), 2)
        await asyncio.sleep(0.2)
        device = site.device("bess-2.pcs")
        write = device.write_value

        def refuse_following(name: str, value: float) -> None:
            if name == "mode_command" and value == device.profile.register(name).enum_code("grid_following"):
                raise RuntimeError("refused")
            write(name, value)

        device.write_value = refuse_following
        failures = ctl.actuators.write_failures
        with capture_logs() as logs:
            plant.restore_grid()
            await wait_for(lambda: not ctl.failover.islanded, timeout_s=5)
            await asyncio.sleep(0.05)
        said = [(e["log_level"], e["units"], e["refused"]) for e in logs if e["event"] == "reconnected to the grid"]
        assert said == [("warning", 1, ["bess-2"])]
        assert ctl.actuators.write_failures > failures and ctl.reader.health.errors.get("bess-2.pcs", 0) >= 1
        await wait_for(lambda: ctl.events.count("device_lost") >= 1)
        assert plant.grid.outages[-1].reconnect_ns is not None  # bess-1 took it: the breaker closed
