"""A loop whose cancellation a library swallowed (Python 3.11's wait_for, when the awaited
future completes as the cancel arrives) still stops at its next turn."""

from __future__ import annotations

import asyncio

from ems.model.cancel_guard import checkpoint


async def _swallowing_call() -> None:
    """A third party's request that takes a cancellation for a completed answer."""
    try:
        await asyncio.sleep(0.01)
    except asyncio.CancelledError:
        return


class _Loop:
    def __init__(self, guarded: bool) -> None:
        self.guarded, self.turns, self.halt = guarded, 0, False

    async def run(self) -> None:
        while not self.halt:  # `halt` only so that the unguarded test can end it
            if self.guarded:
                checkpoint()
            self.turns += 1
            await _swallowing_call()


async def _cancelled(loop: _Loop) -> tuple[asyncio.Task[None], bool, int]:
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.05)
    task.cancel()
    before = loop.turns
    done, _ = await asyncio.wait({task}, timeout=0.2)
    return task, bool(done), loop.turns - before


async def test_a_swallowed_cancellation_stops_the_guarded_loop_at_its_next_turn() -> None:
    task, stopped, extra = await _cancelled(_Loop(guarded=True))
    assert stopped and task.cancelled() and extra <= 1


async def test_without_the_guard_the_loop_runs_on() -> None:
    """The failure the guard exists for: still running 0.2 s after its cancel, the request on record."""
    loop = _Loop(guarded=False)
    task, stopped, extra = await _cancelled(loop)
    assert not stopped and extra > 5 and task.cancelling() == 1
    loop.halt = True
    await task


async def test_a_timeout_scope_that_expired_is_no_stop_request() -> None:
    turns = 0
    for _ in range(3):
        checkpoint()
        turns += 1
        try:
            async with asyncio.timeout(0.001):
                await asyncio.sleep(1)
        except TimeoutError:
            pass
    assert turns == 3
