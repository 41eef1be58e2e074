"""The controller's period loop, whose stop is normally its `stop` event, still ends on a
cancellation that Python 3.11's wait_for swallowed: the task group cancels it when a
background task fails (`Controller.background_failure`), and `ems sim`/tests cancel it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ems.clock import ScaledClock
from ems.config import parse_config
from ems.control_loop import Controller
from tests.conftest import site_dict


async def test_a_cancel_swallowed_in_the_period_sleep_stops_the_controller(tmp_path: Path) -> None:
    """Nothing listens on the site's ports: the periods run on stale readings. The cancel
    lands while the sleep's `wait_for(stop.wait())` has its answer but not yet its wake-up,
    which 3.11's wait_for turns into a normal return; `stop` is cleared meanwhile, so only
    the cancellation can end the loop."""
    cfg = parse_config(site_dict("mqtt://127.0.0.1:1", period_s=0.5, state={"dir": str(tmp_path)}), "test")
    ctl = Controller(cfg, ScaledClock(1.0))
    periods = 0

    def seen(_result: object) -> None:
        nonlocal periods
        periods += 1

    ctl.observers.append(seen)
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.run(stop), name="controller")
    for _ in range(200):  # the first period done: the loop then sleeps ~0.5 s in wait_for
        if periods:
            break
        await asyncio.sleep(0.05)
    assert periods, "no period ran"
    await asyncio.sleep(0.1)  # well inside the sleep
    stop.set()
    await asyncio.sleep(0)  # stop.wait() ends; wait_for's wake-up is queued behind it
    stop.clear()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5.0)
    if not done:  # the failure: still running its periods; end it through `stop`
        stop.set()
        await asyncio.wait_for(task, 10)
    assert done and task.cancelled()
