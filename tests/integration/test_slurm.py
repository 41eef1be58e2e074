"""The Slurm example against a real Slurm (Debian's slurmctld and slurmd, private, on loopback):
its PrologSlurmctld (deploy/scheduler/slurm/prolog_slurmctld.sh) asks the real controller's
operator API, on the simulated site, whether the job's row is under a demand-response budget.
A tier-0 job is started before the event is announced and requeued (not started) while one is
due on its row; a job that may be throttled starts regardless."""

from __future__ import annotations

import asyncio
import shlex
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sim_devices.slurm import NoSlurm, Slurm, private_slurm
from tests.conftest import wait_for
from tests.integration.test_dr_scheduler import TOKEN, controlled_with_api, two_row_dr_site

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "scheduler"


def _prolog(d: Path, ems_url: str, slurm_conf: Path, node: str, row: str) -> Path:
    """The site's prolog as an operator would install it: the example script, its settings."""
    (d / "rows").write_text(f"{node} {row}\n", encoding="utf-8")
    budget = f"{shlex.quote(sys.executable)} {shlex.quote(str(DEPLOY / 'dr_budget.py'))}"
    wrapper = d / "prolog.sh"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"export EMS_URL={shlex.quote(ems_url)} EMS_ROWS={shlex.quote(str(d / 'rows'))} "
        f"SLURM_CONF={shlex.quote(str(slurm_conf))}\n"
        f"export EMS_DR_BUDGET={shlex.quote(budget)}\n"
        f"exec {shlex.quote(str(DEPLOY / 'slurm' / 'prolog_slurmctld.sh'))}\n", encoding="utf-8")
    wrapper.chmod(0o755)
    return wrapper


async def _until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if await asyncio.to_thread(check):
            return True
        await asyncio.sleep(0.3)
    return False


def _ran(out: Path) -> Callable[[], bool]:
    return out.exists


def _requeued(slurm: Slurm, job: int) -> Callable[[], bool]:
    return lambda: int(slurm.job(job).get("Restarts", "0")) >= 1


@pytest.mark.timeout(180)
async def test_a_real_slurm_keeps_tier_0_work_off_a_row_an_event_will_cap(broker, make_site, tmp_path: Path) -> None:
    async with controlled_with_api(two_row_dr_site(make_site, broker.url)) as (ctl, url, web):
        prolog = _prolog(tmp_path, url, tmp_path / "slurm" / "slurm.conf", "gpu01", "row02")
        try:
            cm = private_slurm(tmp_path / "slurm", prolog, node="gpu01")
            slurm = await asyncio.to_thread(cm.__enter__)
        except NoSlurm as exc:
            pytest.skip(str(exc))
        try:
            before = tmp_path / "before.out"
            await asyncio.to_thread(slurm.sbatch, "--comment=flex_tier=0", "--wrap", f"touch {before}")
            assert await _until(_ran(before), 30), "a tier-0 job with no event due must start"

            start = datetime.now(UTC) + timedelta(seconds=120)  # due within the prolog's 10 minutes
            body = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "//grid/v1/isv/test",
                    "time": datetime.now(UTC).isoformat(), "type": "grid.loadtarget.set.v1",
                    "data": {"target": {"value": 150, "unit": "kW"}, "start": start.isoformat(), "duration_s": 60}}
            async with web.post("/api/actions/load-target", json=body,
                                headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200, await r.text()
            await wait_for(lambda: bool((ctl.last.status.get("dr") or {}).get("pending")), timeout_s=5)

            held, free = tmp_path / "held.out", tmp_path / "free.out"
            await asyncio.to_thread(slurm.sbatch, "--wrap", f"touch {free}")
            assert await _until(_ran(free), 30), "a job that may be throttled starts during the warning"
            tier0 = await asyncio.to_thread(slurm.sbatch, "--comment=flex_tier=0", "--wrap", f"touch {held}")
            assert await _until(_requeued(slurm, tier0), 30), "the prolog must fail the tier-0 job: requeued"
            assert not held.exists() and slurm.job(tier0)["JobState"] == "PENDING"

            # the event withdrawn (opted out), the requeued job released: the prolog lets it through
            event_id = ctl.last.status["dr"]["pending"][0]["event_id"]
            async with web.post("/api/actions/dr-opt-out", json={"event_id": event_id, "opt_out": True,
                                                                 "reason": "test"},
                                headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200, await r.text()
            await wait_for(lambda: all(e["opted_out"] for e in ctl.last.status["dr"]["pending"]), timeout_s=5)
            await asyncio.to_thread(slurm.release, tier0)
            assert await _until(_ran(held), 60), "released once no event is due, the tier-0 job runs"
        finally:
            await asyncio.to_thread(cm.__exit__, None, None, None)
