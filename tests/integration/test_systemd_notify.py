"""`ems run` under a systemd-like supervisor: READY=1, WATCHDOG=1, then SIGTERM -> STOPPING=1, exit 0.

The supervisor is a real AF_UNIX datagram socket named by NOTIFY_SOCKET, as systemd sets it for a
`Type=notify` unit (deploy/systemd/ems.service).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from ems.clock import ScaledClock
from ems.config import parse_config
from tests.conftest import running_site, site_dict

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


async def _recv(sock: socket.socket, timeout_s: float) -> str:
    loop = asyncio.get_running_loop()
    return (await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout_s)).decode()


async def test_run_notifies_ready_and_watchdog_and_stops_cleanly_on_sigterm(broker, tmp_path) -> None:
    d = site_dict(broker.url, period_s=0.1)
    cfg = parse_config(d, "test")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(d))
    with tempfile.TemporaryDirectory(prefix="ems-sd-") as sd_dir, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as supervisor:
        notify_path = str(Path(sd_dir) / "notify")  # AF_UNIX paths must stay under 108 bytes
        supervisor.bind(notify_path)
        supervisor.setblocking(False)
        async with running_site(cfg, ScaledClock(1.0)):
            env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "3000000"}
            run = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ems.cli", "run", "--config", str(path), "--log-format", "json",
                cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                first = await _recv(supervisor, 30)
                assert first.splitlines()[0] == "READY=1", first
                t0 = time.monotonic()
                beats = [await _recv(supervisor, 3) for _ in range(5)]  # well inside WatchdogSec
                assert beats == ["WATCHDOG=1"] * 5
                assert time.monotonic() - t0 < 3.0
                run.send_signal(signal.SIGTERM)
                while (msg := await _recv(supervisor, 10)) == "WATCHDOG=1":
                    pass
                assert msg.splitlines()[0] == "STOPPING=1", msg
                _, err = await asyncio.wait_for(run.communicate(), 15)
                assert run.returncode == 0, err.decode()
                assert b"controller stopped" in err
            finally:
                if run.returncode is None:
                    run.kill()
                    await run.wait()
