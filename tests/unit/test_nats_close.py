"""Closing a NATS client is bounded: a client that takes its cancellation for a long while (a
link cut off) is left after the timeout, not waited for (a stop hung on it)."""

from __future__ import annotations

import asyncio
import time
from typing import cast

from nats.aio.client import Client

from ems import nats_conn


class _SlowToClose:
    """A client whose close swallows the first cancellation and lingers (nats-py on a cut link)."""

    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(1.0)  # keeps waiting after being cancelled
        self.closed = True


class _Closes:
    async def close(self) -> None:
        await asyncio.sleep(0)


async def test_a_client_that_will_not_close_in_time_is_left() -> None:
    slow = _SlowToClose()
    t0 = time.monotonic()
    assert not await nats_conn.close(cast(Client, slow), 0.1)
    assert time.monotonic() - t0 < 0.5 and not slow.closed  # not waited for its cancellation
    await asyncio.sleep(1.2)  # it ends on its own; nothing left pending for the loop
    assert slow.closed


async def test_a_client_that_closes_is_closed() -> None:
    assert await nats_conn.close(cast(Client, _Closes()), 1.0)
