"""The README's hardware-in-the-loop commands, as written, run a controlled site.

The three commands are read from the README itself and run in a folder that looks like
the project's (its `config/hil-site.yaml` there), each in its own process, with the `ems` of
this environment on the PATH. The controller must take control of the simulated site (every
PCS heartbeat moving, the site status published), then stop cleanly on Ctrl-C, leaving
every unit at 0 W; `ems events` then shows the log and `ems sim` prints its summary.

The README's ports are fixed (broker 18830, Modbus 15320-15324) and may be taken on a shared
machine, so the copy of the site file in that folder has free ones instead, and the broker
command is given its port; the README's commands are otherwise run unchanged, and that the
broker's default port is the one the site file names is checked on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
import pytest
import yaml

from drivers.bess import PcsDriver
from drivers.modbus_device import ModbusDevice
from drivers.profile import load_profile
from ems.cli import build_parser
from tests.hil_config import hil_site_on_free_ports

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# Upper bounds on waits for something to happen, never durations the test takes: a process
# that imports pydantic, pymodbus and HiGHS can take many seconds to start on a loaded 2-core
# CI machine, so these are generous.
START_TIMEOUT_S = 60.0
HEARTBEAT_TIMEOUT_S = 10.0  # the site file's PCS heartbeat timeout: a heartbeat must move within it


def hil_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"### Hardware in the loop.*?```sh\n(.*?)```", text, re.S)
    assert block is not None, "the README has no hardware-in-the-loop block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_broker_listens_where_the_hil_site_file_looks() -> None:
    cfg = yaml.safe_load((ROOT / "config" / "hil-site.yaml").read_text())
    broker = shlex.split(hil_commands()[0])
    assert broker == ["ems", "broker"]  # no --port: the default is the one that must match
    assert build_parser().parse_args(broker[1:]).port == urlsplit(cfg["mqtt"]["url"]).port


def _free_ports_site(tmp: Path) -> tuple[int, list[int]]:
    """config/hil-site.yaml, copied into tmp/config with every port a free one; the broker's
    port and the PCS ports."""
    cfg, broker_port = hil_site_on_free_ports()
    (tmp / "config").mkdir()
    (tmp / "config" / "hil-site.yaml").write_text(yaml.safe_dump(cfg))
    return broker_port, [u["pcs"]["port"] for u in cfg["bess_units"]]


async def _wait_for_line(proc: asyncio.subprocess.Process, log: Path, needle: str) -> None:
    """Until `needle` is in the process's output (a file, so that it never blocks on a pipe)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while needle not in log.read_text(errors="replace"):
        assert proc.returncode is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {needle!r} within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
        await asyncio.sleep(0.1)


async def _pcs_heartbeat(port: int) -> int:
    pcs = PcsDriver(ModbusDevice("pcs", load_profile("pcs_v1"), "127.0.0.1", port))
    try:
        return (await pcs.read(0.0)).heartbeat
    finally:
        pcs.device.close()


async def _heartbeat_moves(port: int) -> bool:
    """Whether the controller writes the PCS heartbeat again within the PCS's heartbeat timeout
    (polled, as a period may run late on a loaded machine)."""
    first = await _pcs_heartbeat(port)
    deadline = time.monotonic() + HEARTBEAT_TIMEOUT_S
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        if await _pcs_heartbeat(port) != first:
            return True
    return False


async def test_the_readme_hil_commands_as_written_run_a_controlled_site(tmp_path) -> None:
    commands = [shlex.split(c) for c in hil_commands()]
    assert [c[:2] for c in commands] == [["ems", "broker"], ["ems", "sim"], ["ems", "run"]]
    broker_port, pcs_ports = _free_ports_site(tmp_path)
    commands[0] += ["--port", str(broker_port)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONUNBUFFERED": "1"}
    ready = ["ems broker:", "simulated site up", "first period"]  # each up before the next starts
    procs: list[asyncio.subprocess.Process] = []
    logs = [(tmp_path / f"{c[1]}.out", tmp_path / f"{c[1]}.err") for c in commands]
    try:
        for command, (out, err), needle in zip(commands, logs, ready, strict=True):
            with out.open("wb") as o, err.open("wb") as e:
                procs.append(await asyncio.create_subprocess_exec(*command, cwd=tmp_path, env=env, stdout=o, stderr=e))
            await _wait_for_line(procs[-1], out if needle == "ems broker:" else err, needle)
        async with aiomqtt.Client("127.0.0.1", broker_port) as sub:
            await sub.subscribe("ems/hil/site/status")

            async def controlled() -> dict:
                async for msg in sub.messages:
                    status = json.loads(msg.payload)
                    if all(u["available"] for u in status["units"].values()):
                        return status
                raise AssertionError("no status")

            status = await asyncio.wait_for(controlled(), START_TIMEOUT_S)
        assert status["site"] == "hil-gpu-site" and status["grid_power_w"] is not None
        assert all([await _heartbeat_moves(p) for p in pcs_ports])
        for proc, (_, err) in reversed(list(zip(procs, logs, strict=True))):
            # Ctrl-C: the controller first, then the site, then the broker
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), START_TIMEOUT_S)
            assert proc.returncode == 0, err.read_text()[-2000:]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    run_err = logs[2][1].read_text()
    assert "controller started" in run_err and "first period" in run_err
    assert "every unit set to 0 W" in run_err and "Traceback" not in run_err
    assert "h of site time simulated" in logs[1][0].read_text()  # the simulator's summary
    events = await asyncio.create_subprocess_exec(
        "ems", "events", "--config", "config/hil-site.yaml", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(events.communicate(), START_TIMEOUT_S)
    assert events.returncode == 0, err.decode()
    assert "controller_stopped" in out.decode() and "controller_started" in out.decode()
