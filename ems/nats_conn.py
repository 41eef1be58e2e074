"""One way to open a NATS connection: reconnecting for ever, errors logged (not printed).

nats-py prints each connection error with its traceback unless it is given callbacks;
our callers say what a lost link means once (an event, a log line on the transition), so
the client's own errors go to the debug log here.
"""

from __future__ import annotations

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
