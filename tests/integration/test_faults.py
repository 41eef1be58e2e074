"""Faults survived on the simulated site: devices failing, a broker restart, a killed and
restarted controller, a config reload. Real sockets on loopback throughout."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import pytest
import yaml
from pymodbus.constants import ExcCodes

from ems.broker import free_port, mosquitto, mosquitto_path
from ems.clock import ScaledClock
from ems.model.readings import PcsMode
from ems.model.reasons import Reason
from tests.conftest import running_controller, running_site, wait_for

pytestmark = pytest.mark.integration

RACKS = {"rows": 4, "racks_per_row": 8, "nameplate_w": 40_000.0}
CAP_W = 1_000_000.0  # 32 racks x 40 kW x 0.9 x 1.25 = 1.44 MW: 440 kW to shave


def _cfg(make_site, url, **kw):
    over = {
        "racks": RACKS, "period_s": 0.1,
        "control": {"period_s": 0.1, "setpoint_deadband_w": 500.0, "bess_stale_after_s": 0.5,
                    "meter_stale_after_s": 0.5},
        "policies": {"battery": {"soc_min": 0.1, "soc_max": 0.95},
                     "peak_shaving": {"grid_import_cap_w": CAP_W, "recharge_below_w": 600_000.0}},
        "simulation": {
            "seed": 3, "speed": 1.0, "pue": 1.25,
            "bess": [{"capacity_wh": 1_000_000, "rated_power_w": 500_000, "initial_soc": 0.7,
                      "ramp_w_per_s": 2_000_000, "heartbeat_timeout_s": 1.5}],
            "racks": {"model": "steady", "steady_fraction": 0.9, "telemetry_period_s": 0.2, "cap_response_s": 0.05},
        },
    }
    over.update(kw)
    return make_site(url, **over)


def _need_w() -> float:
    return 32 * 40_000 * 0.9 * 1.25 - CAP_W


@pytest.mark.parametrize("fault", ["exception", "timeout", "connection_drop"])
async def test_modbus_fault_redispatches_and_logs_once(broker, make_site, fault) -> None:
    cfg = _cfg(make_site, broker.url)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        plant = site.plant
        await wait_for(lambda: plant.units["bess-2"].power_w > 100_000)
        bms2 = site.device("bess-2.bms")
        if fault == "exception":
            bms2.fail_with = ExcCodes.DEVICE_FAILURE
        elif fault == "timeout":
            bms2.delay_s = 2.0  # longer than the driver's timeout
        else:
            await bms2.stop()
        # unit 2 set aside, its share moved to unit 1, the cap still held
        await wait_for(lambda: plant.units["bess-2"].setpoint_w == 0.0 and plant.units["bess-1"].power_w > 400_000,
                       timeout_s=5)
        await asyncio.sleep(1.0)
        assert plant.meter.grid_power_w <= CAP_W * 1.01
        snap_unit = next(u for u in ctl.last.snapshot.units if u.unit_id == "bess-2")
        assert snap_unit.unavailable is Reason.STALE_BMS
        # recovery
        bms2.fail_with, bms2.delay_s = None, 0.0
        if fault == "connection_drop":
            await bms2.start()
        await wait_for(lambda: plant.units["bess-2"].power_w > 100_000, timeout_s=10)
        await asyncio.sleep(0.5)
        lost = [e for e in ctl.events.query(kind="device_lost") if e.data["device"] == "bess-2.bms"]
        back = [e for e in ctl.events.query(kind="device_recovered") if e.data["device"] == "bess-2.bms"]
        assert (len(lost), len(back)) == (1, 1)  # logged once on loss, once on recovery
        assert plant.summary()["heartbeat_timeouts"] == 0


async def test_unit_faulting_mid_run_is_isolated_without_oscillation(broker, make_site) -> None:
    cfg = _cfg(make_site, broker.url)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock):
        plant = site.plant
        await wait_for(lambda: plant.units["bess-2"].power_w > 100_000)
        plant.units["bess-2"].inject_fault()
        await wait_for(lambda: plant.units["bess-1"].power_w > _need_w() * 0.95, timeout_s=3)
        await asyncio.sleep(0.5)
        setpoints = []
        for _ in range(40):  # 2 s
            setpoints.append(plant.units["bess-1"].setpoint_w)
            await asyncio.sleep(0.05)
        assert max(setpoints) - min(setpoints) < 0.02 * max(setpoints)  # steady, no hunting
        assert plant.units["bess-2"].power_w == 0.0


@pytest.mark.skipif(mosquitto_path() is None, reason="needs the mosquitto binary to restart a broker")
async def test_broker_restart_reconnects_and_reasserts_caps(make_site) -> None:
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    cfg = _cfg(make_site, url, genset=None,
               failover={"detect_poll_s": 0.005, "shed_order": ["row04"], "reconnect_stable_s": 600.0})
    clock = ScaledClock(1.0)
    broker = mosquitto(port)
    await broker.__aenter__()
    try:
        async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
            await wait_for(lambda: ctl.failover.plan is not None and ctl.last is not None
                           and ctl.last.snapshot.racks.stale_count == 0)
            await asyncio.sleep(0.3)
            site.plant.lose_grid()  # the island needs caps: 1.44 MW on 2 x 500 kW
            await wait_for(lambda: any(c == c for c in site.plant.racks.cap_w), timeout_s=3)
            caps_before = site.plant.racks.cap_w.copy()
            received_before = sum(a.caps_received for a in site.row_agents)
            connects_before = ctl.mqtt.connects
            await broker.__aexit__(None, None, None)  # the broker goes away ...
            await asyncio.sleep(1.0)
            broker = mosquitto(port)
            await broker.__aenter__()  # ... and comes back on the same port
            await wait_for(lambda: ctl.mqtt.connects > connects_before, timeout_s=15)
            await wait_for(lambda: all(a.connected.is_set() for a in site.row_agents), timeout_s=15)
            # caps re-asserted once the loop runs again: the row agents hear them again
            await wait_for(lambda: sum(a.caps_received for a in site.row_agents) > received_before, timeout_s=15)
            await wait_for(lambda: ctl.last.snapshot.racks.stale_count == 0, timeout_s=15)  # telemetry again

            def racks_hold_what_the_controller_wants() -> bool:
                wanted = ctl.failover.state.caps_w
                ids = site.plant.racks.rack_ids
                return all((abs(c - wanted[r]) < 1.0) if r in wanted else c != c
                           for r, c in zip(ids, site.plant.racks.cap_w, strict=True))

            # whatever was planned while the broker was away reaches the racks: nothing that matters is lost
            await wait_for(racks_hold_what_the_controller_wants, timeout_s=15)
            assert any(c == c for c in caps_before) and ctl.failover.state.caps_w
            assert site.plant.summary()["lost_racks"] == 0
    finally:
        with contextlib.suppress(Exception):
            await broker.__aexit__(None, None, None)


async def _spawn_controller(path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ems.cli", "run", "--config", str(path), "--log-format", "json",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def test_killed_controller_restarts_from_persisted_state_without_a_bump(broker, make_site, tmp_path) -> None:
    """SIGKILL the daemon mid-discharge, start it again: it resumes from its persisted state
    and the PCS, still within its heartbeat timeout, sees no dip in its setpoint."""
    cfg = _cfg(make_site, broker.url, state={"dir": str(tmp_path / "state"), "persist_every_s": 0.2})
    sim = cfg.simulation or {}
    cfg = cfg.model_copy(update={"simulation": {**sim, "bess": [{**sim["bess"][0], "heartbeat_timeout_s": 10.0}]}})
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    async with running_site(cfg, ScaledClock(1.0)) as site:
        plant = site.plant
        first = await _spawn_controller(path)
        try:
            await wait_for(lambda: plant.battery_power_w > _need_w() * 0.95, timeout_s=20)
            await asyncio.sleep(1.0)
            steady_w = plant.battery_power_w
            first.kill()  # SIGKILL: no shutdown path runs
            await first.wait()
            second = await _spawn_controller(path)
            trace = []
            for _ in range(80):  # 4 s across the restart
                trace.append(plant.battery_power_w)
                await asyncio.sleep(0.05)
        finally:
            for proc in (first, locals().get("second")):
                if proc is not None and proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(proc.wait(), 15)
        assert min(trace) > steady_w * 0.95  # no dip to 0 W and back
        assert plant.summary()["heartbeat_timeouts"] == 0
    from ems.events import EventLog
    from ems.state_store import StateStore

    kinds = [e.kind for e in EventLog(tmp_path / "state" / "events.db").query(limit=100)]
    assert kinds.count("controller_started") == 2 and kinds.count("controller_stopped") == 1
    saved = StateStore(tmp_path / "state" / "state.db").load()
    assert saved["setpoints"]["site_w"] == 0.0  # the second one stopped cleanly, at 0 W


async def test_killed_controller_lets_heartbeat_time_out_to_standby(broker, make_site, tmp_path) -> None:
    cfg = _cfg(make_site, broker.url)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    async with running_site(cfg, ScaledClock(1.0)) as site:
        units = site.plant.units.values()
        proc = await _spawn_controller(path)
        try:
            await wait_for(lambda: site.plant.battery_power_w > _need_w() * 0.95, timeout_s=20)
        finally:
            proc.kill()
            await proc.wait()
        assert all(u.power_w > 0 for u in units)
        await wait_for(lambda: all(u.mode is PcsMode.STANDBY and u.power_w == 0 for u in units), timeout_s=5)
        assert all(u.heartbeat_timeouts == 1 for u in units)


async def test_config_reload_invalid_keeps_running_valid_applies(broker, make_site, tmp_path) -> None:
    cfg = _cfg(make_site, broker.url)
    clock = ScaledClock(1.0)
    path = tmp_path / "site.yaml"
    data = cfg.model_dump(mode="json")
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        await wait_for(lambda: site.plant.battery_power_w > _need_w() * 0.95, timeout_s=5)
        bad = yaml.safe_load(yaml.safe_dump(data))
        bad["policies"]["peak_shaving"]["grid_import_cap_w"] = -1
        path.write_text(yaml.safe_dump(bad))
        ok, why = ctl.reload_config(path)
        assert not ok and "grid_import_cap_w" in why
        moved = yaml.safe_load(yaml.safe_dump(data))
        moved["meter"]["port"] = free_port()
        path.write_text(yaml.safe_dump(moved))
        ok, why = ctl.reload_config(path)
        assert not ok and "meter" in why
        await asyncio.sleep(0.5)
        assert site.plant.battery_power_w == pytest.approx(_need_w(), rel=0.05)  # still the running config
        good = yaml.safe_load(yaml.safe_dump(data))
        good["policies"]["peak_shaving"]["grid_import_cap_w"] = 1_200_000.0
        path.write_text(yaml.safe_dump(good))
        ok, _ = ctl.reload_config(path)
        assert ok
        await wait_for(lambda: abs(site.plant.battery_power_w - (1_440_000 - 1_200_000)) < 20_000, timeout_s=3)
        kinds = [e.kind for e in ctl.events.query(limit=20)]
        assert kinds.count("config_rejected") == 2 and "config_applied" in kinds
