"""A stop request that a library swallowed still stops our long-running loops.

Python 3.11's `asyncio.wait_for` drops a cancellation that arrives just as the awaited future
completes: it returns the result instead (fixed in 3.12). nats-py, pymodbus and aiomqtt call
it on every request, so a task cancelled at that moment carries on, and a loop that only ends
by cancellation (`while True`) then runs for ever: a controller's stop, or a test's teardown,
waits on it without end (seen in CI: an HA role outlived its cancellation). The request is
still on record (`Task.cancelling()`); each such loop calls `checkpoint()` once per turn.
"""

from __future__ import annotations

import asyncio


def checkpoint() -> None:
    """Raise CancelledError when this task was asked to stop and is still running.

    Balanced timeout scopes (`asyncio.timeout`) take back their own cancellations on exit, so
    outside them a non-zero count is a stop request that nobody honoured. Not so after a
    3.11 `asyncio.TaskGroup` whose body had ended when a task of it failed: it cancels its
    parent and never takes that back (cancelling() stays 1), so a loop whose turn holds such
    a group must not call this; the tasks inside the group may (drivers/rack_session.py's and
    the simulator's publishing loops do)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError("a cancellation swallowed on the way was honoured here")
