"""`ems run` with its operator server, as a person runs it: separate processes, real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from ems.broker import free_port
from tests.conftest import site_dict

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "cli-test-token-0123456789"


async def _spawn(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ems.cli", *args, cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_run_refuses_an_unreadable_token_file(tmp_path) -> None:
    d = site_dict("mqtt://127.0.0.1:1")
    d["http"] = {"enabled": True, "port": free_port(), "token_file": str(tmp_path / "missing-tokens")}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(d))
    run = await _spawn("run", "--config", str(path))
    _, err = await asyncio.wait_for(run.communicate(), 30)
    assert run.returncode == 2
    assert "missing-tokens: cannot read the token file" in err.decode() and "Traceback" not in err.decode()


async def test_run_serves_the_operator_api_and_takes_an_action(broker, tmp_path) -> None:
    d = site_dict(broker.url, period_s=0.2)
    d["policies"]["peak_shaving"] = {"grid_import_cap_w": 150_000.0, "recharge_below_w": 50_000.0}
    port = free_port()
    d["http"] = {"enabled": True, "port": port}
    d["state"] = {"dir": str(tmp_path / "state")}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(d))
    sim = await _spawn("sim", "--config", str(path))
    run = None
    try:
        run = await _spawn("run", "--config", str(path), "--log-format", "json", env={"EMS_HTTP_TOKEN": TOKEN})
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(url) as client:
            for _ in range(150):  # the daemon and its first periods come up
                try:
                    async with client.get("/api/status") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the operator API never answered")
            body = {"param": "policies.peak_shaving.grid_import_cap_w", "value": 160_000.0, "reason": "cli test"}
            async with client.post("/api/actions/set-param", json=body,
                                   headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200, await r.text()
            for _ in range(50):
                async with client.get("/api/status") as r:
                    if (await r.json())["grid_import_cap_w"] == 160_000.0:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the daemon did not apply the new cap")
        run.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(run.communicate(), 15)
        assert run.returncode == 0, err.decode()
        assert b"operator server up" in err
        # the override outlives the process, in the state directory
        saved = (tmp_path / "state" / "overrides.json").read_text()
        assert '"value": 160000.0' in saved and '"why": "cli test"' in saved
    finally:
        for proc in (run, sim):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.communicate(), 15)
