"""The README's hardware-in-the-loop commands, as written, run a controlled site.

The three commands are read from the README itself and run in a folder that looks like
the project's (its `config/` linked in), each in its own process, with the `ems` of this
environment on the PATH. The controller must take control of the simulated site (every
PCS heartbeat moving, the site status published), then stop cleanly on Ctrl-C, leaving
every unit at 0 W; `ems events` then shows the log and `ems sim` prints its summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
from pathlib import Path

import aiomqtt
import pytest

from drivers.bess import PcsDriver
from drivers.modbus_device import ModbusDevice
from drivers.profile import load_profile

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def hil_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"### Hardware in the loop.*?```sh\n(.*?)```", text, re.S)
    assert block is not None, "the README has no hardware-in-the-loop block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


async def _pcs_heartbeat(port: int) -> int:
    pcs = PcsDriver(ModbusDevice("pcs", load_profile("pcs_v1"), "127.0.0.1", port))
    try:
        return (await pcs.read(0.0)).heartbeat
    finally:
        pcs.device.close()


async def test_the_readme_hil_commands_as_written_run_a_controlled_site(tmp_path) -> None:
    commands = hil_commands()
    assert [c.split()[:2] for c in commands] == [["ems", "broker"], ["ems", "sim"], ["ems", "run"]]
    (tmp_path / "config").symlink_to(ROOT / "config")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    procs: list[asyncio.subprocess.Process] = []
    outputs: list[tuple[bytes, bytes]] = []
    try:
        for i, command in enumerate(commands):
            procs.append(await asyncio.create_subprocess_exec(
                *shlex.split(command), cwd=tmp_path, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE))
            if i < 2:
                await asyncio.sleep(2.0)  # the broker, then the site, up before the next
        async with aiomqtt.Client("127.0.0.1", 18830) as sub:
            await sub.subscribe("ems/hil/site/status")

            async def controlled() -> dict:
                async for msg in sub.messages:
                    status = json.loads(msg.payload)
                    if all(u["available"] for u in status["units"].values()):
                        return status
                raise AssertionError("no status")

            status = await asyncio.wait_for(controlled(), 30)
        assert status["site"] == "hil-gpu-site" and status["grid_power_w"] is not None
        beats = [await _pcs_heartbeat(p) for p in (15322, 15324)]
        await asyncio.sleep(2.5)
        assert all(b2 != b1 for b1, b2 in zip(beats, [await _pcs_heartbeat(p) for p in (15322, 15324)], strict=True))
        for proc in reversed(procs):  # Ctrl-C: the controller first, then the site, then the broker
            proc.send_signal(signal.SIGINT)
            outputs.insert(0, await asyncio.wait_for(proc.communicate(), 30))
            assert proc.returncode == 0, outputs[0][1].decode()[-2000:]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    run_err = outputs[2][1].decode()
    assert "controller started" in run_err and "first period" in run_err
    assert "every unit set to 0 W" in run_err and "Traceback" not in run_err
    assert "h of site time simulated" in outputs[1][0].decode()  # the simulator's summary
    events = await asyncio.create_subprocess_exec(
        "ems", "events", "--config", "config/hil-site.yaml", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await events.communicate()
    assert events.returncode == 0, err.decode()
    assert "controller_stopped" in out.decode() and "controller_started" in out.decode()
