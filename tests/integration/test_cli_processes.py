"""The commands as a person runs them: separate processes, real sockets, signals."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import yaml

from drivers.bess import PcsDriver
from drivers.modbus_device import ModbusDevice
from drivers.profile import load_profile
from tests.conftest import site_dict

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


async def _spawn(*args: str, own_group: bool = False) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ems.cli", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, process_group=0 if own_group else None)


async def test_run_daemon_controls_sim_and_leaves_units_at_zero_on_sigterm(broker, tmp_path) -> None:
    d = site_dict(broker.url, period_s=0.2)
    d["policies"]["peak_shaving"] = {"grid_import_cap_w": 150_000.0, "recharge_below_w": 50_000.0}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(d))
    sim = await _spawn("sim", "--config", str(path))
    run = None
    try:
        pcs_ep = d["bess_units"][0]["pcs"]
        pcs = PcsDriver(ModbusDevice("pcs", load_profile("pcs_v1"), "127.0.0.1", pcs_ep["port"]))
        for _ in range(100):  # the sim's Modbus servers come up
            try:
                await pcs.read(0.0)
                break
            except Exception:
                await asyncio.sleep(0.1)
        run = await _spawn("run", "--config", str(path), "--log-format", "json")
        # 8 racks x 40 kW x 0.5 x 1.25 = 200 kW > the 150 kW cap: the daemon discharges
        for _ in range(100):
            reading = await pcs.read(0.0)
            if reading.setpoint_w > 10_000:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the daemon never commanded a discharge")
        run.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(run.communicate(), 15)
        assert run.returncode == 0, err.decode()
        assert b"controller stopped" in err
        for ep in (u["pcs"] for u in d["bess_units"]):
            driver = PcsDriver(ModbusDevice("pcs", load_profile("pcs_v1"), "127.0.0.1", ep["port"]))
            assert (await driver.read(0.0)).setpoint_w == 0.0
            driver.device.close()
        pcs.device.close()
    finally:
        for proc in (run, sim):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.communicate(), 15)
    assert sim.returncode == 0


async def test_demo_runs_and_prints_a_summary(broker) -> None:
    demo = await _spawn("demo", "--duration", "6", "--speed", "720", "--mqtt-url", broker.url)
    out, err = await asyncio.wait_for(demo.communicate(), 60)
    text = out.decode()
    assert demo.returncode == 0, err.decode()
    assert "=== demo summary ===" in text
    assert "peak import, no battery" in text and "peak import, with battery" in text
    assert "PCS heartbeat timeouts:       0" in text


async def test_ctrl_c_stops_the_demo_s_controller_before_its_site(broker) -> None:
    """A terminal's Ctrl-C signals the whole foreground group: the simulated site went down with
    the controller, which then could not set the units to 0 W ('units unreachable')."""
    demo = await _spawn("demo", "--duration", "60", "--mqtt-url", broker.url, "--no-http", own_group=True)
    assert demo.stdout is not None
    while b"waiting for the first control period" not in await asyncio.wait_for(demo.stdout.readline(), 30):
        pass
    await asyncio.sleep(3.0)  # periods running
    os.killpg(demo.pid, signal.SIGINT)  # as a terminal does: the demo and whatever shares its group
    out, err = await asyncio.wait_for(demo.communicate(), 60)
    assert demo.returncode == 0, err.decode()
    assert "=== demo summary ===" in out.decode()
    assert "could not set unit to 0 W" not in err.decode() and "unreachable" not in err.decode(), err.decode()


async def test_off_grid_demo_runs_and_prints_the_island_s_summary(broker) -> None:
    demo = await _spawn("demo", "--scenario", "off-grid", "--duration", "6", "--mqtt-url", broker.url, "--no-http")
    out, err = await asyncio.wait_for(demo.communicate(), 60)
    text = out.decode()
    assert demo.returncode == 0, err.decode()
    assert "=== off-grid demo summary ===" in text and "PCS trips, lost racks:        0, 0" in text
    assert "unserved 0.0 kWh" in text
    # the controller's totals say what span they cover (less than the site's time by its overruns)
    assert re.search(r"controller's KPIs: +over the periods it ran \(\d+\.\d h of site time\)", text), text


async def test_run_refuses_what_it_cannot_drive_off_grid_naming_the_field(tmp_path) -> None:
    root = Path(__file__).resolve().parents[2]
    data = yaml.safe_load((root / "config" / "offgrid-sim-site.yaml").read_text())
    data["microgrid"]["gensets"].append({"id": "gen-2", "rated_power_w": 2_000_000})
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(data))
    run = await _spawn("run", "--config", str(path))
    _, err = await asyncio.wait_for(run.communicate(), 60)
    assert run.returncode == 2 and "microgrid.gensets" in err.decode() and "Traceback" not in err.decode()


async def test_sim_with_taken_port_exits_nonzero_without_traceback(broker, tmp_path) -> None:
    d = site_dict(broker.url)
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", d["meter"]["port"])
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(d))
    try:
        sim = await _spawn("sim", "--config", str(path))
        _, err = await asyncio.wait_for(sim.communicate(), 30)
    finally:
        blocker.close()
    assert sim.returncode == 1
    assert b"cannot serve the site" in err and b"Traceback" not in err


async def test_sighup_reloads_the_site_file_or_keeps_the_running_one(broker, tmp_path) -> None:
    d = site_dict(broker.url, period_s=0.2)
    d["policies"]["peak_shaving"] = {"grid_import_cap_w": 150_000.0, "recharge_below_w": 50_000.0}
    d["state"] = {"dir": str(tmp_path / "state")}
    d["logging"] = {"format": "json", "level": "warning"}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(d))
    sim = await _spawn("sim", "--config", str(path))
    run = None
    err = b""
    pcs_ep = d["bess_units"][0]["pcs"]
    pcs = PcsDriver(ModbusDevice("pcs", load_profile("pcs_v1"), "127.0.0.1", pcs_ep["port"]))

    async def site_setpoint_w() -> float:
        total = 0.0
        for ep in (u["pcs"] for u in d["bess_units"]):
            drv = PcsDriver(ModbusDevice("pcs", load_profile("pcs_v1"), "127.0.0.1", ep["port"]))
            total += (await drv.read(0.0)).setpoint_w
            drv.device.close()
        return total

    try:
        for _ in range(100):
            try:
                await pcs.read(0.0)
                break
            except Exception:
                await asyncio.sleep(0.1)
        run = await _spawn("run", "--config", str(path))
        for _ in range(100):  # 8 racks x 40 kW x 0.5 x 1.25 = 200 kW against the 150 kW cap
            if await site_setpoint_w() > 40_000:
                break
            await asyncio.sleep(0.1)
        bad = {**d, "policies": {"peak_shaving": {"grid_import_cap_w": -5.0, "recharge_below_w": 0.0}}}
        path.write_text(yaml.safe_dump(bad))
        run.send_signal(signal.SIGHUP)
        await asyncio.sleep(1.0)
        assert run.returncode is None  # still running, on the old configuration
        assert await site_setpoint_w() == pytest.approx(50_000.0, abs=2_000.0)
        d["policies"]["peak_shaving"]["grid_import_cap_w"] = 120_000.0
        d["logging"]["level"] = "info"  # applied with the rest: its own line says so
        path.write_text(yaml.safe_dump(d))
        run.send_signal(signal.SIGHUP)
        for _ in range(50):
            if abs(await site_setpoint_w() - 80_000.0) < 2_000.0:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the reloaded cap was not applied")
        run.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(run.communicate(), 15)
        assert run.returncode == 0
    finally:
        pcs.device.close()
        for proc in (run, sim):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.communicate(), 15)
    from ems.events import EventLog

    events = EventLog(tmp_path / "state" / "events.db").query(limit=100)
    rejected = [e for e in events if e.kind == "config_rejected"]
    assert len(rejected) == 1 and "grid_import_cap_w" in rejected[0].data["why"]
    assert any(e.kind == "config_applied" for e in events)
    lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    infos = [x["event"] for x in lines if x.get("level") == "info"]
    assert "config reloaded" in infos and infos[0] == "config reloaded"  # warning level until the reload


async def test_the_demo_waits_for_the_simulated_site_to_serve_its_devices() -> None:
    """On a machine slow to start the site, the controller started first and reported every
    device lost, then recovered: the demo now waits for the ports (bounded)."""
    from ems.broker import free_port
    from ems.demo import wait_for_site

    async def nothing(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    alive = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(30)")
    try:
        late = free_port()
        servers = [await asyncio.start_server(nothing, "127.0.0.1", 0)]
        ports = [s.sockets[0].getsockname()[1] for s in servers] + [late]

        async def serve_late() -> None:
            await asyncio.sleep(0.5)
            servers.append(await asyncio.start_server(nothing, "127.0.0.1", late))

        opener = asyncio.create_task(serve_late())
        assert await wait_for_site(ports, alive, 10.0)  # the late one too, once it serves
        await opener
        assert not await wait_for_site([free_port()], alive, 0.5)  # bounded: nobody serves it
        for s in servers:
            s.close()
    finally:
        alive.kill()
        await alive.wait()
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()
    assert not await wait_for_site([free_port()], gone, 30.0)  # the site exited: no 30-s wait
