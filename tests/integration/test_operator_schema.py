"""The operator API checked against its own OpenAPI schema by schemathesis.

Generated requests, valid and malformed (wrong types, missing and extra fields, bad query
parameters, undeclared methods, no token), go to a real controller on the simulated
site. Checked: never a 5xx, every status code and response body as documented, malformed
data refused, actions refused without the token. Not checked: that every value the schema
admits is accepted (`positive_data_acceptance`): a value inside the field's own type can
still break a cross-field rule of the site file (recharge threshold above the cap), and is
then refused with 422, as documented.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from ems.clock import ScaledClock
from ems.config import HttpConfig, HttpLimits, RateLimit
from ems.operator.auth import Tokens
from ems.operator.server import serve
from tests.conftest import running_controller, running_site, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "schemathesis-token-0123456789"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,negative_data_rejection,ignored_auth,missing_required_header,"
          "unsupported_method")
MAX_EXAMPLES = 25


def _schemathesis() -> list[str]:
    exe = Path(sys.executable).with_name("schemathesis")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("schemathesis")
    if found is None:
        pytest.skip("schemathesis is not installed (pip install -e .[dev])")
    return [found]


async def test_api_conforms_to_its_schema_and_never_fails_with_5xx(broker, make_site, tmp_path) -> None:
    cmd = _schemathesis()
    cfg = make_site(broker.url, policies={"battery": {"soc_min": 0.1, "soc_max": 0.95},
                                          "peak_shaving": {"grid_import_cap_w": 300_000.0,
                                                           "recharge_below_w": 100_000.0}},
                    state={"dir": str(tmp_path / "state")})
    clock = ScaledClock(1.0)
    # conformance, not rates (test_operator_limits): limits no generated burst reaches
    unlimited = RateLimit(per_client_per_s=10_000, per_client_burst=10_000, total_per_s=10_000, total_burst=10_000)
    http = HttpConfig(enabled=True, port=0, limits=HttpLimits(reads=unlimited, heavy_reads=unlimited,
                                                              actions=unlimited, server_cpu_share=1.0))
    async with (running_site(cfg, clock), running_controller(cfg, clock) as ctl,
                serve(ctl, http, Tokens({"operator": TOKEN})) as server):
        await wait_for(lambda: ctl.last is not None)
        site_file = tmp_path / "site.yaml"  # the reload action re-reads it, as `ems run FILE` wires it
        site_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        ctl.controls.reload = lambda: ctl.reload_config(site_file)
        proc = await asyncio.create_subprocess_exec(
            *cmd, "run", server.url + "api/openapi.json", "--checks", CHECKS,
            "--exclude-path", "/api/stream",  # endless by design; covered by test_operator_api
            "--max-examples", str(MAX_EXAMPLES), "--seed", "7", "--generation-database", "none", "--workers", "1",
            "--header", f"Authorization: Bearer {TOKEN}", "--no-color", "--request-timeout", "5",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
        text = out.decode(errors="replace")
        periods_after = ctl.stats.periods
        await wait_for(lambda: ctl.stats.periods > periods_after)  # the controller kept running throughout
    generated = re.search(r"(\d+) generated", text)
    assert proc.returncode == 0, text[-6000:]
    assert generated is not None and int(generated.group(1)) >= 100, text[-2000:]
    assert "Tested: 17" in text, text[-2000:]
    print(f"schemathesis: {generated.group(0)} test cases over 17 operations")
