"""One way to open a NATS connection: reconnecting for ever, errors logged (not printed).

nats-py prints each connection error with its traceback unless it is given callbacks;
our callers say what a lost link means once (an event, a log line on the transition), so
the client's own errors go to the debug log here.
"""

from __future__ import annotations

import asyncio

import nats
import structlog
from nats.aio.client import Client

log = structlog.get_logger("ems.nats")


async def _error(exc: Exception) -> None:
    log.debug("nats client error", error=f"{type(exc).__name__}: {exc}")


async def connect(url: str, name: str, connect_timeout_s: float, reconnect_wait_s: float) -> Client:
    """Raises what nats.connect raises (nats.errors.Error, OSError, TimeoutError); callers translate it."""
    nc: Client = await nats.connect(url, connect_timeout=connect_timeout_s, allow_reconnect=True,
                                    max_reconnect_attempts=-1, reconnect_time_wait=reconnect_wait_s, name=name,
                                    error_cb=_error)
    return nc


async def close(nc: Client, timeout_s: float = 2.0) -> bool:
    """Close, waiting at most `timeout_s`; False when it did not finish (it is cancelled and
    left). Not `wait_for`: that waits for the cancelled close to end, and a client whose link
    is cut off can take its cancellation for ever (a controller's stop hung on it)."""
    task = asyncio.ensure_future(nc.close())
    task.add_done_callback(_retrieve)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        log.debug("nats client close did not finish in time: left")
        return False
    return not task.cancelled() and task.exception() is None


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # seen: never "exception was never retrieved"
